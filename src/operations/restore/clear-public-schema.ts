import type * as pg from 'pg';
import { RestoreError } from '../../errors.js';

/** An extension in `public` that a restore leaves in place, since the role restoring may neither drop nor create it. */
export interface KeptExtension {
  name: string;
  /** The role that created it (a superuser, through `setup --admin`). */
  owner: string;
  /** The names of the functions it provides, to recognise a backup that defines one of them itself. */
  functions: string[];
}

/** What {@link clearPublicSchema} found and did. */
export interface ClearedSchema {
  kept: KeptExtension[];
  /** The objects dropped, as `DROP` names them (`TABLE public.users`); what they held went with them. */
  dropped: string[];
}

// The DROP for each kind of object that pg_identify_object names; anything else in `public`
// (a kind this schema never has) stops the restore rather than being left behind.
const dropKeywords: Record<string, string> = {
  extension: 'EXTENSION',
  table: 'TABLE',
  view: 'VIEW',
  'materialized view': 'MATERIALIZED VIEW',
  'foreign table': 'FOREIGN TABLE',
  sequence: 'SEQUENCE',
  type: 'TYPE',
  function: 'FUNCTION',
  procedure: 'PROCEDURE',
  aggregate: 'AGGREGATE',
  operator: 'OPERATOR',
  'operator class': 'OPERATOR CLASS',
  'operator family': 'OPERATOR FAMILY',
  collation: 'COLLATION',
  conversion: 'CONVERSION',
  'statistics object': 'STATISTICS',
  'text search configuration': 'TEXT SEARCH CONFIGURATION',
  'text search dictionary': 'TEXT SEARCH DICTIONARY',
  'text search parser': 'TEXT SEARCH PARSER',
  'text search template': 'TEXT SEARCH TEMPLATE',
};

const defaultPrivilegeKinds: Record<string, string> = { r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES' };

// Extensions in public that the session's role does not own (only their owner may drop one),
// with every extension they require, which dropping would take them along with.
const keptExtensionsQuery = `
  WITH RECURSIVE kept(oid) AS (
    SELECT e.oid FROM pg_catalog.pg_extension e
     WHERE e.extnamespace = 'public'::pg_catalog.regnamespace AND NOT pg_catalog.pg_has_role(e.extowner, 'USAGE')
    UNION
    SELECT d.refobjid FROM pg_catalog.pg_depend d JOIN kept k ON d.objid = k.oid
     WHERE d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
  )
  SELECT e.oid::text AS oid, e.extname AS name, pg_catalog.pg_get_userbyid(e.extowner) AS owner, e.extnamespace = 'public'::pg_catalog.regnamespace AS in_public,
         ARRAY(SELECT DISTINCT p.proname::text FROM pg_catalog.pg_depend m JOIN pg_catalog.pg_proc p ON p.oid = m.objid
                WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND m.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                  AND m.refobjid = e.oid AND m.deptype = 'e' ORDER BY 1) AS functions
    FROM pg_catalog.pg_extension e WHERE e.oid IN (SELECT oid FROM kept) ORDER BY e.extname`;

// Every object in public, as DROP SCHEMA … CASCADE would find it (through its dependency on
// the schema), but for extension members (they go with their extension, or stay with a kept
// one) and objects internal to another (a multirange to its range, an identity sequence to
// its column): extensions first, so that their members go before anything tries to drop
// them, then relations, so that their indexes, constraints, defaults and owned sequences go
// with them.
const objectsQuery = `
  SELECT o.type, o.identity
    FROM pg_catalog.pg_depend d, LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, 0) o
   WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = 'public'::pg_catalog.regnamespace AND d.deptype = 'n'
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m
                      WHERE m.classid = d.classid AND m.objid = d.objid AND m.objsubid = 0 AND m.deptype IN ('e', 'i'))
     AND NOT (d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.objid = ANY ($1::pg_catalog.oid[]))
   ORDER BY d.classid <> 'pg_catalog.pg_extension'::pg_catalog.regclass, d.classid <> 'pg_catalog.pg_class'::pg_catalog.regclass, o.identity`;

// What lives outside public but depends on an object in it that the restore drops: DROP …
// CASCADE would take it along, unsaid (another schema's view or materialized view over users, a
// foreign key to it, a column of its row type or of a domain, a cast, a policy or default that
// calls a function of public). Where an object sits: a rule, trigger, default or policy with
// its relation, an operator family's member with its family, a cast with a type of public it
// converts (else nowhere, so outside). A part of an object of public (a foreign key's triggers on
// the table it references, a TOAST table) goes with it, and is nobody's loss. A view is named,
// not its rule; a generated column, not its expression. Extensions kept, and their members, are
// not dropped. The dependencies on public's objects are found first, and only theirs placed:
// pg_identify_object is the costly part (both sides of every row of pg_depend took 480 ms at
// 33,000 rows, against 225 ms).
const outsideDependentsQuery = `
  WITH on_public AS MATERIALIZED (
    SELECT d.classid, d.objid, d.objsubid, d.refclassid, d.refobjid, d.refobjsubid
      FROM pg_catalog.pg_depend d
     WHERE d.deptype <> 'i'
       AND NOT (d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = ANY ($1::pg_catalog.oid[]))
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m
                        WHERE m.classid = d.refclassid AND m.objid = d.refobjid AND m.deptype = 'e' AND m.refobjid = ANY ($1::pg_catalog.oid[]))
       AND CASE WHEN d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                  THEN (SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.oid = d.refobjid) = 'public'::pg_catalog.regnamespace
                ELSE (pg_catalog.pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid)).schema = 'public' END
  ), dependency AS (
    SELECT d.*,
           CASE d.classid
             WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid)
             WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = d.objid)
             WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = d.objid)
             WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = d.objid)
           END AS relation
      FROM on_public d
  ), placed AS (
    SELECT dependency.*,
           CASE WHEN relation IS NOT NULL THEN (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = relation)
                WHEN classid = 'pg_catalog.pg_amop'::pg_catalog.regclass
                  THEN (SELECT f.opfnamespace FROM pg_catalog.pg_amop o JOIN pg_catalog.pg_opfamily f ON f.oid = o.amopfamily WHERE o.oid = objid)
                WHEN classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass
                  THEN (SELECT f.opfnamespace FROM pg_catalog.pg_amproc p JOIN pg_catalog.pg_opfamily f ON f.oid = p.amprocfamily WHERE p.oid = objid)
                WHEN classid = 'pg_catalog.pg_extension'::pg_catalog.regclass THEN (SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.oid = objid)
                WHEN classid = 'pg_catalog.pg_cast'::pg_catalog.regclass
                  THEN (SELECT CASE WHEN 'public'::pg_catalog.regnamespace IN (s.typnamespace, t.typnamespace) THEN 'public'::pg_catalog.regnamespace END
                          FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_type s ON s.oid = c.castsource JOIN pg_catalog.pg_type t ON t.oid = c.casttarget WHERE c.oid = objid)
                ELSE (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = (pg_catalog.pg_identify_object(classid, objid, objsubid)).schema) END AS schema
      FROM dependency
  )
  SELECT CASE WHEN classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                    AND (SELECT r.rulename = '_RETURN' FROM pg_catalog.pg_rewrite r WHERE r.oid = objid)
                THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, relation, 0)
              WHEN classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                    AND (SELECT a.attgenerated <> '' FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.oid = objid)
                THEN (SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, d.adrelid, d.adnum) FROM pg_catalog.pg_attrdef d WHERE d.oid = objid)
              ELSE pg_catalog.pg_describe_object(classid, objid, objsubid) END AS dependent,
         pg_catalog.min(pg_catalog.pg_describe_object(refclassid, refobjid, refobjsubid)) AS on_object
    FROM placed
   WHERE schema IS DISTINCT FROM 'public'::pg_catalog.regnamespace AND schema IS DISTINCT FROM 'pg_toast'::pg_catalog.regnamespace
   GROUP BY 1 ORDER BY 1`;

/**
 * Empties the `public` schema for a restore, in the restore's transaction and as the role
 * that restores (the database's owner, never a superuser), so that the backup replaces
 * everything in it: tables a later migration added are gone, and `schema_migrations` matches
 * the tables again. Every object in `public` is dropped with CASCADE (indexes, constraints,
 * triggers, defaults and views on it go too), unless something outside `public` depends on one
 * (another schema's view, a foreign key, a column of its row type): then nothing is dropped,
 * and a `RestoreError` names them. The schema's grants go back to what initdb
 * gives it on PostgreSQL 15+ (`USAGE` for everyone, all for `pg_database_owner`), and that
 * role's default privileges in it are cleared; the backup's `GRANT`s and `ALTER DEFAULT
 * PRIVILEGES` then put back exactly its own.
 *
 * Except the extensions in `public` that the role does not own: only their owner may drop
 * them, and those a superuser created (`pg_uuidv7`, by `setup --admin`, since it is not a
 * trusted extension) the owner could not create again either. They stay as they are, and
 * their functions with them, so the backup's tables can call them in their defaults; the
 * backup's `CREATE EXTENSION IF NOT EXISTS` for one finds it and changes nothing (PostgreSQL
 * checks whether the extension exists before any privilege), and its `COMMENT ON EXTENSION`,
 * which only the owner may write, is for the caller to skip. (`DROP SCHEMA public CASCADE`
 * would drop them regardless of their owner, and `DROP OWNED BY CURRENT_USER` would also drop
 * the owner's objects in every other schema and revoke what was granted to it.) The role
 * must own the schema (through `pg_database_owner`, as `setup --admin` leaves it): a schema's
 * owner may drop any object in it, whoever made it, but not an extension; otherwise the
 * restore fails with SQLSTATE 42501.
 *
 * @example
 * await client.query('BEGIN')
 * const { kept } = await clearPublicSchema(client) // kept: [{ name: 'pg_uuidv7', owner: 'postgres', functions: [...] }]
 */
export async function clearPublicSchema(client: pg.Client): Promise<ClearedSchema> {
  // A database whose public schema was dropped gets it back as initdb makes it.
  const { rowCount } = await client.query("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public'");
  if (rowCount === 0) await client.query('CREATE SCHEMA public AUTHORIZATION pg_database_owner');

  const { rows: extensions } = await client.query<{ oid: string; name: string; owner: string; in_public: boolean; functions: string[] }>(
    keptExtensionsQuery,
  );
  const keptOids = extensions.map((extension) => extension.oid);
  const { rows: outside } = await client.query<{ dependent: string; on_object: string }>(outsideDependentsQuery, [keptOids]);
  if (outside.length > 0) {
    const named = outside.slice(0, 5).map((row) => `${row.dependent} (on ${row.on_object})`);
    throw new RestoreError(
      `objects outside the public schema depend on what is in it, and emptying public would drop them too: ${named.join('; ')}` +
        `${outside.length > 5 ? ` and ${outside.length - 5} more` : ''}; drop them, or make them not depend on public, then restore again (and make them again after)`,
    );
  }
  const { rows: objects } = await client.query<{ type: string; identity: string }>(objectsQuery, [keptOids]);
  const dropped: string[] = [];
  for (const { type, identity } of objects) {
    const keyword = dropKeywords[type];
    if (!keyword) throw new Error(`the restore does not know how to drop ${type} ${identity} from the public schema; drop it by hand, then restore again`);
    // IF EXISTS: an earlier CASCADE may have taken it already.
    await client.query(`DROP ${keyword} IF EXISTS ${identity} CASCADE`);
    dropped.push(`${keyword} ${identity}`);
  }

  // The schema's grants as initdb makes them; the backup grants the rest again.
  const { rows: grantees } = await client.query<{ grantee: string }>(
    `SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
       FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
      WHERE n.nspname = 'public' AND a.grantee <> n.nspowner ORDER BY 1`,
  );
  if (grantees.length > 0) await client.query(`REVOKE ALL ON SCHEMA public FROM ${grantees.map((row) => row.grantee).join(', ')} CASCADE`);
  await client.query('GRANT USAGE ON SCHEMA public TO PUBLIC');
  await client.query("COMMENT ON SCHEMA public IS 'standard public schema'");

  // Default privileges in public of this role (and of roles whose privileges it has): what a
  // table created from now on would be granted. Revoking them all removes the entries.
  const { rows: defaults } = await client.query<{ role: string; kind: string; grantees: string }>(
    `SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.defaclrole)) AS role, d.defaclobjtype AS kind,
            pg_catalog.string_agg(DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, ', ') AS grantees
       FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) a
      WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND pg_catalog.pg_has_role(d.defaclrole, 'USAGE')
      GROUP BY d.defaclrole, d.defaclobjtype ORDER BY 1, 2`,
  );
  for (const { role, kind, grantees: from } of defaults) {
    const objects = defaultPrivilegeKinds[kind];
    if (objects) await client.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${role} IN SCHEMA public REVOKE ALL ON ${objects} FROM ${from} CASCADE`);
  }

  const kept = extensions
    .filter((extension) => extension.in_public)
    .map(({ name, owner, functions }) => ({ name, owner, functions }));
  return { kept, dropped };
}
