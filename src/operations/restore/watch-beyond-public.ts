import type * as pg from 'pg';
import { RestoreError } from '../../errors.js';

// Catalogs outside any schema that a restore itself never writes, whose rows a backup's code
// could leave behind beside the public schema: large objects and what reaches other servers
// or languages. (The catalogs shared by every database are watched whole: see below.)
const unsharedWatchedCatalogs = [
  'pg_largeobject',
  'pg_largeobject_metadata',
  'pg_language',
  'pg_foreign_data_wrapper',
  'pg_foreign_server',
  'pg_user_mapping',
  'pg_publication',
  'pg_publication_rel',
  'pg_publication_namespace',
  'pg_event_trigger',
  'pg_am',
];

// What a write to each shared catalog changes, in words.
const sharedCatalogWords: Record<string, string> = {
  pg_authid: 'roles: a password or an attribute',
  pg_auth_members: 'role memberships',
  pg_database: "databases: privileges, connection limit or name",
  pg_db_role_setting: 'settings of roles and databases: ALTER ROLE/DATABASE … SET',
  pg_shdescription: 'comments on roles or databases',
  pg_shseclabel: 'security labels on roles or databases',
  pg_tablespace: 'tablespaces',
  pg_parameter_acl: "privileges on the server's settings",
  pg_subscription: 'subscriptions',
  pg_replication_origin: 'replication origins',
};

// This transaction's writes so far, per table (the server's own count of rows inserted,
// updated and deleted, kept for the backend until the transaction ends; a TRUNCATE counts
// none, and shows in the objects below instead, as a new version of its table's row): to the catalogs shared by every
// database (the owner may change its own password and settings, the database's privileges and
// settings; a backup's code with it) but pg_shdepend, which every object's owner and grants
// write; to the catalogs above; and to every table of every schema but public, the catalog,
// toast and temporary ones.
const writesQuery = `
  SELECT s.relid::text AS relid, c.relname AS name, pg_catalog.format('%I.%I', s.schemaname, s.relname) AS relation, c.relisshared AS shared,
         (s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::text AS writes
    FROM pg_catalog.pg_stat_xact_all_tables s JOIN pg_catalog.pg_class c ON c.oid = s.relid
   WHERE (c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND (c.relisshared AND c.relname <> 'pg_shdepend' OR c.relname = ANY ($1::text[])))
      OR (s.schemaname NOT IN ('public', 'pg_catalog', 'pg_toast') AND s.schemaname !~ '^pg_(toast_)?temp_')`;

// Every schema but public (and sessions' temporary ones), and every object in a schema other
// than public (the catalog's and information_schema too: a trusted extension's script puts the
// owner's objects wherever it is told), with
// the version of its catalog row (xmin: an UPDATE writes a new one; autovacuum's statistics
// are written in place and leave it; a relation's, what it is, below): those of the roles the
// role restoring acts for, which
// is what its code can make or change (another role's maintenance meanwhile, a TRUNCATE or a
// partition's, is not the backup's doing). The foreign keys' own triggers on a table outside
// that a table of public references are left out: the backup's own constraint made them.
const objectsQuery = `
  WITH outside AS (
    SELECT n.oid FROM pg_catalog.pg_namespace n
     WHERE n.nspname <> 'public' AND n.nspname !~ '^pg_(toast_)?temp_'
  ), relations AS (
    -- (Toast tables, and their indexes, go with their tables: those of public's with public.)
    SELECT c.oid FROM pg_catalog.pg_class c
     WHERE c.relnamespace IN (SELECT oid FROM outside) AND c.relnamespace <> 'pg_toast'::pg_catalog.regnamespace AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
  ), rows AS (
    SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass AS classid, n.oid AS objid, 0 AS objsubid, n.xmin::text AS version
      FROM pg_catalog.pg_namespace n
     WHERE n.nspname <> 'public' AND n.nspname !~ '^pg_(toast_)?temp_' AND pg_catalog.pg_has_role(n.nspowner, 'USAGE')
    -- A relation's row is also written anew for what changes nothing it holds or grants: that
    -- it has triggers or children now (a foreign key of public's that references it, say).
    -- What it is stands for its version instead: a TRUNCATE gives it a new relfilenode.
    UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0,
                     pg_catalog.md5(pg_catalog.concat_ws('|', c.relname, c.relnamespace, c.relowner, c.relacl::text, c.relkind, c.relfilenode,
                                                         c.reloptions::text, c.relnatts, c.relchecks, c.relrowsecurity, c.relforcerowsecurity,
                                                         c.relispartition, c.relpersistence, c.relreplident, c.reltablespace, c.relam, c.reloftype))
                FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT oid FROM relations)
    UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, attrelid, attnum, xmin::text FROM pg_catalog.pg_attribute
               WHERE attrelid IN (SELECT oid FROM relations) AND attnum > 0
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_attrdef WHERE adrelid IN (SELECT oid FROM relations)
    UNION ALL SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, t.oid, 0, t.xmin::text FROM pg_catalog.pg_trigger t
               WHERE t.tgrelid IN (SELECT oid FROM relations)
                 AND NOT (t.tgisinternal AND t.tgconstrrelid IN (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::pg_catalog.regnamespace))
    UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_rewrite WHERE ev_class IN (SELECT oid FROM relations)
    UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_policy WHERE polrelid IN (SELECT oid FROM relations)
    UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_constraint WHERE conrelid IN (SELECT oid FROM relations)
    UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_proc
               WHERE pronamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(proowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_type
               WHERE typnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(typowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_operator
               WHERE oprnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(oprowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_opclass
               WHERE opcnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(opcowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_opfamily
               WHERE opfnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(opfowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_collation
               WHERE collnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(collowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_conversion
               WHERE connamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(conowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_statistic_ext
               WHERE stxnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(stxowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_ts_config
               WHERE cfgnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(cfgowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_ts_dict
               WHERE dictnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(dictowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_extension
               WHERE extnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(extowner, 'USAGE')
    UNION ALL SELECT 'pg_catalog.pg_default_acl'::pg_catalog.regclass, oid, 0, xmin::text FROM pg_catalog.pg_default_acl
               WHERE defaclnamespace IN (SELECT oid FROM outside) AND pg_catalog.pg_has_role(defaclrole, 'USAGE')
  )
  SELECT pg_catalog.concat_ws('/', classid::oid, objid, objsubid) AS key, version,
         pg_catalog.pg_describe_object(classid, objid, objsubid) AS description
    FROM rows
  -- A table of public made a partition (or child) of one outside: the services' rows for that
  -- one would land in public, and go with its next emptying.
  UNION ALL
  SELECT pg_catalog.concat_ws('/', 'pg_inherits', i.inhrelid, i.inhparent), i.xmin::text,
         pg_catalog.format('%s as a partition or child of %s', i.inhrelid::pg_catalog.regclass, i.inhparent::pg_catalog.regclass)
    FROM pg_catalog.pg_inherits i WHERE i.inhparent IN (SELECT oid FROM relations)`;

interface Snapshot {
  writes: Map<string, { relation: string; name: string; shared: boolean; writes: bigint }>;
  objects: Map<string, { version: string; description: string }>;
}

async function snapshot(client: pg.ClientBase): Promise<Snapshot> {
  const { rows: writes } = await client.query<{ relid: string; name: string; relation: string; shared: boolean; writes: string }>(writesQuery, [
    unsharedWatchedCatalogs,
  ]);
  const { rows: objects } = await client.query<{ key: string; version: string; description: string }>(objectsQuery);
  return {
    writes: new Map(writes.map((row) => [row.relid, { relation: row.relation, name: row.name, shared: row.shared, writes: BigInt(row.writes) }])),
    objects: new Map(objects.map((row) => [row.key, { version: row.version, description: row.description }])),
  };
}

/** What {@link watchBeyondPublic} returns: asks what changed since. */
export interface BeyondPublicWatch {
  /** What this transaction changed beyond the public schema since the watch began, in words, schemas first; `[]` if nothing. */
  changes(): Promise<string[]>;
}

/**
 * Watches what a restore's transaction changes beyond the `public` schema, which a backup
 * replaces and nothing else: a backup's own code runs while it is restored (a CHECK as its
 * rows load) as the owner, who may also change its own password and settings, the database's
 * privileges and settings (`ALTER DATABASE … SET search_path`), make schemas (one named
 * after the application role comes first in its search path) and write its tables in other
 * schemas. None of that is emptied by the next restore. Begun in the transaction before the
 * backup's first statement, asked before COMMIT: writes to the catalogs shared by all
 * databases (but `pg_shdepend`), to large objects and to tables outside `public` are the
 * server's own count for the transaction; schemas and the objects in them are compared
 * row by row (another session's change to them meanwhile counts too). Refuses to begin
 * where `track_counts` is off, which would leave the counts at zero.
 *
 * @example
 * const watch = await watchBeyondPublic(client)
 * // … the backup's statements …
 * await watch.changes() // ['made schema kennwilliamson_app', 'wrote 1 row of pg_catalog.pg_db_role_setting (settings of roles and databases: ALTER ROLE/DATABASE … SET)']
 */
export async function watchBeyondPublic(client: pg.ClientBase): Promise<BeyondPublicWatch> {
  const { rows } = await client.query<{ counting: boolean }>("SELECT pg_catalog.current_setting('track_counts')::boolean AS counting");
  if (!rows[0]!.counting) {
    throw new RestoreError(
      "track_counts is off on this server, and a restore counts with it what the backup's code writes beyond the public schema: " +
        'turn it on again (the default; autovacuum needs it too), then restore again',
    );
  }
  const before = await snapshot(client);
  return {
    async changes() {
      const after = await snapshot(client);
      const changed: string[] = [];
      for (const [key, object] of after.objects) {
        const earlier = before.objects.get(key);
        if (earlier === undefined) changed.push(`made ${object.description}`);
        else if (earlier.version !== object.version) changed.push(`changed ${object.description}`);
      }
      for (const [key, object] of before.objects) if (!after.objects.has(key)) changed.push(`dropped ${object.description}`);
      const schemasFirst = (line: string) => (/^\w+ schema /.test(line) ? 0 : 1);
      changed.sort((a, b) => schemasFirst(a) - schemasFirst(b) || a.localeCompare(b));
      for (const [relid, table] of after.writes) {
        const written = table.writes - (before.writes.get(relid)?.writes ?? 0n);
        if (written <= 0n) continue;
        const words = table.shared ? sharedCatalogWords[table.name] : undefined;
        changed.push(`wrote ${written} row${written === 1n ? '' : 's'} of ${table.relation}${words ? ` (${words})` : ''}`);
      }
      return changed;
    },
  };
}
