import type pg from 'pg';
import { withClient } from '../db/with-client.js';
import { databaseUrlAs } from './database-admin.js';
import { scramVerifierMatches } from './scram-verifier.js';

/**
 * Whether an existing role's password is already `password`, so that set-up need not write
 * it again (a new write draws a new salt, and a PgBouncer `auth_file` holding the old
 * verifier stops matching). A superuser reads the stored SCRAM verifier and checks the
 * password against its own salt and iterations; an admin that may not read `pg_authid`
 * (CREATEROLE, not a superuser) asks the server instead, by logging in as the role: the
 * login authenticates (and may then lack CONNECT, 42501, until its grants) or is refused.
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
  try {
    await withClient(databaseUrlAs(adminUrl, role.user, role.password), async () => undefined, 'kennwilliamson-setup');
    return true;
  } catch (error) {
    return (error as { sqlState?: string }).sqlState === '42501';
  }
}
