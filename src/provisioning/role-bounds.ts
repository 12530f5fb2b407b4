import type * as pg from 'pg';
import type { StatementBounds } from '../db/db-config.js';
import { parseDuration } from '../db/duration.js';
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
 * Returns a line for each bound the role's sessions in the database started with that this
 * changes, for the caller to say once its transaction committed.
 *
 * @example
 * await setRoleStatementBounds(client, 'kennwilliamson_app', 'kennwilliamson', loadStatementBounds())
 * // ["the application role's statement_timeout in 'kennwilliamson' was 60s and is now 5000 ms (…)"]
 * // ALTER ROLE kennwilliamson_app IN DATABASE kennwilliamson SET statement_timeout = 5000 …
 * // … SET tcp_keepalives_idle = 5 …
 */
export async function setRoleStatementBounds(
  client: pg.ClientBase,
  role: string,
  database: string,
  bounds: StatementBounds,
): Promise<string[]> {
  const settings = [
    ['statement_timeout', bounds.statementTimeoutMs, 'DB_STATEMENT_TIMEOUT'],
    ['lock_timeout', bounds.lockTimeoutMs, 'DB_LOCK_TIMEOUT'],
    ['idle_in_transaction_session_timeout', bounds.idleInTransactionTimeoutMs, 'DB_IDLE_IN_TRANSACTION_TIMEOUT'],
  ] as const;
  // The step writes what its environment says, a default where it says nothing: one run with
  // only a new password (a rotation) would otherwise put a role's longer bounds back to the
  // defaults without a word, and statements that ran for longer start failing behind the pooler.
  // What the role's sessions in the database started with: its setting there, else the role's
  // own for every database, else the database's for every role (PostgreSQL's order).
  const { rows } = await client.query<{ name: string; value: string; scope: 'here' | 'role' | 'database' }>(
    `SELECT DISTINCT ON (name) name, value, scope
       FROM (SELECT split_part(setting, '=', 1) AS name, substr(setting, strpos(setting, '=') + 1) AS value,
                    CASE WHEN s.setrole <> 0 AND s.setdatabase <> 0 THEN 'here' WHEN s.setrole <> 0 THEN 'role' ELSE 'database' END AS scope
               FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS setting
              WHERE s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1))
                AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = $2))
                AND (s.setrole, s.setdatabase) <> (0, 0)) AS settings
      ORDER BY name, CASE scope WHEN 'here' THEN 1 WHEN 'role' THEN 2 ELSE 3 END`,
    [role, database],
  );
  const before = new Map(rows.map((row) => [row.name, row]));
  const scopes = { here: '', role: " (the role's own, for every database)", database: " (the database's, for every role)" };
  const changes: string[] = [];
  for (const [name, ms, variable] of settings) {
    const was = before.get(name);
    const wasMs = was === undefined ? undefined : settingMs(name, was.value);
    if (was !== undefined && wasMs !== ms) {
      const value = wasMs === 0 ? '0 (no limit)' : `${was.value}${/^\d+$/.test(was.value) ? ' ms' : ''}`;
      changes.push(`the application role's ${name} in '${database}' was ${value}${scopes[was.scope]} and is now ${ms} ms (${variable}, or its default where it is not set)`);
    }
    // ALTER ROLE … SET takes no parameters; the values are checked whole numbers of milliseconds.
    if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`${name} must be a whole number of milliseconds, got ${ms}`);
    await client.query(
      `ALTER ROLE ${client.escapeIdentifier(role)} IN DATABASE ${client.escapeIdentifier(database)} SET ${name} = ${ms}`,
    );
  }
  for (const [name, value] of silentClientSettings) {
    await client.query(`ALTER ROLE ${client.escapeIdentifier(role)} IN DATABASE ${client.escapeIdentifier(database)} SET ${name} = ${value}`);
  }
  return changes;
}

// A stored value such as '60s', '1min' or '5000' in milliseconds (0: no limit), as the bounds'
// variables are read, or undefined where it reads otherwise.
function settingMs(name: string, value: string): number | undefined {
  try {
    return parseDuration(name, value, { minMs: 0 });
  } catch {
    return undefined;
  }
}
