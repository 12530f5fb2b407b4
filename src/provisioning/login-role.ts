import type * as pg from 'pg';
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
 * than CREATEROLE. Memberships are the caller's to check (`rolePowers`).
 *
 * @example
 * await ensureLoginRole(client, adminUrl, { user: 'kennwilliamson_app', password }, () => new AppRoleError(…)) // 'unchanged' the second time
 */
export async function ensureLoginRole(
  client: pg.Client,
  adminUrl: string,
  role: { user: string; password: string },
  refuseSuperuser: () => Error,
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
  if (!unchanged) changes.push(`PASSWORD ${verifier()}`);
  if (changes.length > 0) await client.query(`ALTER ROLE ${name} ${changes.join(' ')}`);
  return unchanged ? 'unchanged' : 'password set';
}
