import type * as pg from 'pg';
import { ConfigError } from '../errors.js';
import { passwordUnchanged } from './password-unchanged.js';
import { roleAttributes } from './role-powers.js';
import { scramSha256Verifier } from './scram-verifier.js';

/** What {@link ensureLoginRole} did to the role. */
export type LoginRoleChange = 'created' | 'password set' | 'unchanged';

/**
 * Makes `role.user` a plain login role with `role.password`, as the admin's set-up step
 * leaves the owner and the application role: creates it, or takes away from the existing
 * role the attributes that reach beyond its database (CREATEROLE, CREATEDB, REPLICATION,
 * BYPASSRLS), gives it LOGIN, and sets the password only when it changed (see
 * `passwordUnchanged`): a superuser admin checks it against the stored SCRAM verifier (its
 * own salt and iterations), so an unchanged password keeps its verifier and a PgBouncer
 * `auth_file` holding it keeps matching; a CREATEROLE admin, which may not read verifiers,
 * checks by logging in as the role, which a role without LOGIN cannot, so such a role gets
 * its password written again, as does one the server lets in without checking a password
 * (`trust`). The password reaches the server only as a verifier. A
 * superuser is left as it is and refused with `refuseSuperuser()`, worded for what the role
 * is for. Only the attributes it has are named: changing REPLICATION or BYPASSRLS needs more
 * than CREATEROLE. Memberships are the caller's to check (`rolePowers`). A role's password is
 * the server's, not the database's: where a changed password would reach a role that serves
 * other databases of the server (owns one, has settings or privileges on one), `refuseShared`
 * is given their names, and its error thrown, unless it is undefined (sharing was meant). A
 * copy provisioned beside production with production's role names and its own passwords
 * logged production's services out.
 *
 * @example
 * await ensureLoginRole(client, adminUrl, { user: 'kennwilliamson_app', password }, () => new AppRoleError(…)) // 'unchanged' the second time
 */
export async function ensureLoginRole(
  client: pg.Client,
  adminUrl: string,
  role: { user: string; password: string },
  refuseSuperuser: () => Error,
  refuseShared: ((databases: string[]) => Error) | undefined,
): Promise<LoginRoleChange> {
  const name = client.escapeIdentifier(role.user);
  const verifier = () => client.escapeLiteral(scramSha256Verifier(role.password));
  const found = await roleAttributes(client, role.user);
  if (found === undefined) {
    await client.query(`CREATE ROLE ${name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${verifier()}`);
    return 'created';
  }
  if (found.powerful.includes('SUPERUSER')) throw refuseSuperuser();
  const changes = [...(found.login ? [] : ['LOGIN']), ...found.powerful.map((attribute) => `NO${attribute}`)];
  const unchanged = await passwordUnchanged(client, adminUrl, role);
  if (!unchanged && refuseShared !== undefined) {
    const others = await otherDatabasesServed(client, role.user);
    if (others.length > 0) throw refuseShared(others);
  }
  if (!unchanged) changes.push(`PASSWORD ${verifier()}`);
  if (changes.length > 0) await client.query(`ALTER ROLE ${name} ${changes.join(' ')}`);
  return unchanged ? 'unchanged' : 'password set';
}

/**
 * The refusal {@link ensureLoginRole} takes as `refuseShared`: `variable` names the password
 * that would change.
 *
 * @example sharedRoleRefusal('kennwilliamson_app', 'DB_APP_PASSWORD', 'DB_APP_USER')(['kennwilliamson'])
 */
export function sharedRoleRefusal(user: string, variable: string, userVariable: string): (databases: string[]) => Error {
  return (databases) =>
    new ConfigError(
      variable,
      `${variable} would change the password of '${user}', and a role's password is the server's: '${user}' also serves ` +
        `${databases.map((name) => `'${name}'`).join(', ')} on this server, whose sessions would then fail to log in. ` +
        `Give this database roles of its own (${userVariable}), or pass --shared-roles (sharedRoles: true) where the change is meant for all of them; the password was not changed`,
    );
}

// The other databases of the server the role serves, as far as the shared catalogs tell: it owns
// one, has settings in one (the application role's bounds), or holds privileges on one.
async function otherDatabasesServed(client: pg.Client, role: string): Promise<string[]> {
  const { rows } = await client.query<{ datname: string }>(
    `SELECT d.datname FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
      WHERE r.rolname = $1 AND d.datname <> pg_catalog.current_database()
        AND (d.datdba = r.oid
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = d.oid)
             OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(d.datacl) a WHERE a.grantee = r.oid))
      ORDER BY d.datname`,
    [role],
  );
  return rows.map((row) => row.datname);
}
