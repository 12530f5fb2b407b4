import type * as pg from 'pg';
import type { StatementBounds } from '../db/db-config.js';
import { silentClientSettings } from '../db/silent-client-bounds.js';

/**
 * Writes the server-side bounds as `role`'s defaults in `database`
 * (`ALTER ROLE … IN DATABASE … SET`), which every new session of that role in that database
 * starts with: this is what holds behind a transaction-mode pooler, which refuses them as
 * startup parameters and whose server connections log in as the role. A direct connection of
 * the pool sends its own bounds at login, which take precedence. Its sessions get the server's
 * side of the bounds for a silent host as well (TCP keepalive after 5 s of silence, given up
 * after about 10 s; see silent-client-bounds.ts): without them, a service host (or a pooler)
 * cut off by a partition keeps its idle sessions, and their connection slots, for the
 * server's two hours of keepalive, and a few partitions fill `max_connections`. The pool sends
 * no keepalive settings of its own, so these hold on direct connections too. Needs the right
 * to alter the role (its creator, a `CREATEROLE` owner, or a superuser).
 *
 * @example
 * await setRoleStatementBounds(client, 'kennwilliamson_app', 'kennwilliamson', loadStatementBounds())
 * // ALTER ROLE kennwilliamson_app IN DATABASE kennwilliamson SET statement_timeout = 5000 …
 * // … SET tcp_keepalives_idle = 5 …
 */
export async function setRoleStatementBounds(
  client: pg.ClientBase,
  role: string,
  database: string,
  bounds: StatementBounds,
): Promise<void> {
  const settings = [
    ['statement_timeout', bounds.statementTimeoutMs],
    ['lock_timeout', bounds.lockTimeoutMs],
    ['idle_in_transaction_session_timeout', bounds.idleInTransactionTimeoutMs],
  ] as const;
  for (const [name, ms] of settings) {
    // ALTER ROLE … SET takes no parameters; the values are checked whole numbers of milliseconds.
    if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`${name} must be a whole number of milliseconds, got ${ms}`);
    await client.query(
      `ALTER ROLE ${client.escapeIdentifier(role)} IN DATABASE ${client.escapeIdentifier(database)} SET ${name} = ${ms}`,
    );
  }
  for (const [name, value] of silentClientSettings) {
    await client.query(`ALTER ROLE ${client.escapeIdentifier(role)} IN DATABASE ${client.escapeIdentifier(database)} SET ${name} = ${value}`);
  }
}
