import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { mapDatabaseError, PoolClosedError, PoolTimeoutError } from '../errors.js';
import { databaseTarget } from './database-target.js';
import type { DbConfig } from './db-config.js';
import { createStatementNaming, type StatementNaming, type StatementNamingReport } from './statement-naming.js';

/** Told about connections lost while idle, and about failed attempts to refill the pool. */
export type PoolErrorListener = (message: string, error: unknown) => void;

/** What Kysely's `PostgresDialect` needs from a pool, plus the tuned behaviour. */
export interface TunedPool {
  /** The underlying `pg` pool, for statistics. Do not end it directly; call {@link TunedPool.end}. */
  readonly pool: pg.Pool;
  /** Checks out a connection, or throws {@link PoolTimeoutError} after the acquire timeout. */
  connect(): Promise<pg.PoolClient>;
  /**
   * Resolves once the pool holds at least the configured minimum of open connections; rejects
   * with the error of the next failed attempt (a `ConnectionError`; the pool keeps retrying in
   * the background), or with `PoolClosedError` once the pool is ended.
   */
  ready(): Promise<void>;
  /** Stops refilling and closes every connection; later calls return the same promise. */
  end(): Promise<void>;
  /**
   * Whether the statements built with prepareQuery go out named (server-side prepared), and
   * why: `DB_PREPARED_STATEMENTS`, where the connections lead, and in `auto` behind a pooler
   * what its probe found. Opens a connection first if none was, and waits for the probe
   * (bounded: a few seconds at most).
   *
   * @example
   * console.log(await poolOf(db).statementNaming())
   * // { mode: 'auto', named: true, route: 'pooler', reason: 'the pooler prepared the probe’s statement again on …' }
   */
  statementNaming(): Promise<StatementNamingReport>;
}

/** The tuned pool as createDb holds it: with the policy its statement path asks. */
export interface TunedPoolWithNaming extends TunedPool {
  readonly naming: StatementNaming;
}

const maxRefillDelayMs = 5_000;
// Timers and clocks disagree by a millisecond or so; a failure this close to the timeout is one.
const timerSlackMs = 5;

/**
 * A `pg` pool that opens `minConnections` at start-up and keeps them: when the server drops
 * connections it refills to the minimum in the background (with backoff while the server is
 * down), and a checkout that waits longer than `acquireTimeoutMs` fails with a typed error
 * instead of hanging.
 *
 * @example
 * const tuned = createTunedPool(loadDbConfig())
 * await tuned.ready() // two connections are open
 * const client = await tuned.connect()
 * client.release()
 */
export function createTunedPool(config: DbConfig, onError: PoolErrorListener = warnOnStderr): TunedPoolWithNaming {
  // What every connection of the pool is opened with, and so the probe's connections too.
  const clientConfig: pg.ClientConfig = {
    ...poolIdentity(config.databaseUrl),
    connectionString: config.databaseUrl,
    connectionTimeoutMillis: config.acquireTimeoutMs,
    application_name: config.applicationName,
  };
  const naming = createStatementNaming({
    mode: config.preparedStatements,
    openClient: () => new pg.Client(clientConfig),
    onError: (message, error) => {
      if (!ending) onError(message, error);
    },
  });

  const pool = new pg.Pool({
    ...clientConfig,
    max: config.maxConnections,
    min: config.minConnections,
    idleTimeoutMillis: config.idleTimeoutMs,
    // pg-pool awaits this hook before it hands a new connection out (the typings say void);
    // it asks where the connection leads, for named statements (bounded: see statement-naming.ts).
    ...(config.preparedStatements === 'off' ? {} : { onConnect: naming.classify as (client: pg.ClientBase) => void }),
  });

  let ending = false;
  let ended: Promise<void> | undefined;
  let refilling: Promise<void> | undefined;
  let refillTimer: NodeJS.Timeout | undefined;
  let failedRefills = 0;
  let readyWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];

  const isFull = () => pool.totalCount >= config.minConnections;

  // pg-pool enforces the acquire timeout itself (connectionTimeoutMillis covers both waiting
  // in its queue and opening a new connection); a checkout that failed after waiting that
  // long is our typed timeout, whatever pg-pool's message says. No timer of our own: this
  // runs for every query.
  const connect = (): Promise<pg.PoolClient> => {
    const started = performance.now();
    return pool.connect().catch((error: unknown) => {
      const waitedMs = Math.round(performance.now() - started);
      // Sooner than the timeout: the server refused or dropped the new connection, or the pool
      // was ended (ConnectionError, PoolClosedError).
      if (waitedMs < config.acquireTimeoutMs - timerSlackMs) {
        throw ending ? new PoolClosedError('the pool has been ended', { cause: error }) : mapDatabaseError(error);
      }
      throw new PoolTimeoutError(
        waitedMs,
        config.maxConnections,
        pool.totalCount - pool.idleCount,
        pool.waitingCount,
        { cause: error },
      );
    });
  };

  // Opens only the connections missing below the minimum, and never by waiting in the
  // application's queue: pg-pool opens a connection at once (no queue) when none is idle and
  // there is room, which min <= max guarantees for the missing ones. Idle connections are
  // checked out as well, so that pg-pool opens new ones rather than handing those out; with a
  // connection idle nobody waits, so those checkouts wait for nobody. The released connections
  // stay, because pg-pool never idles out its last `min`.
  const refill = async (): Promise<void> => {
    while (!ending && !isFull()) {
      const missing = config.minConnections - pool.totalCount;
      const idle = pool.waitingCount === 0 ? pool.idleCount : 0;
      if (idle === 0 && pool.idleCount > 0) {
        // Callers are being handed the idle ones (pg-pool does so on the next tick): look again then.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      const clients = await Promise.allSettled(Array.from({ length: missing + idle }, () => connect()));
      for (const result of clients) if (result.status === 'fulfilled') result.value.release();
      const failure = clients.find((result) => result.status === 'rejected');
      if (failure) throw failure.reason;
    }
  };

  const scheduleRefill = (delayMs: number): void => {
    if (ending || refilling || refillTimer || isFull()) {
      if (isFull()) settleReady();
      return;
    }
    refillTimer = setTimeout(() => {
      refillTimer = undefined;
      refilling = refill()
        .then(() => {
          failedRefills = 0;
          settleReady();
        })
        .catch((error: unknown) => {
          failedRefills += 1;
          settleReady(error);
          onError('could not refill the connection pool; retrying', error);
        })
        .finally(() => {
          refilling = undefined;
          if (!isFull()) scheduleRefill(Math.min(100 * 2 ** failedRefills, maxRefillDelayMs));
        });
    }, delayMs);
    // An idle pool must not keep the process alive, but a caller awaiting ready() must: in a
    // CommonJS service whose start-up awaits ready() with nothing else pending, an unref'd
    // timer let the process exit with code 0 before the first connection was even tried.
    if (readyWaiters.length === 0) refillTimer.unref();
  };

  const settleReady = (error?: unknown): void => {
    const waiters = readyWaiters;
    readyWaiters = [];
    for (const waiter of waiters) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
  };

  // An idle connection the server closed emits 'error' on the pool; without a listener Node
  // would crash the process. pg-pool has already discarded it; we only refill.
  pool.on('error', (error) => {
    if (!ending) onError('an idle database connection was lost', error);
  });
  // pg-pool listens for errors only on idle connections. A connection the server drops while
  // checked out (even between two queries of a transaction) would emit an unhandled 'error'
  // and crash the process; the failing query already reports it, and pg-pool discards the
  // broken connection when it is released.
  pool.on('connect', (client) => client.on('error', () => undefined));
  pool.on('remove', () => scheduleRefill(0));
  scheduleRefill(0);

  return {
    pool,
    connect,
    ready: () =>
      ending
        ? Promise.reject(new PoolClosedError('the pool has been ended'))
        : isFull() && !refilling
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            readyWaiters.push({ resolve, reject });
            refillTimer?.ref();
            scheduleRefill(0);
          }),
    end: () =>
      (ended ??= (async () => {
        ending = true;
        clearTimeout(refillTimer);
        settleReady(new PoolClosedError('the pool was ended before it was ready'));
        await Promise.all([refilling, naming.close()]);
        await pool.end();
      })()),
    statementNaming: () => naming.report(connect),
    naming,
  };
}

// OpenTelemetry's pg instrumentation names a pool in its metrics by the host, port and database
// of the pool's options (`unknown_host:unknown_port/unknown_database` from a connectionString
// alone). These are the ones pg reads from the URL, which still decides the connection: pg lets
// the connectionString's values override these. A URL pg reads but databaseTarget refuses
// (hostaddr, several hosts) keeps the unnamed pool rather than failing here.
function poolIdentity(databaseUrl: string): { host?: string; port?: number; database?: string } {
  try {
    const { host, port, database } = databaseTarget(databaseUrl);
    return { host, port, database };
  } catch {
    return {};
  }
}

function warnOnStderr(message: string, error: unknown): void {
  const reason = error instanceof Error ? error.message : String(error);
  process.stderr.write(`[@kennwilliamson/db] ${message}: ${reason}\n`);
}
