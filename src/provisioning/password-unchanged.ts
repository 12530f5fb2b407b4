import { randomBytes } from 'node:crypto';
import type * as pg from 'pg';
import { withClient } from '../db/with-client.js';
import { databaseUrlAs } from './database-admin.js';
import { scramVerifierMatches } from './scram-verifier.js';

/**
 * Whether an existing role's password is already `password`, so that set-up need not write
 * it again (a new write draws a new salt, and a PgBouncer `auth_file` holding the old
 * verifier stops matching). A superuser reads the stored SCRAM verifier and checks the
 * password against its own salt and iterations; an admin that may not read `pg_authid`
 * (CREATEROLE, not a superuser) asks the server instead, by logging in as the role: a random
 * wrong password must be refused (28P01), else the server checks no password here (`trust`)
 * and the answer is false; then `password` must authenticate (and may lack CONNECT, 42501,
 * until its grants). Any other answer (too many connections, a server gone) is false too:
 * writing the password again is always safe.
 *
 * @example if (!(await passwordUnchanged(client, adminUrl, { user, password }))) await client.query(`ALTER ROLE … PASSWORD …`)
 */
export async function passwordUnchanged(client: pg.Client, adminUrl: string, role: { user: string; password: string }): Promise<boolean> {
  const { rows } = await client.query<{ readable: boolean }>("SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS readable");
  if (rows[0]!.readable) {
    const { rows: stored } = await client.query<{ rolpassword: string | null }>('SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1', [
      role.user,
    ]);
    return scramVerifierMatches(role.password, stored[0]?.rolpassword);
  }
  // A login is evidence only where a wrong password is refused as one (28P01): under trust any
  // password gets in, and LDAP or PAM (28000 for a wrong one) check a store other than the verifier.
  if ((await loginAs(adminUrl, role.user, randomBytes(24).toString('base64url'))) !== 'wrong password') return false;
  return (await loginAs(adminUrl, role.user, role.password)) === 'in';
}

// What one login as `user` says: 'in' when it authenticated (42501 is a missing CONNECT,
// which is checked after authentication), 'wrong password' only for 28P01 (the server
// checked a password and refused it), 'unknown' for anything else (28000: no rule, no LOGIN,
// or LDAP or PAM refused it; 53300: too many connections).
async function loginAs(adminUrl: string, user: string, password: string): Promise<'in' | 'wrong password' | 'unknown'> {
  try {
    await withClient(databaseUrlAs(adminUrl, user, password), async () => undefined, 'kennwilliamson-setup');
    return 'in';
  } catch (error) {
    const sqlState = (error as { sqlState?: string }).sqlState;
    return sqlState === '42501' ? 'in' : sqlState === '28P01' ? 'wrong password' : 'unknown';
  }
}
