import { performance } from 'node:perf_hooks';
import type * as pg from 'pg';
import { answeredWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { withClient } from '../db/with-client.js';
import { MigrationLockLostError, MigrationLockTimeoutError, type MigrationLockHolder } from '../errors.js';
import { silentClientBoundsLocal } from '../db/silent-client-bounds.js';

/** One key for every migration run against a database, whichever process starts it. */
export const migrationLockKey = '7259133420415466853';

/** Shown in `pg_stat_activity` for the connection that holds (or waits for) the lock. */
export const migrationLockApplicationName = 'kennwilliamson-migrate-lock';

/** How long a migrator waits for another run to finish before giving up, by default. */
export const defaultLockTimeoutMs = 5 * 60_000;

/** The held migration lock, as {@link withMigrationLock} hands it to its work. */
export interface MigrationLock {
  /**
   * Throws {@link MigrationLockLostError} when the connection holding the lock is gone, so a
   * migration is rolled back rather than committed without the lock.
   */
  assertHeld(): Promise<void>;
}

export interface MigrationLockOptions {
  databaseUrl: string;
  /** Longest wait for another run's lock; then {@link MigrationLockTimeoutError} naming the holder. */
  timeoutMs: number;
  /** Told once when another run holds the lock, with who holds it. */
  onWait?: ((holder: MigrationLockHolder | undefined) => void) | undefined;
  /**
   * Runs on the lock's connection before the lock is asked for: a check that refuses the run
   * (a pooler in between) then fails it before it waits for another run, without a
   * connection of its own.
   */
  beforeLock?: ((holder: pg.ClientBase) => Promise<void>) | undefined;
}

// A transaction-scoped advisory lock in a transaction that stays open for the whole run,
// on a connection of its own. A session lock (pg_advisory_lock) would break behind a
// transaction-mode pooler: the pooler hands each statement to whichever server connection is
// free, so the lock and its unlock land on different sessions and the lock outlives the run.
// An open transaction pins one server connection in every pooler, and the lock ends with
// that transaction: at COMMIT, or when the process dies and the server (or pooler) drops it.
// The holder sits idle in its transaction while the work runs on another connection, so it
// also releases at once when the process is killed, whatever statement the work is in.
const lockSql = 'SELECT pg_try_advisory_xact_lock($1::bigint) AS locked';
const waitSql = 'SELECT pg_advisory_xact_lock($1::bigint)';

/**
 * Runs `work` while this process holds the migration lock of the database. Concurrent
 * migrators queue; a wait longer than `timeoutMs` fails with an error naming the holder's
 * pid, application and since when it has held the lock. Safe through PgBouncer, RDS Proxy
 * or Supavisor in transaction mode as well as on a direct connection.
 *
 * @example
 * await withMigrationLock({ databaseUrl, timeoutMs: 60_000 }, async (lock) => {
 *   // … BEGIN; migration; record; await lock.assertHeld(); COMMIT …
 * })
 */
export async function withMigrationLock<T>(
  options: MigrationLockOptions,
  work: (lock: MigrationLock) => Promise<T>,
): Promise<T> {
  // Ending the connection (as withClient always does) ends its transaction, and with it the
  // lock, in every case.
  return withClient(
    options.databaseUrl,
    async (holder) => {
      let lost: unknown;
      holder.on('error', (error) => (lost ??= error));
      await options.beforeLock?.(holder);
      await beginHolding(holder);
      const { rows } = await answeredWithin(holder, roundTripDeadlineMs, 'the try for the migration lock', () => holder.query<{ locked: boolean }>(lockSql, [migrationLockKey]));
      if (!rows[0]?.locked) await waitForLock(holder, options);

      const result = await work({
        assertHeld: async () => {
          try {
            if (lost !== undefined) throw lost;
            await answeredWithin(holder, roundTripDeadlineMs, 'a look at the migration lock', () => holder.query('SELECT 1'));
          } catch (error) {
            throw new MigrationLockLostError({ cause: error });
          }
        },
      });
      await answeredWithin(holder, roundTripDeadlineMs, 'COMMIT', () => holder.query('COMMIT'));
      return result;
    },
    migrationLockApplicationName,
  );
}

// The transaction that holds the lock, or waits for it.
async function beginHolding(holder: pg.Client): Promise<void> {
  // READ COMMITTED whatever the database's or role's default: under REPEATABLE READ or
  // SERIALIZABLE the transaction would keep its first snapshot for the whole run, and a
  // CREATE INDEX CONCURRENTLY of the run waits for every older snapshot, this one too,
  // until its budget ran out and left the index INVALID.
  await answeredWithin(holder, roundTripDeadlineMs, 'BEGIN', () => holder.query('BEGIN ISOLATION LEVEL READ COMMITTED'));
  // The server must not end this transaction for idling, nor for lasting (PostgreSQL 17's
  // transaction_timeout; set only where the server knows it), while the work runs
  // elsewhere, and must notice within a second when this process is gone while it waits
  // for the lock. And when this process's host goes silent (lost, or cut off without a
  // word), the server's own keepalive ends the session in about 10 s, and with it the lock:
  // with the system's default (two hours) every later run would wait for it and give up.
  await answeredWithin(holder, roundTripDeadlineMs, "the lock's settings", () =>
    holder.query(
      `SET LOCAL idle_in_transaction_session_timeout = 0; ${silentClientBoundsLocal} ` +
        "SELECT pg_catalog.set_config('transaction_timeout', '0', true) WHERE pg_catalog.current_setting('transaction_timeout', true) IS NOT NULL",
    ),
  );
}

// A waiter waits in slices, each a transaction of its own. A statement that waits holds a
// snapshot, and CREATE INDEX CONCURRENTLY waits for the transaction of every older snapshot
// to end: a waiter whose one wait lasted until the lock came free would wait for the run that
// builds the index, and that build for the waiter, until the waiter's timeout (5 min) broke
// the knot. Between slices a waiter holds neither snapshot nor transaction, so a build waits
// for one slice at most.
const waitSliceMs = 1_000;

async function waitForLock(holder: pg.Client, options: MigrationLockOptions): Promise<void> {
  options.onWait?.(await currentHolder(options.databaseUrl));
  const started = performance.now();
  for (;;) {
    // lock_timeout bounds each slice on the server itself; 0 would mean forever.
    const left = options.timeoutMs - (performance.now() - started);
    const sliceMs = Math.max(1, Math.round(Math.min(left, waitSliceMs)));
    await answeredWithin(holder, roundTripDeadlineMs, 'SET LOCAL lock_timeout', () => holder.query(`SET LOCAL lock_timeout = ${sliceMs}`));
    try {
      // The slice's lock_timeout ends the wait on the server; its answer gets a round trip more.
      await answeredWithin(holder, sliceMs + roundTripDeadlineMs, 'the wait for the migration lock', () => holder.query(waitSql, [migrationLockKey]));
      return;
    } catch (error) {
      // 55P03: our lock_timeout, the slice's or the last; 57014: a statement_timeout of the
      // role or the database shorter than a slice cancelled the wait first, and would cancel
      // every slice. Either way the wait for the other run is what ended.
      const code = (error as { code?: string }).code;
      if (code !== '55P03' && code !== '57014') throw error;
      if (code === '57014' || performance.now() - started >= options.timeoutMs) {
        throw new MigrationLockTimeoutError(Math.round(performance.now() - started), await currentHolder(options.databaseUrl), {
          cause: error,
          limit: code === '55P03' ? 'lock_timeout' : 'statement_timeout',
        });
      }
      await answeredWithin(holder, roundTripDeadlineMs, 'ROLLBACK', () => holder.query('ROLLBACK'));
      await beginHolding(holder);
    }
  }
}

/**
 * Who holds the migration lock, read from `pg_locks` and `pg_stat_activity` on a connection
 * of its own (the waiting one is inside an aborted transaction by then). A bigint advisory
 * key appears as its high and low 32 bits in `classid` and `objid`, with `objsubid` 1.
 */
export async function currentHolder(databaseUrl: string): Promise<MigrationLockHolder | undefined> {
  const readHolder = async (client: pg.Client) => {
    // A round trip's deadline: the wait for the lock (MIGRATION_LOCK_TIMEOUT) begins after it.
    const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look for who holds the migration lock', () => client.query<{ pid: number; application_name: string | null; since: Date | null }>(
      `SELECT a.pid, a.application_name, coalesce(a.xact_start, a.backend_start) AS since
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = (($1::bigint >> 32) & 4294967295)::bigint::oid
          AND l.objid = ($1::bigint & 4294967295)::bigint::oid
          AND l.objsubid = 1
        LIMIT 1`,
      [migrationLockKey],
    ));
    const row = rows[0];
    return row === undefined ? undefined : { pid: row.pid, applicationName: row.application_name ?? '', since: row.since ?? undefined };
  };
  // Naming the holder is a courtesy; failing to read it must not hide the real error.
  return withClient(databaseUrl, readHolder).catch(() => undefined);
}
