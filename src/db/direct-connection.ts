import type * as pg from 'pg';
import { DatabaseError, DirectConnectionRequiredError } from '../errors.js';
import { answeredWithin, roundTripDeadlineMs } from './answer-deadline.js';
import { withClient } from './with-client.js';

/**
 * How long {@link requireDirectConnection} waits for the answer to its one trivial query. A
 * login is bounded by the connect timeout, but what answers it need not answer anything else: a
 * pooler whose servers are all busy or gone lets the login in and may then hold the query for
 * as long as it likes (PgBouncer's query_wait_timeout is 120 s, and 0 means for ever), and a
 * path that died after the login never answers; TCP keepalive never probes a connection with
 * a query unacknowledged. Every operation runs this check first, so none waits there unbounded.
 */
export const directCheckDeadlineMs = roundTripDeadlineMs;

/**
 * Whether this connection reaches PostgreSQL itself rather than a pooler: the server process
 * that answers (`pg_backend_pid()`) is the one PostgreSQL announced at login (BackendKeyData).
 * A pooler (PgBouncer, Odyssey, RDS Proxy …) makes up the process id and cancel key it hands
 * its clients, so the two differ behind one. One round trip. `DB_PREPARED_STATEMENTS=auto`
 * decides with it, and so do the operations that must never run through a pooler.
 *
 * @example
 * if (await reachesServerDirectly(client)) // named statements are safe here
 */
export async function reachesServerDirectly(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid');
  return isAnnouncedProcess(client, rows[0]?.pid);
}

/** Whether `pid` (what `pg_backend_pid()` answered on `client`) is the process the login announced: no pooler in between. */
export function isAnnouncedProcess(client: pg.ClientBase, pid: number | undefined): boolean {
  return pid !== undefined && pid === (client as pg.ClientBase & { processID: number | null }).processID;
}

/**
 * Refuses, with {@link DirectConnectionRequiredError}, to run `operation` (backup, restore,
 * setup, migrate) on a connection that goes through a pooler. A pooler in transaction mode
 * hands a server connection to the next client once a transaction ends, session settings
 * and all, and these operations set some (pg_dump empties `search_path` with a session-level
 * `set_config`; a migration may `SET` anything): the services would inherit them.
 * `variable` names where the URL came from, for the message (`MIGRATION_DATABASE_URL`, or
 * `DATABASE_URL` when the operation fell back to it). On a connection of the library's own
 * (LibraryClient), an answer that does not come within {@link directCheckDeadlineMs} closes it,
 * failing the check with a retryable `ConnectionError` (`deadline`).
 *
 * @example
 * await requireDirectConnection(client, { operation: 'backup', variable: 'MIGRATION_DATABASE_URL' })
 */
export async function requireDirectConnection(
  client: pg.ClientBase,
  options: { operation: string; variable?: string | undefined },
): Promise<void> {
  // Past the deadline the connection is closed, as the pool closes one whose call outlived its
  // deadline: nothing is left waiting on the socket.
  const direct = await answeredWithin(client, directCheckDeadlineMs, 'a one-line query', () => reachesServerDirectly(client), 'although the login was let in');
  if (!direct) throw new DirectConnectionRequiredError(options.operation, options.variable);
}

/**
 * {@link requireDirectConnection} on a connection of its own, opened and closed for the
 * check: for a command to refuse a pooler before it does anything else (`setup`, before it
 * creates the database or migrates). With `missingPasses`, a database that does not exist yet
 * passes: the step that creates it checks again once it does.
 *
 * @example
 * await requireDirectDatabase(url, { operation: 'setup', variable: 'MIGRATION_DATABASE_URL', applicationName: 'kennwilliamson-setup' })
 */
export async function requireDirectDatabase(
  databaseUrl: string,
  options: { operation: string; variable?: string | undefined; applicationName: string; missingPasses?: boolean },
): Promise<void> {
  await withClient(databaseUrl, (client) => requireDirectConnection(client, options), options.applicationName).catch((error: unknown) => {
    if (!(options.missingPasses === true && error instanceof DatabaseError && error.sqlState === '3D000')) throw error;
  });
}
