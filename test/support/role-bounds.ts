import type { StatementBounds } from '../../src/db/db-config.js';
import { withClient } from '../../src/db/with-client.js';
import { setRoleStatementBounds } from '../../src/provisioning/role-bounds.js';

/**
 * Gives the role of `directUrl` these defaults in that URL's database only, as `setup --admin`
 * gives the application role: what sessions through a transaction-mode pooler start with (the
 * server's side of the bounds for a silent host, TCP keepalive, comes with them).
 * Scoped to one test database, so other files never see them.
 *
 * @example await setTestRoleBounds(testDb.directUrl, { statementTimeoutMs: 400, lockTimeoutMs: 300, idleInTransactionTimeoutMs: 600 })
 */
export async function setTestRoleBounds(directUrl: string, bounds: StatementBounds): Promise<void> {
  await withClient(directUrl, async (client) => {
    const { rows } = await client.query<{ role: string; database: string }>('SELECT current_user AS role, current_database() AS database');
    await setRoleStatementBounds(client, rows[0]!.role, rows[0]!.database, bounds);
  });
}

/**
 * Takes the defaults {@link setTestRoleBounds} gave back: the role's sessions in that database
 * start with the server's own again.
 *
 * @example afterAll(() => clearTestRoleBounds(testDb.directUrl))
 */
export async function clearTestRoleBounds(directUrl: string): Promise<void> {
  await withClient(directUrl, async (client) => {
    const { rows } = await client.query<{ role: string; database: string }>('SELECT current_user AS role, current_database() AS database');
    await client.query(`ALTER ROLE ${client.escapeIdentifier(rows[0]!.role)} IN DATABASE ${client.escapeIdentifier(rows[0]!.database)} RESET ALL`);
  });
}
