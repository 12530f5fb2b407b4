import type * as pg from 'pg';
import { isAnnouncedProcess } from './direct-connection.js';
import { parseDuration } from './duration.js';

/** Where a connection leads: to PostgreSQL itself, or to a pooler in between. */
export type ConnectionRoute = 'direct' | 'pooler';

/** What a new connection said about itself. */
export interface ConnectionFacts {
  route: ConnectionRoute;
  /**
   * The server-side bounds its session runs with, in milliseconds, 0 for none: what the
   * server applies, whichever way they came (startup parameters, the role's or database's
   * defaults) and whatever a pooler did with the ones the pool sent (PgBouncer refuses them,
   * or, listed in `ignore_startup_parameters`, drops them without a word).
   */
  statementTimeoutMs: number | undefined;
  lockTimeoutMs: number | undefined;
  idleInTransactionTimeoutMs: number | undefined;
}

const inspectionSql =
  'SELECT pg_catalog.pg_backend_pid() AS pid, ' +
  "pg_catalog.current_setting('statement_timeout') AS statement_timeout, " +
  "pg_catalog.current_setting('lock_timeout') AS lock_timeout, " +
  "pg_catalog.current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction_session_timeout " +
  '/* kennwilliamson-db: connection check */';

interface InspectionRow {
  pid: number;
  statement_timeout: string;
  lock_timeout: string;
  idle_in_transaction_session_timeout: string;
}

/**
 * Asks a new connection, in one round trip, where it leads and which bounds its session has:
 * the server process that answers (`pg_backend_pid()`) is the one PostgreSQL announced at
 * login unless a pooler made up the one it announced (see reachesServerDirectly), and
 * `current_setting` gives the `statement_timeout`, `lock_timeout` and
 * `idle_in_transaction_session_timeout` in force. The pool asks every connection it opens,
 * once (never per call), and decides named statements and what its errors say with the answer.
 *
 * @example
 * const { route, statementTimeoutMs } = await inspectConnection(client) // { route: 'pooler', statementTimeoutMs: 5000, … }
 */
export async function inspectConnection(client: pg.ClientBase): Promise<ConnectionFacts> {
  const { rows } = await client.query<InspectionRow>(inspectionSql);
  const row = rows[0];
  return {
    route: isAnnouncedProcess(client, row?.pid) ? 'direct' : 'pooler',
    statementTimeoutMs: millisecondsOf(row?.statement_timeout),
    lockTimeoutMs: millisecondsOf(row?.lock_timeout),
    idleInTransactionTimeoutMs: millisecondsOf(row?.idle_in_transaction_session_timeout),
  };
}

// current_setting writes these in PostgreSQL's units ('5s', '300ms', '1min', '0').
function millisecondsOf(setting: string | undefined): number | undefined {
  if (setting === undefined) return undefined;
  try {
    return parseDuration('setting', setting, { minMs: 0 });
  } catch {
    return undefined;
  }
}
