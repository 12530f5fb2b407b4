import type * as pg from 'pg';
import { oneLine } from '../../one-line.js';
import { migrationRecordChecks, migrationRecordDefaults, migrationsTable } from '../../migrations/migration-storage.js';
import type { MigrationFunction } from './migration-functions.js';
import { actsBeyondTheRowNames, runsSqlTextNames } from './unsafe-calls.js';

// The kinds of object an extension's owner may add to it (ALTER EXTENSION … ADD), by catalog:
// who owns one, and, for code that an object of public may use, its schema.
const catalogColumns: ReadonlyArray<{ catalog: string; owner: string; namespace?: string }> = [
  { catalog: 'pg_proc', owner: 'proowner', namespace: 'pronamespace' },
  { catalog: 'pg_class', owner: 'relowner' },
  { catalog: 'pg_type', owner: 'typowner', namespace: 'typnamespace' },
  { catalog: 'pg_operator', owner: 'oprowner', namespace: 'oprnamespace' },
  { catalog: 'pg_namespace', owner: 'nspowner' },
  { catalog: 'pg_opclass', owner: 'opcowner', namespace: 'opcnamespace' },
  { catalog: 'pg_opfamily', owner: 'opfowner', namespace: 'opfnamespace' },
  { catalog: 'pg_collation', owner: 'collowner', namespace: 'collnamespace' },
  { catalog: 'pg_conversion', owner: 'conowner', namespace: 'connamespace' },
  { catalog: 'pg_ts_config', owner: 'cfgowner', namespace: 'cfgnamespace' },
  { catalog: 'pg_ts_dict', owner: 'dictowner', namespace: 'dictnamespace' },
];
// CASE branches on the catalog of d.objid (d a pg_depend row): whether the roles restoring own it.
const memberOwners = catalogColumns
  .map(
    ({ catalog, owner }) =>
      `WHEN 'pg_catalog.${catalog}'::pg_catalog.regclass THEN (SELECT pg_catalog.pg_has_role(x.${owner}, 'USAGE') FROM pg_catalog.${catalog} x WHERE x.oid = d.objid)`,
  )
  .join(' ');
// CASE branches on the catalog of d.refobjid: the schema of the code it names.
const usedCodeSchemas = catalogColumns
  .flatMap(({ catalog, namespace }) =>
    namespace === undefined ? [] : [`WHEN 'pg_catalog.${catalog}'::pg_catalog.regclass THEN (SELECT x.${namespace} FROM pg_catalog.${catalog} x WHERE x.oid = d.refobjid)`],
  )
  .join(' ');
// Public and PostgreSQL's own schemas, which a use of code or a view's read may reach.
const publicAndPostgresSchemas = `('public'::pg_catalog.regnamespace, 'pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)`;

// PostgreSQL's own functions that act beyond the row an expression is computed for (see
// unsafe-calls.ts). Called: a column may be named so.
const actsBeyondTheRow = String.raw`\m(${actsBeyondTheRowNames})\M\s*\(`;
// PostgreSQL's own functions that look up a type (or a function) by a name given as text when
// they run, a domain of another schema whose CHECK runs its code among them: no dependency is
// recorded for it, and the type may not even exist yet. A cast of text to a reg* type does the
// same (not a regclass: a relation runs no code; nextval('…'::regclass) is a serial column's default); so
// do a type's own input functions given its oid, and the SQL/JSON functions' RETURNING
// (JSON_VALUE(… RETURNING ops.sql) records no dependency on the type).
const looksUpByName = String.raw`\m(pg_input_is_valid|pg_input_error_info|to_reg\w+|\w+_in|\w+_recv|reg\w+in|pg_get_object_address|json_value|json_query|json_exists|json_table|xmltable)\M\s*\(|::\s*reg(?!class\M)\w+`;
// PostgreSQL's own functions that run a query given as text (see unsafe-calls.ts).
// (A PostgreSQL regular expression: \m and \M are its word boundaries.)
const runsSqlText = String.raw`\m(${runsSqlTextNames})\M`;

// A type named as a migration wrote it: as PostgreSQL's, else as one of public.
const resolvedType = (name: string) => `COALESCE(pg_catalog.to_regtype(${name}), pg_catalog.to_regtype('"public".' || (${name})))::pg_catalog.oid`;

/**
 * What a restored `public` may not hold, in the backup's text or made by its own functions
 * while they ran (a CHECK as rows load). What the allow-list refuses in the text: rules on the relations of public other than a view's
 * own, and SECURITY DEFINER functions there, each of which would let a caller act with the
 * owner's rights (write the migrations record, say); and extensions in public other than
 * `allowedExtensions` (a trusted one, pgcrypto say, any database owner may create), operators,
 * aggregates and domains there that are no extension's; and a relation of public that is a
 * partition or child of another, or has one (a query of the parent reads and writes the child's
 * rows on the parent's privileges). Also what would run the backup's code after COMMIT with
 * the owner's rights: a function of public that is none of `knownFunctions` as it is (name,
 * body, language, argument and result types, volatility, strictness, kind; the next migration
 * that writes a table runs its triggers, CHECKs and defaults as the owner, and so does a
 * foreign key's action for the application role); use from public of a function, operator,
 * type, collation or operator class of another schema that no allowed extension owns; a cast
 * to or from a type of public; an expression, a trigger's WHEN condition or a view that calls
 * a function running SQL text or acting beyond its row; a view reading a relation of another schema (with
 * the owner's rights, for the application role); row-level security and its policies (a
 * policy's subquery runs for the owner too where it is forced); members of an extension the
 * roles restoring own; index expressions, expression statistics and range types calling
 * functions not PostgreSQL's (ANALYZE and VACUUM run them as the owner); and a foreign key
 * from, or a trigger on, the migrations record. In words, or `[]`.
 *
 * @example await unsafeInRestoredPublic(client, ['pg_trgm'], await migrationFunctions()) // ['rule forge on public.notes', 'extension pgcrypto']
 */
export async function unsafeInRestoredPublic(
  client: pg.ClientBase,
  allowedExtensions: readonly string[],
  knownFunctions: readonly MigrationFunction[],
): Promise<string[]> {
  // An object that is a member of an extension: the extension answers for it.
  const extensionMember = (catalog: string, oid: string) =>
    `EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '${catalog}'::pg_catalog.regclass AND d.objid = ${oid} AND d.deptype = 'e')`;
  const { rows } = await client.query<{ what: string }>(
    `SELECT pg_catalog.format('rule %I on %s', r.rulename, r.ev_class::pg_catalog.regclass) AS what
       FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
      WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND r.rulename <> '_RETURN'
     UNION ALL
     SELECT 'SECURITY DEFINER function ' || p.oid::pg_catalog.regprocedure::text
       FROM pg_catalog.pg_proc p
      WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.prosecdef AND NOT ${extensionMember('pg_catalog.pg_proc', 'p.oid')}
     UNION ALL
     SELECT 'extension ' || pg_catalog.quote_ident(e.extname)
       FROM pg_catalog.pg_extension e
      WHERE e.extnamespace = 'public'::pg_catalog.regnamespace AND e.extname <> ALL ($1::text[])
     UNION ALL
     SELECT 'operator ' || o.oid::pg_catalog.regoperator::text
       FROM pg_catalog.pg_operator o
      WHERE o.oprnamespace = 'public'::pg_catalog.regnamespace AND NOT ${extensionMember('pg_catalog.pg_operator', 'o.oid')}
     UNION ALL
     SELECT 'aggregate ' || p.oid::pg_catalog.regprocedure::text
       FROM pg_catalog.pg_proc p
      WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.prokind = 'a' AND NOT ${extensionMember('pg_catalog.pg_proc', 'p.oid')}
     UNION ALL
     SELECT 'domain ' || t.oid::pg_catalog.regtype::text
       FROM pg_catalog.pg_type t
      WHERE t.typnamespace = 'public'::pg_catalog.regnamespace AND t.typtype = 'd' AND NOT ${extensionMember('pg_catalog.pg_type', 't.oid')}
     UNION ALL
     -- An extension's script makes its members as a superuser (a trusted one's too): a member
     -- the roles the role restoring acts for own was added by the backup's code (ALTER
     -- EXTENSION … ADD, which the extension's owner may), to pass for the extension's (a
     -- SECURITY DEFINER function) or to go with it at the next restore's drop (a table
     -- outside public).
     SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) || ' as a member of extension ' || pg_catalog.quote_ident(e.extname)
       FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
      WHERE d.deptype = 'e' AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
        AND CASE d.classid ${memberOwners}
              ELSE false
            END
     UNION ALL
     -- ANALYZE, VACUUM and REINDEX, autovacuum's among them, run an index's expressions as the
     -- table's owner, after this check: none of this schema's calls a function of public.
     SELECT DISTINCT pg_catalog.format('index %s, whose expression calls %s (ANALYZE and VACUUM run it as the table''s owner)',
                                       d.objid::pg_catalog.regclass, d.refobjid::pg_catalog.regprocedure)
       FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class i ON i.oid = d.objid AND i.relkind IN ('i', 'I')
       JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
        AND p.pronamespace = 'public'::pg_catalog.regnamespace AND NOT ${extensionMember('pg_catalog.pg_proc', 'p.oid')}
     UNION ALL
     -- ANALYZE also computes expression statistics, and a range type's subtype difference,
     -- with the owner's rights; this schema has neither.
     SELECT pg_catalog.format('statistics %I.%I on expressions of %s (ANALYZE computes them as the table''s owner)', n.nspname, x.stxname, x.stxrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_namespace n ON n.oid = x.stxnamespace JOIN pg_catalog.pg_class c ON c.oid = x.stxrelid
      WHERE x.stxexprs IS NOT NULL AND (c.relnamespace = 'public'::pg_catalog.regnamespace OR x.stxnamespace = 'public'::pg_catalog.regnamespace)
     UNION ALL
     SELECT pg_catalog.format('range type %s, whose functions are not PostgreSQL''s (ANALYZE runs them as the owner)', r.rngtypid::pg_catalog.regtype)
       FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type t ON t.oid = r.rngtypid
      WHERE t.typnamespace = 'public'::pg_catalog.regnamespace
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid IN (r.rngsubdiff, r.rngcanonical) AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace)
     UNION ALL
     -- A function of public runs for whoever calls it: the owner, at the next migration that
     -- writes a table whose trigger, CHECK or default calls it (or whose statement calls it by
     -- its name, one that hides PostgreSQL's own: lower(character varying)), and the owner again,
     -- on the application role's behalf, where a foreign key's action changes rows. Each must be
     -- one that the migrations define, as they define it ($3), with no settings of its own.
     SELECT pg_catalog.format('function %s, which no migration defines so (it would run the backup''s code for whoever calls it, the owner at the next migration among them)',
                              p.oid::pg_catalog.regprocedure)
       FROM pg_catalog.pg_proc p
      WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.prokind <> 'a' AND NOT p.prosecdef
        AND NOT ${extensionMember('pg_catalog.pg_proc', 'p.oid')}
        AND NOT (p.proconfig IS NULL AND EXISTS (
                   SELECT 1 FROM pg_catalog.jsonb_array_elements($3::pg_catalog.jsonb) m
                    WHERE m ->> 'name' = p.proname::pg_catalog.text AND m ->> 'body' = p.prosrc
                      AND m ->> 'language' = (SELECT l.lanname::pg_catalog.text FROM pg_catalog.pg_language l WHERE l.oid = p.prolang)
                      AND (m ->> 'arguments')::integer = p.pronargs
                      AND (m ->> 'argumentDefaults')::integer = p.pronargdefaults
                      -- (An oidvector counts from 0, and is one dimension even when empty.)
                      AND ARRAY(SELECT pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]))
                          = ARRAY(SELECT ${resolvedType('a.t')} FROM pg_catalog.jsonb_array_elements_text(m -> 'argumentTypes') WITH ORDINALITY a (t, n) ORDER BY a.n)
                      AND (m ->> 'returns' IS NULL OR p.prorettype = ${resolvedType("m ->> 'returns'")})
                      AND p.proretset = (m ->> 'returnsSet')::boolean
                      AND p.provolatile = (m ->> 'volatility')::pg_catalog."char"
                      AND p.proisstrict = (m ->> 'strict')::boolean
                      AND p.prokind = CASE WHEN (m ->> 'procedure')::boolean THEN 'p' ELSE 'f' END))
     UNION ALL
     -- Code of other schemas, which a restore neither replaces nor checks (a function of the
     -- owner's that runs any SQL it is given, another role's that it may rewrite later, a
     -- temporary one), used from public: by a default, trigger, view, constraint, index or
     -- function of a relation or type there, directly or through an operator, a type (a
     -- domain's CHECK and default run their functions), a collation or an operator class.
     -- Only PostgreSQL's own (pg_catalog, information_schema) and the allowed extensions'.
     SELECT DISTINCT pg_catalog.format('%s, which uses %s, outside the public schema', pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
                                       pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0))
       FROM pg_catalog.pg_depend d
      WHERE CASE d.refclassid ${usedCodeSchemas} END NOT IN ${publicAndPostgresSchemas}
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m JOIN pg_catalog.pg_extension e ON e.oid = m.refobjid
                         WHERE m.classid = d.refclassid AND m.objid = d.refobjid AND m.deptype = 'e' AND e.extname = ANY ($1::text[]))
        AND 'public'::pg_catalog.regnamespace = CASE d.classid
              WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_attrdef x JOIN pg_catalog.pg_class c ON c.oid = x.adrelid WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_trigger x JOIN pg_catalog.pg_class c ON c.oid = x.tgrelid WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_rewrite x JOIN pg_catalog.pg_class c ON c.oid = x.ev_class WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_policy x JOIN pg_catalog.pg_class c ON c.oid = x.polrelid WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN (SELECT COALESCE(c.relnamespace, t.typnamespace) FROM pg_catalog.pg_constraint x
                                                                           LEFT JOIN pg_catalog.pg_class c ON c.oid = x.conrelid LEFT JOIN pg_catalog.pg_type t ON t.oid = x.contypid
                                                                          WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT x.relnamespace FROM pg_catalog.pg_class x WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT x.pronamespace FROM pg_catalog.pg_proc x WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT x.typnamespace FROM pg_catalog.pg_type x WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass THEN (SELECT c.relnamespace FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_class c ON c.oid = x.stxrelid WHERE x.oid = d.objid)
              WHEN 'pg_catalog.pg_cast'::pg_catalog.regclass THEN (SELECT 'public'::pg_catalog.regnamespace FROM pg_catalog.pg_cast x JOIN pg_catalog.pg_type t ON t.oid IN (x.castsource, x.casttarget)
                                                                    WHERE x.oid = d.objid AND t.typnamespace = 'public'::pg_catalog.regnamespace LIMIT 1)
              ELSE pg_catalog.to_regnamespace((pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema)
            END
     UNION ALL
     -- A cast to or from a type of public or one the roles restoring own (an implicit one
     -- above all) changes how later migrations resolve calls and operators; this schema has
     -- none. (A cast has no owner: one the backup's code added to an extension counts too.)
     SELECT pg_catalog.pg_describe_object('pg_catalog.pg_cast'::pg_catalog.regclass, c.oid, 0)
       FROM pg_catalog.pg_cast c
      WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid IN (c.castsource, c.casttarget)
                       AND (t.typnamespace = 'public'::pg_catalog.regnamespace OR pg_catalog.pg_has_role(t.typowner, 'USAGE')))
     UNION ALL
     -- Not in this schema, nor written by pg_dump for it; made by the backup's code, they would
     -- stay (a collation that compares otherwise, a text search configuration of its own).
     SELECT pg_catalog.format('collation %s', x.oid::pg_catalog.regcollation)
       FROM pg_catalog.pg_collation x WHERE x.collnamespace = 'public'::pg_catalog.regnamespace AND NOT ${extensionMember('pg_catalog.pg_collation', 'x.oid')}
     UNION ALL
     SELECT pg_catalog.format('text search configuration %s', x.oid::pg_catalog.regconfig)
       FROM pg_catalog.pg_ts_config x WHERE x.cfgnamespace = 'public'::pg_catalog.regnamespace AND NOT ${extensionMember('pg_catalog.pg_ts_config', 'x.oid')}
     UNION ALL
     SELECT pg_catalog.format('text search dictionary %s', x.oid::pg_catalog.regdictionary)
       FROM pg_catalog.pg_ts_dict x WHERE x.dictnamespace = 'public'::pg_catalog.regnamespace AND NOT ${extensionMember('pg_catalog.pg_ts_dict', 'x.oid')}
     UNION ALL
     SELECT pg_catalog.format('statistics %I.%I', n.nspname, x.stxname)
       FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_namespace n ON n.oid = x.stxnamespace
      WHERE x.stxnamespace = 'public'::pg_catalog.regnamespace AND x.stxexprs IS NULL
     UNION ALL
     -- A view reads its tables with its owner's rights: one that the application role may read
     -- would give it, say, the owner's tables of another schema.
     SELECT DISTINCT pg_catalog.format('view %s, which reads %s, outside the public schema, with the owner''s rights', v.oid::pg_catalog.regclass, t.oid::pg_catalog.regclass)
       FROM pg_catalog.pg_class v
       JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
      WHERE v.relnamespace = 'public'::pg_catalog.regnamespace AND v.relkind = 'v'
        AND t.relnamespace NOT IN ${publicAndPostgresSchemas}
     UNION ALL
     -- A policy's expression runs for whoever reads or writes its table, the owner too where
     -- row-level security is forced (the migrations record, read at every migration), and may
     -- hold a subquery, which a CHECK may not. This schema has none, nor row-level security.
     SELECT pg_catalog.format('row-level security policy %I on %s', pol.polname, pol.polrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON c.oid = pol.polrelid
      WHERE c.relnamespace = 'public'::pg_catalog.regnamespace
     UNION ALL
     SELECT 'row-level security on ' || c.oid::pg_catalog.regclass::text
       FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND (c.relrowsecurity OR c.relforcerowsecurity)
     UNION ALL
     -- PostgreSQL's functions that run a query given as text run whatever it says, for whoever
     -- writes the table (the owner at a migration) or reads the view, and record no dependency
     -- to follow; those that act beyond the row change the session of whoever runs them (the
     -- migrator's search_path), other sessions or the server: none of this schema's
     -- expressions calls one.
     SELECT pg_catalog.format(CASE WHEN what.expression ~* $4 THEN '%s, which runs SQL text'
                                   WHEN what.expression ~* $5 THEN '%s, which calls a function that acts beyond its row (on the session, other sessions or the server)'
                                   ELSE '%s, which names a type or function where the catalog records no dependency (as text, or in SQL/JSON''s RETURNING)' END, what.kind)
       FROM (
         SELECT pg_catalog.format('constraint %I on %s', k.conname, k.conrelid::pg_catalog.regclass) AS kind, pg_catalog.pg_get_constraintdef(k.oid) AS expression
           FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
          WHERE c.relnamespace = 'public'::pg_catalog.regnamespace
         UNION ALL
         SELECT pg_catalog.format('the default or expression of column %I of %s', a.attname, ad.adrelid::pg_catalog.regclass), pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
           FROM pg_catalog.pg_attrdef ad
           JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
           JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
          WHERE c.relnamespace = 'public'::pg_catalog.regnamespace
         UNION ALL
         SELECT pg_catalog.format('the WHEN condition of trigger %I on %s', g.tgname, g.tgrelid::pg_catalog.regclass), pg_catalog.pg_get_triggerdef(g.oid)
           FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
          WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND NOT g.tgisinternal AND g.tgqual IS NOT NULL
         UNION ALL
         SELECT pg_catalog.format('view %s', c.oid::pg_catalog.regclass), pg_catalog.pg_get_viewdef(c.oid)
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('v', 'm')
         UNION ALL
         SELECT pg_catalog.format('the argument defaults of function %s', p.oid::pg_catalog.regprocedure), pg_catalog.pg_get_function_arguments(p.oid)
           FROM pg_catalog.pg_proc p
          WHERE p.pronamespace = 'public'::pg_catalog.regnamespace AND p.pronargdefaults > 0
       ) what
      WHERE what.expression ~* $4 OR what.expression ~* $5 OR what.expression ~* $6
     UNION ALL
     -- Only the owner writes the migrations record. A foreign key from it would let whoever
     -- writes the table it references rewrite or delete its rows (ON UPDATE or DELETE CASCADE,
     -- SET NULL: the referencing table's owner's rights), and a trigger on it would run the
     -- backup's code as the owner at the next migration.
     SELECT pg_catalog.format('foreign key %I on %s', k.conname, k.conrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' AND k.conrelid = pg_catalog.to_regclass($2)
     UNION ALL
     -- A view over a table the application role writes would let it say what was applied; an
     -- unlogged table is emptied by a crash or a failover, and migrations then run again.
     SELECT pg_catalog.format('the migrations record %s as %s', c.oid::pg_catalog.regclass,
                              CASE WHEN c.relpersistence <> 'p' THEN 'an unlogged table' ELSE 'no table but a relation of kind ' || c.relkind::pg_catalog.text END)
       FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($2) AND (c.relkind <> 'r' OR c.relpersistence <> 'p')
     UNION ALL
     SELECT pg_catalog.format('trigger %I on %s', t.tgname, t.tgrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal AND t.tgrelid = pg_catalog.to_regclass($2)
     UNION ALL
     -- A table the backup turned autovacuum off for (pg_dump writes a table's storage
     -- parameters as they are) grows dead rows and drifts towards transaction-ID wraparound
     -- without a word from then on; and so does one whose vacuum waits for a billion dead rows,
     -- or ten times the table's (a threshold of 2147483647 and a scale factor of 100 kept
     -- 200,000 dead rows where the next table had none, a backup audit found). Any other
     -- storage parameter is a tuning an operator may have made, and is kept.
     SELECT pg_catalog.format('%s, whose %sautovacuum the backup turns off', c.oid::pg_catalog.regclass, CASE WHEN o.toast THEN 'TOAST table''s ' ELSE '' END)
       FROM pg_catalog.pg_class c
       LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
      CROSS JOIN LATERAL (SELECT false AS toast, option_name, option_value FROM pg_catalog.pg_options_to_table(c.reloptions)
                          UNION ALL
                          SELECT true, option_name, option_value FROM pg_catalog.pg_options_to_table(t.reloptions)) o
      WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'm', 'p')
        -- CASE, so that only these options' values are read as numbers.
        AND CASE o.option_name
              WHEN 'autovacuum_enabled' THEN o.option_value ~* '^(f|fa|fal|fals|false|n|no|of|off|0)$'
              WHEN 'autovacuum_vacuum_threshold' THEN o.option_value::pg_catalog.float8 >= 1e9
              WHEN 'autovacuum_vacuum_scale_factor' THEN o.option_value::pg_catalog.float8 >= 10
              ELSE false
            END
     UNION ALL
     -- Its CHECKs, defaults and index expressions run at every migration too, as the owner,
     -- with the migration lock held: one of the backup's own may refuse every later migration,
     -- or take as long over each as it likes (a CHECK the backup's rows pass cheaply, and a new
     -- name does not). Only the migrator's own are kept, as the server writes them.
     SELECT pg_catalog.format('constraint %I on the migrations record %s', k.conname, k.conrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_constraint k
      WHERE k.conrelid = pg_catalog.to_regclass($2) AND k.contype NOT IN ('f', 'p', 'n')
        AND NOT (k.contype = 'c' AND pg_catalog.pg_get_constraintdef(k.oid) = ANY ($7::pg_catalog.text[]))
     UNION ALL
     SELECT pg_catalog.format('the default of column %I of the migrations record %s', a.attname, ad.adrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
      WHERE ad.adrelid = pg_catalog.to_regclass($2)
        AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) IS DISTINCT FROM ($8::pg_catalog.jsonb ->> a.attname::pg_catalog.text)
     UNION ALL
     SELECT pg_catalog.format('index %s on the migrations record %s, with an expression or a predicate', i.indexrelid::pg_catalog.regclass, i.indrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_index i
      WHERE i.indrelid = pg_catalog.to_regclass($2) AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
     UNION ALL
     -- A query of a parent reads and writes its children's rows on the parent's privileges
     -- alone: the migrations record made a child of a table the application role may write
     -- would be written through it. This schema has no inheritance nor partitions.
     SELECT pg_catalog.format('%s as a partition or child of %s', i.inhrelid::pg_catalog.regclass, i.inhparent::pg_catalog.regclass)
       FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class child ON child.oid = i.inhrelid JOIN pg_catalog.pg_class parent ON parent.oid = i.inhparent
      WHERE child.relnamespace = 'public'::pg_catalog.regnamespace OR parent.relnamespace = 'public'::pg_catalog.regnamespace`,
    [
      allowedExtensions,
      `public.${migrationsTable}`,
      JSON.stringify(knownFunctions),
      runsSqlText,
      actsBeyondTheRow,
      looksUpByName,
      migrationRecordChecks,
      JSON.stringify(migrationRecordDefaults),
    ],
  );
  // Names the backup chose, one line each.
  return rows.map((row) => oneLine(row.what)).sort();
}
