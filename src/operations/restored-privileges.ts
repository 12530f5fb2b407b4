import type pg from 'pg';
import type { PrivilegeChange } from './backup-statement-allow-list.js';

/**
 * The roles a restore may grant privileges to, besides the role restoring (the database's
 * owner), and where that answer came from.
 */
export interface RestoreGrantees {
  /** The role restoring: the database's owner, which owns every restored object. */
  owner: string;
  /** The application role(s): `DB_APP_USER`, or those found in the database's grants. */
  applicationRoles: string[];
  /**
   * `DB_APP_USER` named the application role: the backup's grants to any other role are left
   * out and the application role gets its grants from the restore itself.
   */
  named: boolean;
}

/** What a restore does with one of the backup's `GRANT`, `REVOKE` or `ALTER DEFAULT PRIVILEGES`. */
export type PrivilegeDecision = { run: true } | { skip: string } | { refuse: string };

/**
 * The roles that the owner's default privileges in `public` give every new table to (with
 * `SELECT`), read before the restore empties the schema: the application role, as the
 * release step (`ensureAppRole`) and earlier restores left it. Such a role already receives
 * every table a migration creates, so giving it the restored ones gives it nothing new.
 *
 * @example
 * await applicationRolesGrantedNewTables(client) // ['kennwilliamson_app']
 */
export async function applicationRolesGrantedNewTables(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ role: string }>(
    `SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee) AS role
       FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) a
      WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND d.defaclobjtype = 'r'
        AND pg_catalog.pg_has_role(d.defaclrole, 'USAGE') AND a.grantee <> 0 AND a.grantee <> d.defaclrole
        AND a.privilege_type = 'SELECT' AND pg_catalog.pg_get_userbyid(a.grantee) !~ '^pg_'
      ORDER BY 1`,
  );
  return rows.map((row) => row.role);
}

const quoted = (name: string) => `'${name}'`;

/**
 * Decides, in the restore's transaction, whether one of the backup's privilege statements
 * runs. The allow-list has already limited PUBLIC to `USAGE` on `public` and refused
 * predefined roles and grant options; what it cannot know is which roles of this server may
 * receive the restored tables. Only the owner and the application role may:
 * - a statement naming PUBLIC, the owner or an application role runs;
 * - a `REVOKE` from any other role is left out (the objects are new: it has nothing to lose);
 * - a `GRANT` to another role is left out when `DB_APP_USER` names the application role
 *   (which then gets the application role's grants from the restore, as a backup from a
 *   server whose application role has another name needs); otherwise it is refused, unless
 *   the role does not exist on this server, in which case PostgreSQL refuses it, saying so;
 * - default privileges of another role (`FOR ROLE`, the owner where the backup was made)
 *   are left out or refused in the same way: only that role, or a superuser, could set them.
 *
 * @example
 * decidePrivilegeChange(part.privileges, grantees, await rolesThatExist([...]))
 */
export function decidePrivilegeChange(change: PrivilegeChange, grantees: RestoreGrantees, exists: (role: string) => boolean): PrivilegeDecision {
  const { owner, applicationRoles, named } = grantees;
  const appRoles = applicationRoles.length > 0 ? applicationRoles.map(quoted).join(', ') : 'none';
  const otherOwners = change.forRoles.filter((role) => role !== owner);
  if (otherOwners.length > 0) {
    const whose = otherOwners.map(quoted).join(', ');
    if (!change.grant || named) return { skip: `default privileges of ${whose}` };
    return {
      refuse:
        `the backup sets the default privileges of ${whose} (the owner where it was made), but this database's owner, which restores it, is ${quoted(owner)}: ` +
        'set DB_APP_USER to the application role of this database (as for the release step) and restore again; the restore then gives it ' +
        'the default privileges itself instead of the backup\'s',
    };
  }
  if (change.grantee === 'PUBLIC') return { run: true };
  const role = change.grantee.role;
  if (role === owner || applicationRoles.includes(role)) return { run: true };
  if (!change.grant) return { skip: `REVOKE from ${quoted(role)}` };
  if (named) return { skip: `grants to ${quoted(role)}` };
  // PostgreSQL refuses it, and the restore's advice says to run the provisioning step.
  if (!exists(role)) return { run: true };
  return {
    refuse:
      `the backup grants privileges to ${quoted(role)}, which is neither this database's owner ${quoted(owner)} nor its application role ` +
      `(DB_APP_USER, or the role the owner's default privileges in public give new tables to: ${appRoles}). A restore grants nothing to any ` +
      `other role of the server, which would then read the restored tables. If ${quoted(role)} is the application role, set DB_APP_USER=${role} ` +
      'and restore again; if this server\'s application role has another name, set DB_APP_USER to it: the restore then gives it the ' +
      "application role's grants instead of the backup's",
  };
}

// Every privilege on an object in public (the schema itself, relations and their columns,
// routines, types) that goes beyond what a restore leaves: the owner's own; PUBLIC's as
// PostgreSQL grants them (USAGE on the schema, EXECUTE on routines, USAGE on types); an
// application role's as the release step grants them (rows of tables and views, USAGE and
// SELECT on sequences, EXECUTE, USAGE); and no grant options. Only objects whose owner the
// role restoring acts for (an extension a superuser created stays as it is).
const excessPrivilegesQuery = `
  WITH acl_objects AS (
    SELECT 'SCHEMA'::text AS kind, 'public'::text AS object, NULL::text AS columns, n.nspowner AS owner, n.nspacl AS acl,
           ARRAY['USAGE'] AS to_public, ARRAY['USAGE'] AS to_application
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public'
    UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, pg_catalog.format('public.%I', c.relname), NULL, c.relowner, c.relacl,
           ARRAY[]::text[], CASE WHEN c.relkind = 'S' THEN ARRAY['USAGE', 'SELECT'] ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    UNION ALL
    SELECT 'TABLE', pg_catalog.format('public.%I', c.relname), pg_catalog.quote_ident(a.attname), c.relowner, a.attacl,
           ARRAY[]::text[], ARRAY['SELECT', 'INSERT', 'UPDATE']
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, NULL, p.proowner, p.proacl, ARRAY['EXECUTE'], ARRAY['EXECUTE']
      FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
    UNION ALL
    SELECT CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('public.%I', t.typname), NULL, t.typowner, t.typacl,
           ARRAY['USAGE'], ARRAY['USAGE']
      FROM pg_catalog.pg_type t WHERE t.typnamespace = 'public'::pg_catalog.regnamespace
  )
  SELECT o.kind, o.object, o.columns, a.privilege_type AS privilege,
         CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee,
         a.privilege_type = ANY (CASE WHEN a.grantee = 0 THEN o.to_public
                                      WHEN pg_catalog.pg_get_userbyid(a.grantee) = ANY ($1::text[]) THEN o.to_application
                                      ELSE ARRAY[]::text[] END) AS option_only
    FROM acl_objects o, LATERAL pg_catalog.aclexplode(o.acl) a
   WHERE o.acl IS NOT NULL AND pg_catalog.pg_has_role(o.owner, 'USAGE')
     AND a.grantee <> o.owner AND a.grantee <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
     AND (a.is_grantable OR NOT a.privilege_type = ANY (CASE WHEN a.grantee = 0 THEN o.to_public
                                                             WHEN pg_catalog.pg_get_userbyid(a.grantee) = ANY ($1::text[]) THEN o.to_application
                                                             ELSE ARRAY[]::text[] END))
   ORDER BY 1, 2, 3, 5, 4`;

// The same for the default privileges in public of the roles the role restoring acts for.
const excessDefaultPrivilegesQuery = `
  WITH defaults AS (
    SELECT d.defaclrole, d.defaclobjtype, a.grantee, a.privilege_type, a.is_grantable,
           CASE WHEN a.grantee = 0 THEN CASE d.defaclobjtype WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                WHEN pg_catalog.pg_get_userbyid(a.grantee) = ANY ($1::text[]) THEN
                  CASE d.defaclobjtype WHEN 'r' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] WHEN 'S' THEN ARRAY['USAGE', 'SELECT']
                                       WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                ELSE ARRAY[]::text[] END AS allowed
      FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) a
     WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND pg_catalog.pg_has_role(d.defaclrole, 'USAGE')
       AND a.grantee <> d.defaclrole
  )
  SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(defaclrole)) AS role,
         CASE defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objects,
         privilege_type AS privilege,
         CASE grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)) END AS grantee,
         privilege_type = ANY (allowed) AS option_only
    FROM defaults WHERE is_grantable OR NOT privilege_type = ANY (allowed)
   ORDER BY 1, 2, 4, 3`;

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
}

/**
 * The restore's second layer, run in its transaction before COMMIT: whatever the backup's
 * statements did, `public` ends up with no privilege beyond what the release step grants.
 * Revokes, from every object in `public` (the schema, tables, views, sequences, columns,
 * routines, types) and from the default privileges there, each privilege held by a role
 * that is neither the object's owner, the role restoring, nor `applicationRoles`, anything
 * PUBLIC holds beyond PostgreSQL's own defaults (so never `CREATE` on `public`, nor any
 * table), anything an application role holds beyond rows, sequences, `EXECUTE` and `USAGE`
 * (no `TRUNCATE`, `REFERENCES`, `TRIGGER`, `CREATE`), and every grant option. Returns what
 * it revoked, in words; throws when something is still left after three rounds.
 *
 * @example
 * const revoked = await restrictRestoredPrivileges(client, ['kennwilliamson_app']) // usually []
 */
export async function restrictRestoredPrivileges(client: pg.ClientBase, applicationRoles: string[]): Promise<string[]> {
  const revoked: string[] = [];
  for (let round = 0; round < 3; round += 1) {
    const { rows: excess } = await client.query<ExcessPrivilege>(excessPrivilegesQuery, [applicationRoles]);
    const { rows: excessDefaults } = await client.query<ExcessDefaultPrivilege>(excessDefaultPrivilegesQuery, [applicationRoles]);
    if (excess.length === 0 && excessDefaults.length === 0) return revoked;
    for (const row of excess) {
      const what = `${row.option_only ? 'GRANT OPTION FOR ' : ''}${row.privilege}${row.columns ? ` (${row.columns})` : ''}`;
      // CASCADE: whatever the grantee granted on with a grant option goes too.
      await client.query(`REVOKE ${what} ON ${row.kind} ${row.object} FROM ${row.grantee} CASCADE`);
      revoked.push(`${what} on ${row.kind.toLowerCase()} ${row.object} from ${row.grantee}`);
    }
    for (const row of excessDefaults) {
      const what = `${row.option_only ? 'GRANT OPTION FOR ' : ''}${row.privilege}`;
      await client.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${row.role} IN SCHEMA public REVOKE ${what} ON ${row.objects} FROM ${row.grantee} CASCADE`);
      revoked.push(`default ${what} on ${row.objects.toLowerCase()} of ${row.role} from ${row.grantee}`);
    }
  }
  throw new Error(`privileges beyond what a restore grants are still in the public schema after revoking them: ${revoked.slice(-5).join('; ')}`);
}
