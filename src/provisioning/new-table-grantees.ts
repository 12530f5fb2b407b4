import type * as pg from 'pg';
import { applicationPrivileges } from './application-privileges.js';

/** Who `owner`'s default privileges in `public` give new tables to, read before a restore empties the schema, or a reset drops the database. */
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
 * One read of `owner`'s default privileges on new tables in `public` (default: the database's
 * owner's), for both questions a restore asks of them (see {@link NewTableGrantees}), and for
 * which role a reset and the release step take for the application role.
 *
 * @example
 * await newTableGrantees(client, 'kennwilliamson')
 * // { applicationRoles: ['kennwilliamson_app'], readers: { reporting: ['SELECT'] }, applicationRole: 'kennwilliamson_app' }
 */
export async function newTableGrantees(client: pg.ClientBase, owner?: string): Promise<NewTableGrantees> {
  const { rows } = await client.query<{ role: string; privileges: string[] }>(
    `SELECT pg_catalog.pg_get_userbyid(a.grantee) AS role, pg_catalog.array_agg(DISTINCT a.privilege_type::text) AS privileges
       FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_roles o ON o.oid = d.defaclrole, LATERAL pg_catalog.aclexplode(d.defaclacl) a
      WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND d.defaclobjtype = 'r'
        AND o.oid = COALESCE((SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1),
                             (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database() AND $1 IS NULL))
        AND a.grantee <> 0 AND a.grantee <> d.defaclrole AND pg_catalog.pg_get_userbyid(a.grantee) !~ '^pg_'
      GROUP BY a.grantee`,
    [owner ?? null],
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
