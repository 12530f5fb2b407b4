import type pg from 'pg';
import { answeredWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { openClient } from '../db/with-client.js';
import { ConnectionError } from '../errors.js';
import type { BlockingSession } from '../blocking-session.js';
import type { LookConnection } from '../db/session-looks.js';
import { statementShape } from './statement-shape.js';


// Every function named with its schema: the watcher may be an admin's session (set-up's) in
// a database whose public schema a restored backup filled, where a public.unnest(integer[])
// would outrank pg_catalog's. Who waits behind whom, from the lock manager itself (pg_blocking_pids), with what
// pg_stat_activity says of each blocker. Each statement runs in a transaction of its own, so
// the activity snapshot is fresh every time. The query's text is reduced to its shape here,
// before it goes anywhere: the blocker of a hot row is often an admin's UPDATE of a password
// hash or an email.
// A prepared transaction (PREPARE TRANSACTION) is blocker 0, no session: named by its gid
// and role instead, each of the database's, where one blocks (the lock manager asked once). It
// never ends by itself, and was reported as "no blocking session seen (it ended …)", to be waited for again.
/** How a prepared transaction `p` (a row of pg_prepared_xacts) is named as a blocker's state, in SQL. */
export const preparedTransactionState = "'prepared transaction ' || pg_catalog.quote_literal(p.gid) || ' of role ' || p.owner";

const blockersSql = `
  WITH blocking AS (SELECT pg_catalog.pg_blocking_pids($1) AS pids)
  SELECT b.pid, coalesce(b.application_name, '') AS application_name,
         coalesce(b.state, 'not visible to this role') AS state, b.xact_start,
         coalesce(b.query, '') AS query
    FROM blocking CROSS JOIN LATERAL pg_catalog.unnest(blocking.pids) AS blocker(pid)
    JOIN pg_catalog.pg_stat_activity b ON b.pid = blocker.pid
  UNION ALL
  SELECT 0, '', ${preparedTransactionState}, p.prepared, ''
    FROM blocking CROSS JOIN pg_catalog.pg_prepared_xacts p
   WHERE p.database = pg_catalog.current_database() AND 0 = ANY (blocking.pids)
   ORDER BY xact_start NULLS LAST, pid`;

/**
 * Watches, on a connection of its own opened on first use, which sessions block a migration's
 * statement. Its connection also serves the looks at a long statement's session
 * ({@link LookConnection}), so that a run never needs a fourth connection.
 */
export interface BlockerMonitor extends LookConnection {
  /**
   * Starts sampling who blocks backend `pid` every `intervalMs`, until the returned `stop()`,
   * which resolves to the last sessions seen; `stop(false)` when nobody will read them spares
   * shaping their queries. `silent` hears, once and before `stop()`, when a sample went
   * unanswered within `roundTripDeadlineMs` unless the last answered one found the statement
   * working (nobody blocking it): the path to the server is silent for the monitor, and so most
   * likely for the statement waiting for its locks, whose answer may then never come (a peer
   * that stalls while its kernel acknowledges is never found out by TCP keepalive).
   */
  watch(pid: number, intervalMs: number, silent?: (error: ConnectionError) => void): { stop(report?: boolean): Promise<BlockingSession[]> };
  /**
   * Starts opening the watching connection now, once there is contention, so that the first
   * sample of the next (short) attempt does not wait for a login. A failure shows up, and is
   * ignored, at that sample.
   */
  connect(): void;
  close(): Promise<void>;
}

/** A blocker as `pg_stat_activity` shows it, its statement's text still raw. */
export interface BlockerRow {
  pid: number;
  application_name: string;
  state: string;
  xact_start: Date | null;
  query: string;
}

/**
 * Blockers as they are told, each statement reduced to its shape (never its data).
 *
 * @example await blockingSessionsOf(rows) // [{ pid: 4242, applicationName: 'psql', state: 'idle in transaction', query: 'UPDATE users SET name = $1' }]
 */
export function blockingSessionsOf(rows: readonly BlockerRow[]): Promise<BlockingSession[]> {
  return Promise.all(
    rows.map(async (row) => ({
      pid: row.pid,
      applicationName: row.application_name,
      state: row.state,
      ...(row.xact_start ? { xactStart: row.xact_start } : {}),
      query: await statementShape(row.query),
    })),
  );
}

/**
 * A {@link BlockerMonitor} on `databaseUrl`, whose connection shows in `pg_stat_activity` as
 * `applicationName` (the watched command's own, so that an operator who looks sees which
 * command is waiting). A failure to read the blockers (the monitor's connection refused, a
 * role that may not see other sessions) leaves them unnamed; it never fails the command.
 *
 * @example
 * const monitor = blockerMonitor(url, 'kennwilliamson-migrate-monitor')
 * const watching = monitor.watch(pid, 50)
 * // … the statement fails with 55P03 …
 * const blockers = await watching.stop() // [{ pid: 4242, applicationName: 'psql', state: 'idle in transaction', … }]
 */
export function blockerMonitor(databaseUrl: string, applicationName: string): BlockerMonitor {
  let client: Promise<pg.Client> | undefined;
  const connect = () => {
    if (client !== undefined) return client;
    // Names resolve in pg_catalog only: the watcher may be an admin's session (set-up's) in a
    // database whose settings a restored backup may have changed (ALTER DATABASE … SET search_path).
    // Its SET under a round trip's deadline too: left unanswered, it held the monitor's every
    // later look, the attempt's stop() and the run's ROLLBACK, with the migration lock, for ever.
    const opening = openClient(databaseUrl, applicationName).then(async (opened) => {
      await answeredWithin(opened, roundTripDeadlineMs, "the monitor's search_path", () => opened.query('SET search_path = pg_catalog')).catch(async (error: unknown) => {
        await opened.end().catch(() => undefined);
        throw error;
      });
      // Ended by the server while it idled (pg_terminate_backend, a restart): opened again at
      // the next use. Kept, it failed every later look at once, and the second in a row took a
      // healthy long statement for lost.
      opened.once('end', () => {
        if (client === opening) client = undefined;
      });
      return opened;
    });
    client = opening;
    opening.catch(() => undefined);
    return opening;
  };
  // A sample gets a round trip's deadline: one that goes unanswered closes the monitor's
  // connection, and the next sample opens another.
  // A connection that failed to open (whatever the failure) is tried again by the next sample,
  // as one closed at a deadline.
  const use = async <T>(work: (opened: pg.Client) => Promise<T>): Promise<T> => {
    let opened: pg.Client;
    try {
      opened = await connect();
    } catch (error) {
      client = undefined;
      throw error;
    }
    try {
      return await work(opened);
    } catch (error) {
      if (error instanceof ConnectionError) client = undefined;
      throw error;
    }
  };
  const blockersOf = (pid: number): Promise<BlockerRow[]> =>
    use(async (opened) => (await answeredWithin(opened, roundTripDeadlineMs, 'a look at who blocks the statement', () => opened.query<BlockerRow>(blockersSql, [pid]))).rows);
  // Parsing a query's text into its shape is the costly part: only the last sample is told, so
  // only it is shaped (blockingSessionsOf; the raw text stays in memory, never in a message).
  return {
    use,
    connect: () => void connect(),
    watch(pid, intervalMs, silent) {
      let seen: BlockerRow[] = [];
      let sampling: Promise<void> | undefined;
      let told = false;
      let stopped = false;
      // Whether the statement holds its locks and works, as the last answered look of this
      // watch found it (none blocking it): only a wait for locks, or a watch with no look
      // answered yet (an attempt begins waiting), is taken for silence when a look goes
      // unanswered; never long work that holds its locks (a table's rewrite, an index's
      // build), nor a watch that was stopped meanwhile.
      let working = false;
      const tell = (error: ConnectionError) => {
        if (told || stopped || working || silent === undefined) return;
        told = true;
        silent(error);
      };
      const sample = () => {
        sampling ??= blockersOf(pid)
          .then((blockers) => {
            working = blockers.length === 0;
            if (!working) seen = blockers;
          })
          .catch((error: unknown) => {
            if (error instanceof ConnectionError && error.reason === 'deadline') tell(error);
          })
          .finally(() => (sampling = undefined));
      };
      const timer = setInterval(sample, intervalMs);
      timer.unref();
      return {
        stop: async (report = true) => {
          stopped = true;
          clearInterval(timer);
          await sampling;
          return report ? blockingSessionsOf(seen) : [];
        },
      };
    },
    close: async () => {
      const opened = await client?.catch(() => undefined);
      await opened?.end().catch(() => undefined);
    },
  };
}
