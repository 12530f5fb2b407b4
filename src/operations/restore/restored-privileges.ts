import type * as pg from 'pg';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { applicationPrivileges, onColumns } from '../../provisioning/application-privileges.js';
import type { MigrationFunction } from './migration-functions.js';
import type { BackupGrantees } from '../vetting/backup-statement-allow-list.js';

/** Who `owner`'s default privileges in `public` give new tables to, read before a restore empties the schema. */
export interface NewTableGrantees {
  /**
   * The roles they give exactly the release step's privileges to
   * (`applicationPrivileges.tables`: SELECT, INSERT, UPDATE, DELETE), as `ensureAppRole`
   * leaves the application role (and earlier restores did). Such a role already receives
   * every table a migration creates, so a backup may give it the release step's grants on the
   * restored ones too.
   */
  applicationRoles: string[];
  /**
   * Every other role they let read new tables (a reporting role's SELECT), with what they
   * give it there: a backup may give such a role no more on a restored table (a view: only
   * SELECT), and elsewhere only what reads (USAGE on the schema, SELECT on sequences…).
   */
  readers: Record<string, string[]>;
  /** The one role of `applicationRoles`, the restore's to give the release step's grants; undefined unless exactly one. */
  applicationRole: string | undefined;
}

/**
 * One read of `owner`'s default privileges on new tables in `public`, for both questions a
 * restore asks of them (see {@link NewTableGrantees}).
 *
 * @example
 * await newTableGrantees(client, 'kennwilliamson')
 * // { applicationRoles: ['kennwilliamson_app'], readers: { reporting: ['SELECT'] }, applicationRole: 'kennwilliamson_app' }
 */
export async function newTableGrantees(client: pg.ClientBase, owner: string): Promise<NewTableGrantees> {
  const { rows } = await client.query<{ role: string; privileges: string[] }>(
    `SELECT pg_catalog.pg_get_userbyid(a.grantee) AS role, pg_catalog.array_agg(DISTINCT a.privilege_type::text) AS privileges
       FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_roles o ON o.oid = d.defaclrole, LATERAL pg_catalog.aclexplode(d.defaclacl) a
      WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND d.defaclobjtype = 'r' AND o.rolname = $1
        AND a.grantee <> 0 AND a.grantee <> d.defaclrole AND pg_catalog.pg_get_userbyid(a.grantee) !~ '^pg_'
      GROUP BY a.grantee`,
    [owner],
  );
  const releaseStep = [...applicationPrivileges.tables].sort().join(',');
  const isApplicationRole = (row: { privileges: string[] }) => [...row.privileges].sort().join(',') === releaseStep;
  const applicationRoles = rows.filter(isApplicationRole).map((row) => row.role).sort();
  const readers = rows
    .filter((row) => !isApplicationRole(row) && row.privileges.includes('SELECT'))
    .map((row) => [row.role, row.privileges.filter((privilege) => applicationPrivileges.tables.includes(privilege)).sort()] as const);
  return {
    applicationRoles,
    readers: Object.fromEntries(readers.sort(([a], [b]) => (a < b ? -1 : 1))),
    applicationRole: applicationRoles.length === 1 ? applicationRoles[0] : undefined,
  };
}

// What the application role may hold (applicationPrivileges), one row: $2 on the schema, $3
// on tables and views, $4 on their columns, $5 and $6 on the migrations record ($9) and its
// columns, $7 on sequences, $8 on routines, $10 on types.
const applicationPrivilegesRow = `
  application AS (
    SELECT $2::text[] AS schema, $3::text[] AS tables, $4::text[] AS table_columns, $5::text[] AS record, $6::text[] AS record_columns,
           $7::text[] AS sequences, $8::text[] AS routines, $9::text AS record_name, $10::text[] AS types
  )`;

// Every privilege on an object in public (the schema itself, relations and their columns,
// routines, types) that goes beyond what a restore leaves: the owner's own; PUBLIC's as
// PostgreSQL grants them (USAGE on the schema, EXECUTE on routines, USAGE on types); an
// application role's as the release step grants them (applicationPrivileges); and no grant
// options. Only objects whose owner the role restoring acts for (an extension a superuser
// created stays as it is).
const excessPrivilegesQuery = `
  WITH ${applicationPrivilegesRow},
  acl_objects AS (
    SELECT 'SCHEMA'::text AS kind, 'public'::text AS object, NULL::text AS columns, n.nspowner AS owner, n.nspacl AS acl,
           ARRAY['USAGE'] AS to_public, app.schema AS to_application, false AS view
      FROM pg_catalog.pg_namespace n, application app WHERE n.nspname = 'public'
    UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, pg_catalog.format('public.%I', c.relname), NULL, c.relowner, c.relacl,
           ARRAY[]::text[],
           CASE WHEN c.relkind = 'S' THEN app.sequences WHEN c.relname = app.record_name THEN app.record ELSE app.tables END, c.relkind = 'v'
      FROM pg_catalog.pg_class c, application app
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    UNION ALL
    SELECT 'TABLE', pg_catalog.format('public.%I', c.relname), pg_catalog.quote_ident(a.attname), c.relowner, a.attacl,
           ARRAY[]::text[], CASE WHEN c.relname = app.record_name THEN app.record_columns ELSE app.table_columns END, c.relkind = 'v'
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid, application app
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, NULL, p.proowner, p.proacl, ARRAY['EXECUTE'], app.routines, false
      FROM pg_catalog.pg_proc p, application app WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
    UNION ALL
    SELECT CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('public.%I', t.typname), NULL, t.typowner, t.typacl,
           ARRAY['USAGE'], app.types, false
      FROM pg_catalog.pg_type t, application app WHERE t.typnamespace = 'public'::pg_catalog.regnamespace
  )
  SELECT o.kind, o.object, o.columns, a.privilege_type AS privilege,
         CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee,
         a.privilege_type = ANY (allowed.privileges) AS option_only
    FROM acl_objects o, application app, LATERAL pg_catalog.aclexplode(o.acl) a,
         LATERAL (SELECT pg_catalog.pg_get_userbyid(a.grantee) AS name) grantee,
         LATERAL (SELECT CASE WHEN a.grantee = 0 THEN o.to_public
                              WHEN grantee.name = ANY ($1::text[]) THEN o.to_application
                              -- A reader: its own privileges on tables (the record: SELECT), and what reads.
                              WHEN $11::pg_catalog.jsonb ? grantee.name THEN
                                CASE WHEN o.kind = 'TABLE' AND o.object <> pg_catalog.format('public.%I', app.record_name) THEN
                                       ARRAY(SELECT pg_catalog.jsonb_array_elements_text($11::pg_catalog.jsonb -> grantee.name))
                                     WHEN o.kind IN ('TABLE', 'SEQUENCE') THEN ARRAY['SELECT']
                                     WHEN o.kind = 'ROUTINE' THEN ARRAY['EXECUTE']
                                     ELSE ARRAY['USAGE'] END
                              ELSE ARRAY[]::text[] END AS privileges) granted,
         -- On a view, the writes the release step's grants carry are taken back from the role the
         -- restore gives them to ($12) once this check passed; anyone else may only read one.
         LATERAL (SELECT CASE WHEN o.view AND grantee.name IS DISTINCT FROM $12::text
                              THEN ARRAY(SELECT p FROM pg_catalog.unnest(granted.privileges) p WHERE p = 'SELECT')
                              ELSE granted.privileges END AS privileges) allowed
   WHERE o.acl IS NOT NULL AND pg_catalog.pg_has_role(o.owner, 'USAGE')
     AND a.grantee <> o.owner AND a.grantee <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
     AND (a.is_grantable OR NOT a.privilege_type = ANY (allowed.privileges))
   ORDER BY 1, 2, 3, 5, 4`;

// The same for the default privileges of the roles the role restoring acts for, in public and
// database-wide (no schema: they apply in every schema, public included, and outlive any
// restore's emptying of public; a backup's function can set them while its rows load). A
// database-wide entry replaces PostgreSQL's built-in defaults for its kind, which the PUBLIC
// rules below allow.
const excessDefaultPrivilegesQuery = `
  WITH ${applicationPrivilegesRow},
  defaults AS (
    SELECT d.defaclrole, d.defaclobjtype, d.defaclnamespace = 0 AS everywhere, a.grantee, a.privilege_type, a.is_grantable,
           CASE WHEN a.grantee = 0 THEN CASE d.defaclobjtype WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                WHEN pg_catalog.pg_get_userbyid(a.grantee) = ANY ($1::text[]) THEN
                  CASE d.defaclobjtype WHEN 'r' THEN app.tables WHEN 'S' THEN app.sequences
                                       WHEN 'f' THEN app.routines WHEN 'T' THEN app.types ELSE ARRAY[]::text[] END
                WHEN $11::pg_catalog.jsonb ? pg_catalog.pg_get_userbyid(a.grantee) THEN
                  CASE d.defaclobjtype WHEN 'r' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text($11::pg_catalog.jsonb -> pg_catalog.pg_get_userbyid(a.grantee)))
                                       WHEN 'S' THEN ARRAY['SELECT'] WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                ELSE ARRAY[]::text[] END AS allowed
      FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) a, application app
     WHERE d.defaclnamespace IN (0, 'public'::pg_catalog.regnamespace) AND pg_catalog.pg_has_role(d.defaclrole, 'USAGE')
       AND a.grantee <> d.defaclrole
  )
  SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(defaclrole)) AS role,
         CASE defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objects,
         privilege_type AS privilege,
         CASE grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)) END AS grantee,
         privilege_type = ANY (allowed) AS option_only, everywhere
    FROM defaults WHERE is_grantable OR NOT privilege_type = ANY (allowed)
   ORDER BY 1, 2, 4, 3`;

// The parameters of applicationPrivilegesRow, after the application roles ($1).
const applicationPrivilegesParameters = [
  applicationPrivileges.schema,
  applicationPrivileges.tables,
  onColumns(applicationPrivileges.tables),
  applicationPrivileges.migrationsRecord,
  onColumns(applicationPrivileges.migrationsRecord),
  applicationPrivileges.sequences,
  applicationPrivileges.routines,
  migrationsTable,
  applicationPrivileges.types,
];

interface ExcessPrivilege {
  kind: string;
  object: string;
  columns: string | null;
  privilege: string;
  grantee: string;
  option_only: boolean;
}

interface ExcessDefaultPrivilege {
  role: string;
  objects: string;
  privilege: string;
  grantee: string;
  option_only: boolean;
  everywhere: boolean;
}

/**
 * The restore's second layer, run in its transaction before COMMIT: the privileges in
 * `public` that go beyond what a restore may leave, in words (`SELECT on table public.users
 * to "reporting"`), or `[]`. The allow-list already refused every statement that would grant
 * them; this asks the catalog what the backup's statements actually left, whatever their
 * form (a custom archive's ACL entries included), and the restore refuses to COMMIT when
 * anything is found. Beyond what a restore may leave: on any object in `public` whose owner
 * the role restoring acts for (the schema, relations and their columns, routines, types) and
 * in the default privileges there or database-wide, a privilege of any role but the owner, the role restoring
 * and `grantees.applicationRoles` and `grantees.readers`; of PUBLIC anything beyond
 * PostgreSQL's own defaults (USAGE on the schema, EXECUTE on routines, USAGE on types); of an
 * application role anything beyond the release step's grants ({@link applicationPrivileges});
 * of a reader anything beyond what it may read (its own privileges on new tables; USAGE on
 * the schema and types, SELECT on sequences, EXECUTE); on a view, any write but `givenGrants`' (the role whose grants the restore sets
 * next, taking writes on views back: a view over the migrations record would write it); and
 * any grant option.
 *
 * @example
 * await excessRestoredPrivileges(client, { owner: 'kennwilliamson', applicationRoles: ['kennwilliamson_app'] }) // []
 */
export async function excessRestoredPrivileges(client: pg.ClientBase, grantees: BackupGrantees, givenGrants?: string): Promise<string[]> {
  const parameters = [[...grantees.applicationRoles], ...applicationPrivilegesParameters, JSON.stringify(grantees.readers ?? {})];
  const { rows: excess } = await client.query<ExcessPrivilege>(excessPrivilegesQuery, [...parameters, givenGrants ?? null]);
  const { rows: excessDefaults } = await client.query<ExcessDefaultPrivilege>(excessDefaultPrivilegesQuery, parameters);
  const option = (row: { option_only: boolean }) => (row.option_only ? ' WITH GRANT OPTION' : '');
  return [
    ...excess.map(
      (row) => `${row.privilege}${row.columns ? ` (${row.columns})` : ''} on ${row.kind.toLowerCase()} ${row.object} to ${row.grantee}${option(row)}`,
    ),
    ...excessDefaults.map(
      (row) =>
        `${row.privilege} on new ${row.objects.toLowerCase()} of ${row.role} to ${row.grantee}${option(row)} ` +
        `(default privileges${row.everywhere ? ' in every schema' : ''})`,
    ),
  ];
}

/**
 * The constraint triggers and the constraints that can be deferred, on the tables of the roles
 * the role restoring acts for, in any schema (a backup's function may make one), as `trigger on
 * table` and `constraint name on table`. A constraint's own triggers are internal, so the
 * constraint stands for them: a deferrable unique or exclusion constraint rechecks at COMMIT,
 * running its index expressions (the backup's functions), and a deferrable foreign key's
 * cascade fires the referencing table's triggers there; this schema has none.
 *
 * @example await deferrableTriggers(client) // ['at_commit on public.secrets', 'constraint once on public.notes']
 */
export async function deferrableTriggers(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ trigger: string }>(
    `SELECT pg_catalog.format('%I on %s', t.tgname, t.tgrelid::pg_catalog.regclass) AS trigger
       FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      WHERE NOT t.tgisinternal AND t.tgdeferrable AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
     UNION ALL
     SELECT pg_catalog.format('constraint %I on %s', k.conname, k.conrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      WHERE k.condeferrable AND k.contype <> 't' AND pg_catalog.pg_has_role(c.relowner, 'USAGE') -- a constraint trigger is named above
      ORDER BY 1`,
  );
  return rows.map((row) => row.trigger);
}

// Who owns a member of an extension, by its catalog: the kinds of object an extension's owner
// may add to it (ALTER EXTENSION … ADD).
const memberOwnerColumns: ReadonlyArray<readonly [string, string]> = [
  ['pg_proc', 'proowner'],
  ['pg_class', 'relowner'],
  ['pg_type', 'typowner'],
  ['pg_operator', 'oprowner'],
  ['pg_namespace', 'nspowner'],
  ['pg_opclass', 'opcowner'],
  ['pg_opfamily', 'opfowner'],
  ['pg_collation', 'collowner'],
  ['pg_conversion', 'conowner'],
  ['pg_ts_config', 'cfgowner'],
  ['pg_ts_dict', 'dictowner'],
];
const memberOwners = memberOwnerColumns
  .map(
    ([catalog, owner]) =>
      `WHEN 'pg_catalog.${catalog}'::pg_catalog.regclass THEN (SELECT pg_catalog.pg_has_role(x.${owner}, 'USAGE') FROM pg_catalog.${catalog} x WHERE x.oid = d.objid)`,
  )
  .join(' ');

// PostgreSQL's own functions that act beyond the row an expression is computed for: on the
// session (a setting, random()'s seed, pg_trgm's threshold, an advisory lock), other sessions (a notification, a cancel) or the
// server (large objects, files, configuration, replication). Called: a column may be named so.
const actsBeyondTheRow = String.raw`\m(set_config|setseed|set_limit|pg_(try_)?advisory_\w+|pg_notify|lo_\w+|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_sleep\w*|setval|pg_stat_reset\w*|pg_log_backend_memory_contexts|pg_promote|pg_switch_wal|pg_create_restore_point|pg_\w+_replication_slot|pg_replication_origin_\w+|pg_file_\w+|pg_read_\w+|pg_ls_\w+)\M\s*\(`;
// PostgreSQL's own functions that run a query given as text: an expression that calls one
// runs whatever the text says, and depends on nothing the catalog records.
// (A PostgreSQL regular expression: \m and \M are its word boundaries.)
const runsSqlText = String.raw`\m(query_to_xml|query_to_xmlschema|query_to_xml_and_xmlschema|cursor_to_xml|cursor_to_xmlschema|ts_stat|ts_rewrite|database_to_xml|database_to_xmlschema|database_to_xml_and_xmlschema|schema_to_xml|schema_to_xmlschema|schema_to_xml_and_xmlschema|table_to_xml|table_to_xmlschema|table_to_xml_and_xmlschema)\M`;

// A type named as a migration wrote it: as PostgreSQL's, else as one of public.
const resolvedType = (name: string) => `COALESCE(pg_catalog.to_regtype(${name}), pg_catalog.to_regtype('"public".' || (${name})))::pg_catalog.oid`;

/**
 * What the allow-list refuses in a backup's text, when the backup's own functions made it
 * while they ran (a CHECK as rows load): rules on the relations of public other than a view's
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
 * @example await codeBeyondTheSchema(client, ['pg_trgm'], await migrationFunctions()) // ['rule forge on public.notes', 'extension pgcrypto']
 */
export async function codeBeyondTheSchema(
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
      WHERE CASE d.refclassid
              WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT x.pronamespace FROM pg_catalog.pg_proc x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN (SELECT x.oprnamespace FROM pg_catalog.pg_operator x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT x.typnamespace FROM pg_catalog.pg_type x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_collation'::pg_catalog.regclass THEN (SELECT x.collnamespace FROM pg_catalog.pg_collation x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_opclass'::pg_catalog.regclass THEN (SELECT x.opcnamespace FROM pg_catalog.pg_opclass x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_opfamily'::pg_catalog.regclass THEN (SELECT x.opfnamespace FROM pg_catalog.pg_opfamily x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_ts_config'::pg_catalog.regclass THEN (SELECT x.cfgnamespace FROM pg_catalog.pg_ts_config x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_ts_dict'::pg_catalog.regclass THEN (SELECT x.dictnamespace FROM pg_catalog.pg_ts_dict x WHERE x.oid = d.refobjid)
              WHEN 'pg_catalog.pg_conversion'::pg_catalog.regclass THEN (SELECT x.connamespace FROM pg_catalog.pg_conversion x WHERE x.oid = d.refobjid)
            END NOT IN ('public'::pg_catalog.regnamespace, 'pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)
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
     -- A cast to or from a type of public (an implicit one above all) changes how later
     -- migrations resolve calls and operators; this schema has none but its extensions'.
     SELECT pg_catalog.pg_describe_object('pg_catalog.pg_cast'::pg_catalog.regclass, c.oid, 0)
       FROM pg_catalog.pg_cast c
      WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid IN (c.castsource, c.casttarget) AND t.typnamespace = 'public'::pg_catalog.regnamespace)
        AND NOT ${extensionMember('pg_catalog.pg_cast', 'c.oid')}
     UNION ALL
     -- A view reads its tables with its owner's rights: one that the application role may read
     -- would give it, say, the owner's tables of another schema.
     SELECT DISTINCT pg_catalog.format('view %s, which reads %s, outside the public schema, with the owner''s rights', v.oid::pg_catalog.regclass, t.oid::pg_catalog.regclass)
       FROM pg_catalog.pg_class v
       JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
      WHERE v.relnamespace = 'public'::pg_catalog.regnamespace AND v.relkind = 'v'
        AND t.relnamespace NOT IN ('public'::pg_catalog.regnamespace, 'pg_catalog'::pg_catalog.regnamespace, 'information_schema'::pg_catalog.regnamespace)
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
                                   ELSE '%s, which calls a function that acts beyond its row (on the session, other sessions or the server)' END, what.kind)
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
      WHERE what.expression ~* $4 OR what.expression ~* $5
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
     -- A query of a parent reads and writes its children's rows on the parent's privileges
     -- alone: the migrations record made a child of a table the application role may write
     -- would be written through it. This schema has no inheritance nor partitions.
     SELECT pg_catalog.format('%s as a partition or child of %s', i.inhrelid::pg_catalog.regclass, i.inhparent::pg_catalog.regclass)
       FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class child ON child.oid = i.inhrelid JOIN pg_catalog.pg_class parent ON parent.oid = i.inhparent
      WHERE child.relnamespace = 'public'::pg_catalog.regnamespace OR parent.relnamespace = 'public'::pg_catalog.regnamespace`,
    [allowedExtensions, `public.${migrationsTable}`, JSON.stringify(knownFunctions), runsSqlText, actsBeyondTheRow],
  );
  return rows.map((row) => row.what).sort();
}
