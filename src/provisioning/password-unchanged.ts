import { randomBytes } from 'node:crypto';
import type * as pg from 'pg';
import { answeredWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { withClient } from '../db/with-client.js';
import { databaseUrlAs } from './database-admin.js';
import { scramVerifierMatches } from './scram-verifier.js';

/**
 * Whether an existing role's password is already `password`, so that set-up need not write
 * it again (a new write draws a new salt, and a PgBouncer `auth_file` holding the old
 * verifier stops matching). A superuser reads the stored SCRAM verifier and checks the
 * password against its own salt and iterations; an admin that may not read `pg_authid`
 * (CREATEROLE, not a superuser) asks the server instead, by logging in as the role with
 * `password`. That login is evidence only where the server checked the stored password: from
 * PostgreSQL 16 on the session says so itself (`system_user`, NULL under `trust`); before, or
 * when the login may not CONNECT (42501) and so cannot ask, a random wrong password must be
 * refused as one (28P01). Any other answer (`trust`, LDAP, too many connections, a server
 * gone) is false: writing the password again is always safe.
 *
 * @example if (!(await passwordUnchanged(client, adminUrl, { user, password }))) await client.query(`ALTER ROLE … PASSWORD …`)
 */
export async function passwordUnchanged(client: pg.Client, adminUrl: string, role: { user: string; password: string }): Promise<boolean> {
  const { rows } = await client.query<{ readable: boolean; sixteen: boolean }>(
    "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS readable, " +
      "pg_catalog.current_setting('server_version_num')::int >= 160000 AS sixteen",
  );
  if (rows[0]!.readable) {
    const { rows: stored } = await client.query<{ rolpassword: string | null }>('SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1', [
      role.user,
    ]);
    return scramVerifierMatches(role.password, stored[0]?.rolpassword);
  }
  const login = await loginAs(adminUrl, role.user, role.password, rows[0]!.sixteen);
  if (login.answer !== 'in') return false;
  // 'scram-sha-256:app_user' (or md5, password): the server checked the stored password.
  if (login.method !== undefined) return login.method !== null && storedPasswordMethods.has(login.method);
  // No method to read: the login counts only where a wrong password is refused as one (under
  // trust any gets in, and LDAP or PAM, 28000 for a wrong one, check another store). That
  // wrong login is logged by the server as a failed one.
  return (await loginAs(adminUrl, role.user, randomBytes(24).toString('base64url'), false)).answer === 'wrong password';
}

// The authentication methods that check the role's stored password (its verifier).
const storedPasswordMethods = new Set(['scram-sha-256', 'md5', 'password']);

// What one login as `user` says: 'in' when it authenticated (42501 is a missing CONNECT,
// which is checked after authentication), 'wrong password' only for 28P01 (the server
// checked a password and refused it), 'unknown' for anything else (28000: no rule, no LOGIN,
// or LDAP or PAM refused it; 53300: too many connections). With `askMethod` (PostgreSQL 16
// and later), a session that got in says how it was authenticated: the method of its
// system_user, null when none was (trust); undefined when it could not ask.
async function loginAs(
  adminUrl: string,
  user: string,
  password: string,
  askMethod: boolean,
): Promise<{ answer: 'in' | 'wrong password' | 'unknown'; method?: string | null }> {
  try {
    const method = await withClient(
      databaseUrlAs(adminUrl, user, password),
      async (session) => {
        if (!askMethod) return undefined;
        const { rows } = await answeredWithin(session, roundTripDeadlineMs, 'the look at the login method', () =>
          session.query<{ method: string | null }>("SELECT split_part(system_user, ':', 1) AS method"),
        );
        return rows[0]!.method;
      },
      'kennwilliamson-setup',
    );
    return method === undefined ? { answer: 'in' } : { answer: 'in', method };
  } catch (error) {
    const sqlState = (error as { sqlState?: string }).sqlState;
    return { answer: sqlState === '42501' ? 'in' : sqlState === '28P01' ? 'wrong password' : 'unknown' };
  }
}
