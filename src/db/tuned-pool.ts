import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { ClientBase, Pool, PoolClient } from 'pg';
import { ConnectionError, mapDatabaseError, PoolClosedError, PoolNotReadyError, PoolTimeoutError } from '../errors.js';
import { type BoundedClient, boundedClientClass, type ConnectionBounds } from './bounded-client.js';
import { connectionLifetimeMs } from './connection-lifetime.js';
import { callDeadlineFor, type DbConfig } from './db-config.js';
import { timerSlackMs } from './duration.js';
import { type ConnectionFacts, inspectConnection } from './inspect-connection.js';
import { settlesWithin } from './settles-within.js';
import { closeGraceMs, connectionOptions, LibraryClient } from './library-client.js';
import { sendCancelRequest } from './cancel-request.js';
import { createStatementNaming, type StatementNaming, type StatementNamingReport } from './statement-naming.js';
import { warnOnStderr } from './warn-on-stderr.js';
import { connectError } from './connect-error.js';

/** Told about connections lost while idle, and about failed attempts to refill the pool. */
export type PoolErrorListener = (message: string, error: unknown) => void;

/** The tuned pool behind a `db`, as a service sees it (`poolOf(db)`): its start-up wait, statistics and end. */
export interface TunedPool {
  /** The underlying `pg` pool, for statistics. Do not end it directly; call {@link TunedPool.end}. */
  readonly pool: Pool;
  /**
   * Resolves once the pool holds at least the configured minimum of open connections that have
   * answered a statement (a login alone proves nothing behind a pooler whose server is down);
   * rejects with the error of the next failed attempt (a `ConnectionError`; the pool keeps retrying in
   * the background), with `PoolNotReadyError` after `timeoutMs` (default: the acquire
   * timeout), or with `PoolClosedError` once the pool is ended. Keeps Node running until it
   * settles, so `await poolOf(db).ready()` at start-up is never cut short by an empty event loop.
   */
  ready(options?: { timeoutMs?: number | undefined }): Promise<void>;
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

/**
 * What Kysely's `PostgresDialect` and the library's own call paths need from the pool besides:
 * checkouts, and the call deadline's clock. Not a service's to use: a connection checked out
 * here and queried directly had no call deadline, and waited for ever on a stalled server.
 */
export interface PoolPlumbing extends TunedPool {
  /** Checks out a connection, or throws {@link PoolTimeoutError} after the acquire timeout. */
  connect(): Promise<PoolClient>;
  /**
   * Marks a call as sent on `client`: from now on the call deadline runs for it. Two field
   * writes, no timer: one sweep per pool finds the calls past their deadline.
   */
  callStarted(client: ClientBase): void;
  /** Marks the call on `client` as answered. */
  callSettled(client: ClientBase): void;
  /** What the pool knows of `client`'s bounds now (for errors that say which bound fired). */
  boundsOf(client: ClientBase): ConnectionBounds;
  /** Gives `client` other bounds until {@link TunedPool.resetBounds} (a `withTimeouts` transaction). */
  setBounds(client: ClientBase, bounds: ConnectionBounds): void;
  /** Back to the pool's own bounds, when a `withTimeouts` transaction ends. */
  resetBounds(client: ClientBase): void;
}

/** The tuned pool as createDb holds it: with the policy its statement path asks. */
export interface TunedPoolWithNaming extends PoolPlumbing {
  readonly naming: StatementNaming;
}

const maxRefillDelayMs = 5_000;
// A server process answers the connection check at once; only a pooler whose server
// connections are all busy keeps it waiting (PgBouncer: up to query_wait_timeout, 120 s). The
// connection is handed out unchecked after this, sends its statements unnamed and knows no
// bounds until the answer arrives (a caller's first query waits behind it on that connection
// anyway, as it would wait for a server connection itself).
const inspectTimeoutMs = 2_000;

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
export function createTunedPool(config: DbConfig, listener: PoolErrorListener = warnOnStderr): TunedPoolWithNaming {
  // The service's listener runs from pg-pool's 'error' event, a timer or a late answer: if it
  // throws, that must neither fail a checkout nor end the process as an uncaught exception or
  // an unhandled rejection. Its own failure is the service's to see, not the pool's.
  const onError: PoolErrorListener = (message, error) => {
    try {
      listener(message, error);
    } catch {
      // ignored: see above
    }
  };
  const naming = createStatementNaming({
    mode: config.preparedStatements,
    // The probe's two connections, outside the pool: the pool's connect timeout and keepalive.
    openClient: () => new LibraryClient(config),
    onError: (message, error) => {
      if (!ending) onError(message, error);
    },
  });

  // The server-side bounds go in each pooled connection's startup packet: no round trip, and
  // nothing a later client of the same server connection could inherit, since there is none
  // without a pooler. A pooler refuses unknown startup parameters (PgBouncer: SQLSTATE 08P01;
  // the pool then opens its connections without them) or, told to ignore them
  // (ignore_startup_parameters), drops them silently; behind one the bounds are the role's own
  // defaults, which `setup --admin` writes for the application role. Either way the pool learns
  // the bounds in force from each new connection (inspectConnection), and says when one is missing.
  let startupBounds = true;
  const pool = new pg.Pool({
    // Its own options name the server for OpenTelemetry's pool metrics; its connections take
    // their connect timeout and keepalive from the config (boundedClientClass), since pg-pool's
    // connectionTimeoutMillis is the acquire timeout.
    ...connectionOptions(config),
    connectionTimeoutMillis: config.acquireTimeoutMs,
    max: config.maxConnections,
    min: config.minConnections,
    idleTimeoutMillis: config.idleTimeoutMs,
    Client: boundedClientClass(config, () => startupBounds, (client) => opened(client)) as unknown as new () => ClientBase,
    // pg-pool awaits this hook before it hands a new connection out (the typings say void): one
    // round trip per new connection, never per call (bounded, see inspectTimeoutMs).
    onConnect: ((client: ClientBase) => inspect(client)) as (client: ClientBase) => void,
  });
  // pg-pool retires a connection after maxLifetimeSeconds (an idle one at once, a busy one when
  // it is released) and reads the setting once per new connection: a fresh random lifetime for
  // each, so connections opened together are not all retired together.
  Object.defineProperty(pool.options, 'maxLifetimeSeconds', {
    get: () => connectionLifetimeMs(config.maxLifetimeMs) / 1000,
    enumerable: true,
    configurable: true,
  });

  let ending = false;
  let ended: Promise<void> | undefined;
  let refilling: Promise<void> | undefined;
  let refillTimer: NodeJS.Timeout | undefined;
  // Reset only by a connection that answered its first statement (inspect below), not by a
  // refill that ends without an error: one opens nothing while callers' logins are in flight
  // (pg-pool counts those as connections), which says nothing about whether the server takes
  // logins. Nor by a login alone: a pooler whose server is down takes the login, then fails
  // the first statement and drops the connection, and the pool logged in again at once, some
  // 900 times a second through PgBouncer, for as long as the server stayed down. Such a
  // connection, lost before it ever answered, counts as a failed refill.
  let failedRefills = 0;
  const answered = new WeakSet<ClientBase>();
  // Whether a connection was lost unanswered since the last refill began: the refill's two
  // connections lost together are one failed step of the backoff, not two.
  let lostSinceRefill = false;
  const refillBackoffMs = () => Math.min(100 * 2 ** failedRefills, maxRefillDelayMs);
  let lastRefillError: unknown;
  let readyWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];

  // Full: enough connections to open no more (pg-pool's totalCount also counts those still
  // logging in). Open: enough have answered their first statement, which is what ready()
  // promises. It once resolved while a refill's connection was still logging in, and then on
  // logins alone: a pooler whose server is down takes every login and fails the first
  // statement, and ready() said a service could start that could not run a query.
  const isFull = () => pool.totalCount >= config.minConnections;
  const answering = () => {
    let count = 0;
    for (const client of clients) if (answered.has(client)) count += 1;
    return count;
  };
  const isOpen = () => answering() >= config.minConnections;

  // pg-pool's end() neither serves nor fails the checkouts under way: one queued behind a busy
  // pool waited out the acquire timeout, then failed as a PoolTimeoutError after destroy() had
  // resolved (its timer unref'd, a script could exit with the call never settled), and one
  // whose new connection was still being checked was handed out after the end began (Kysely's
  // destroyed driver failed it with a plain Error, and the direct runner sent its statement and
  // waited out the call deadline, end() with it). end() fails each under way at once, a
  // connection that reaches one later goes back, and none begins once the end has.
  const underWay = new Set<() => void>();
  const endable = (checkout: Promise<PoolClient>): Promise<PoolClient> =>
    new Promise<PoolClient>((resolve, reject) => {
      let abandoned = false;
      const abandon = () => {
        abandoned = true;
        reject(new PoolClosedError('the pool was ended while the call waited for a connection'));
      };
      underWay.add(abandon);
      checkout.then(
        (client) => {
          underWay.delete(abandon);
          if (abandoned) client.release();
          else resolve(client);
        },
        (error: unknown) => {
          underWay.delete(abandon);
          reject(error);
        },
      );
    });

  // pg-pool enforces the acquire timeout itself (connectionTimeoutMillis covers both waiting
  // in its queue and opening a new connection); a checkout that failed after waiting that
  // long is our typed timeout, whatever pg-pool's message says. No timer of our own: this
  // runs for every query.
  const connect = (): Promise<PoolClient> => {
    if (ending) return Promise.reject(new PoolClosedError('the pool has been ended'));
    const started = performance.now();
    const sentBounds = startupBounds;
    // pg reads a file the URL names (sslrootcert, sslcert) as it makes the client, inside
    // pg-pool's connect(), which then throws at once instead of rejecting.
    let checkout: Promise<PoolClient>;
    try {
      checkout = endable(pool.connect());
    } catch (error) {
      checkout = Promise.reject(error);
    }
    return checkout.catch((error: unknown) => {
      if (error instanceof PoolClosedError) throw error;
      // Every connection opened at once was refused alike: each is opened again without them.
      if (sentBounds && refusesStartupBounds(error)) {
        startupBounds = false;
        return connect();
      }
      // pg-pool counted a new connection while it logged in, and forgets a failed one without a
      // 'remove' event: a refill that saw the pool full meanwhile would never come, and ready()
      // would wait out its timeout on a server that takes logins again. (Nothing to do when the
      // pool is full or ended; after failed refills, their backoff holds for this one too.)
      scheduleRefill(failedRefills === 0 ? 0 : refillBackoffMs());
      const waitedMs = Math.round(performance.now() - started);
      // Sooner than the timeout: the server refused or dropped the new connection, or the pool
      // was ended (ConnectionError, PoolClosedError).
      if (waitedMs < config.acquireTimeoutMs - timerSlackMs) {
        if (ending) throw new PoolClosedError('the pool has been ended', { cause: error });
        throw connectError(error, config.databaseUrl, config.connectTimeoutMs);
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

  // What a new connection says about itself: where it leads (for named statements) and the
  // bounds its session has, whichever way they came. A missing one is said once per pool: then
  // a statement, a lock wait or an idle transaction has no bound on the server at all.
  let unboundedSaid = false;
  const inspect = async (client: ClientBase): Promise<void> => {
    // The check is a call like the callers': the deadline sweep watches it, so that one with no
    // answer (a silent partition during a refill) ends with its connection instead of leaving
    // it idle in the pool, unwatched, for the next caller to wait a whole deadline on.
    const bounded = client as BoundedClient;
    const sent = performance.now();
    bounded.callStartedAt = sent;
    const inspected = inspectConnection(client)
      .then((facts) => {
        answered.add(client);
        failedRefills = 0;
        naming.learnRoute(client, facts.route);
        learnBounds(bounded, facts);
        // An answer later than the wait below: the connection is in the pool already.
        if (isOpen()) settleReady();
      })
      // A connection that cannot answer fails its caller's query the same way; and an answer
      // that comes after the caller stopped waiting (see below) has nobody to fail. It is the
      // failed attempt that ready() rejects with, as a login that fails is.
      .catch((error: unknown) => {
        if (ending) return;
        lastRefillError = mapDatabaseError(error);
        settleReady(lastRefillError);
      })
      // A caller's call may have started meanwhile: its own stamp stays.
      .finally(() => {
        if (bounded.callStartedAt === sent) bounded.callStartedAt = 0;
      });
    await settlesWithin(inspected, inspectTimeoutMs);
  };
  const learnBounds = (client: BoundedClient, facts: ConnectionFacts): void => {
    // 0 is PostgreSQL's "none": no bound to name in an error.
    const known = (ms: number | undefined) => (ms === 0 ? undefined : ms);
    const statementTimeoutMs = known(facts.statementTimeoutMs);
    // The server's bound must fire first whenever the server can answer, so the deadline
    // follows the bound the session really has: behind a pooler that is the role's default,
    // which may be longer than the pool's own (setup --admin run with another
    // DB_STATEMENT_TIMEOUT), and a deadline left as configured cut such statements short as a
    // retryable ConnectionError while the server ran them on. As withTimeouts does for its own.
    const deadlineMs =
      statementTimeoutMs === undefined || statementTimeoutMs === config.statementTimeoutMs
        ? config.callDeadlineMs
        : callDeadlineFor(statementTimeoutMs, config.callDeadlineMs);
    client.openedWith = { ...client.openedWith, deadlineMs, statementTimeoutMs, lockTimeoutMs: known(facts.lockTimeoutMs) };
    Object.assign(client, client.openedWith);
    const unbounded = (
      [
        ['statement_timeout', facts.statementTimeoutMs],
        ['lock_timeout', facts.lockTimeoutMs],
        ['idle_in_transaction_session_timeout', facts.idleInTransactionTimeoutMs],
      ] as const
    )
      .filter(([, ms]) => ms === 0)
      .map(([name]) => name);
    if (unbounded.length === 0 || unboundedSaid || ending) return;
    unboundedSaid = true;
    onError(
      facts.route === 'pooler'
        ? 'connections pass through a pooler, which refuses or ignores these bounds as startup parameters (PgBouncer ' +
            `refuses them, or drops those named in ignore_startup_parameters), and the role has no default for ${unbounded.join(', ')}: ` +
            'those waits are unbounded on the server. Run setup --admin with DB_APP_USER (it sets the application ' +
            "role's defaults from DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT and DB_IDLE_IN_TRANSACTION_TIMEOUT); where it ran " +
            "already, the pooler's server connections predate it (a role's defaults apply from a session's login): have the " +
            'pooler open new ones (PgBouncer: RECONNECT on its admin console)'
        : `the server runs the pool's connections without ${unbounded.join(', ')}, although the pool sent them at login: ` +
            'those waits are unbounded on the server',
      new Error(`unbounded: ${unbounded.join(', ')}`),
    );
  };

  // Opens only the connections missing below the minimum, and never by waiting in the
  // application's queue: pg-pool opens a connection at once (no queue) when none is idle and
  // there is room, which min <= max guarantees for the missing ones. Idle connections are
  // checked out as well, so that pg-pool opens new ones rather than handing those out; with a
  // connection idle nobody waits, so those checkouts wait for nobody. The released connections
  // stay, because pg-pool never idles out its last `min`.
  const refill = async (): Promise<void> => {
    // A connection lost before it answered ends the refill too (after its round): the next
    // one waits out the backoff rather than logging in again at once.
    lostSinceRefill = false;
    while (!ending && !isFull() && !lostSinceRefill) {
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

  // A call in flight whose answer never comes (the network path died silently: no FIN, no RST)
  // is never ended by TCP keepalive, which Linux only sends on a connection with nothing
  // unacknowledged, nor by the server's statement_timeout, whose error cannot reach us. As pgx
  // does when a call's context ends, the connection is destroyed: its call fails with a
  // retryable ConnectionError, pg-pool discards it, and the pool opens a fresh one.
  const clients = new Set<BoundedClient>();
  // Every connection with its socket open, from the moment it is made (a login in progress
  // too): what end() waits for. Not pg-pool's own count: a held connection that end() closed
  // is never handed back, so pg-pool never removes it.
  const open = new Set<LibraryClient>();
  let lastClosed: (() => void) | undefined;
  const closed = (client: LibraryClient): void => {
    clients.delete(client as unknown as BoundedClient);
    if (open.delete(client) && open.size === 0) lastClosed?.();
  };
  // Heard from the socket the connection was made with: one that TLS wraps later closes with
  // the TLS socket.
  const opened = (client: LibraryClient): void => {
    open.add(client);
    void client.socketClosed().then(() => closed(client));
  };
  const sweepMs = Math.min(1_000, Math.max(25, Math.floor(config.callDeadlineMs / 10)));
  const abandon = (client: BoundedClient, now: number): void => {
    const waitedMs = Math.round(now - client.callStartedAt);
    client.callStartedAt = 0;
    const error = new ConnectionError('deadline', {
      detail: `no answer within the call deadline of ${client.deadlineMs} ms (given up after ${waitedMs} ms); its statement was sent a cancel request, and the connection closed`,
    });
    onError('a call got no answer within its deadline; its connection was closed', error);
    // The statement is cancelled first, where the server can hear it (a session whose bound is
    // longer than the pool learned, behind a pooler): a connection closed alone leaves it running
    // wherever the server does not check its client, and a write the caller retried would then
    // be applied twice. The close waits for the request to be acted on (at most closeGraceMs, on
    // a silent path): PgBouncer forgets a client's cancel key as soon as the client is gone.
    // Meanwhile the call's outcome is this error, whatever the server answers it (the cancel's
    // 57014 often comes first), and the connection takes no new query and goes back to no one:
    // pg refuses a query on, and pg-pool discards, a client it counts as not queryable (pg's
    // own mark for a broken one).
    client.abandonedBy = error;
    (client as BoundedClient & { _queryable: boolean })._queryable = false;
    cancelling.add(client);
    void sendCancelRequest(client, closeGraceMs).then(() => {
      cancelling.delete(client);
      (client as BoundedClient & LibraryClient).destroy(error);
    });
  };
  // The connections whose calls were given up and whose statements are being cancelled, before
  // they close: the sweep leaves them alone meanwhile.
  const cancelling = new Set<BoundedClient>();
  // When end() began (0 before): a connection the application still holds then, with no call
  // in flight (a transaction whose callback awaits something else), is handed back only when
  // that callback returns, which may be never; end() waits for it one call deadline, then
  // closes it, and the callback's next call fails with PoolClosedError.
  let endStartedAt = 0;
  const sweeper = setInterval(() => {
    const now = performance.now();
    const heldTooLong = endStartedAt !== 0 && now - endStartedAt > config.callDeadlineMs;
    for (const client of clients) {
      if (cancelling.has(client)) continue;
      if (client.callStartedAt !== 0 && now - client.callStartedAt > client.deadlineMs) abandon(client, now);
      else if (client.callStartedAt === 0 && heldTooLong) {
        (client as BoundedClient & LibraryClient).destroy(new PoolClosedError('the pool was ended while this connection was still held'));
      }
    }
  }, sweepMs);
  sweeper.unref();

  const scheduleRefill = (delayMs: number): void => {
    if (ending || refilling || refillTimer || isFull()) return;
    refillTimer = setTimeout(() => {
      refillTimer = undefined;
      refilling = refill()
        .catch((error: unknown) => {
          // Its checkouts, completing once end() began, fail with PoolClosedError: no failure.
          if (ending) return;
          failedRefills += 1;
          lastRefillError = error;
          settleReady(error);
          onError('could not refill the connection pool; retrying', error);
        })
        .finally(() => {
          refilling = undefined;
          if (!isFull()) scheduleRefill(refillBackoffMs());
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
  // Every connection, for the call-deadline sweep. (pg-pool listens for errors only on idle
  // connections; one the server drops while checked out cannot crash the process, since each is
  // a LibraryClient, which listens itself, and its failing query reports it.)
  pool.on('connect', (client) => {
    clients.add(client as unknown as BoundedClient);
    // A login that finishes, a refill's or a caller's, whose first statement was answered
    // already (pg-pool asks the inspection before this event); one answered later opens the
    // pool in inspect.
    if (isOpen()) settleReady();
  });
  pool.on('remove', (client) => {
    clients.delete(client as unknown as BoundedClient);
    if (answered.has(client)) {
      scheduleRefill(0);
      return;
    }
    if (!lostSinceRefill) failedRefills += 1;
    lostSinceRefill = true;
    scheduleRefill(refillBackoffMs());
  });
  scheduleRefill(0);

  return {
    pool,
    connect,
    ready: (options = {}) => {
      if (ending) return Promise.reject(new PoolClosedError('the pool has been ended'));
      if (isOpen()) return Promise.resolve();
      const timeoutMs = options.timeoutMs ?? config.acquireTimeoutMs;
      const started = performance.now();
      return new Promise<void>((resolve, reject) => {
        // Not unref()'d: this timer keeps Node running while the first connections open, when
        // nothing else of the service holds the event loop yet, and bounds the wait.
        const timer = setTimeout(() => {
          readyWaiters = readyWaiters.filter((waiter) => waiter !== entry);
          reject(
            // Connections that answered; pg-pool's totalCount also counts those still trying.
            new PoolNotReadyError(Math.round(performance.now() - started), answering(), config.minConnections, {
              cause: lastRefillError,
            }),
          );
        }, timeoutMs);
        const entry = {
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (error: unknown) => {
            clearTimeout(timer);
            reject(error);
          },
        };
        readyWaiters.push(entry);
        refillTimer?.ref();
        scheduleRefill(0);
      });
    },
    end: () =>
      (ended ??= (async () => {
        ending = true;
        clearTimeout(refillTimer);
        settleReady(new PoolClosedError('the pool was ended before it was ready'));
        for (const abandon of underWay) abandon();
        await Promise.all([refilling, naming.close()]);
        // pg-pool's end waits for every checked-out connection. One whose call went into a dead
        // network path is freed only by its call deadline, so the sweep runs until the end: without
        // it, end() would wait for TCP retransmission to give up, about 15 minutes. One the
        // application holds without a call is closed by the sweep a call deadline from now
        // (endStartedAt), and pg-pool's end, which waits for it to be handed back, may then never
        // finish: what end() waits for is every socket closed, not only handed back (a
        // connection's goodbye to a silent peer is destroyed after LibraryClient's grace, and an
        // open socket would keep the process alive).
        endStartedAt = performance.now();
        pool.end().catch(() => undefined);
        if (open.size > 0) await new Promise<void>((resolve) => (lastClosed = resolve));
        clearInterval(sweeper);
      })()),
    statementNaming: () => naming.report(connect),
    naming,
    callStarted: (client) => {
      (client as BoundedClient).callStartedAt = performance.now();
    },
    callSettled: (client) => {
      (client as BoundedClient).callStartedAt = 0;
    },
    boundsOf: (client) => {
      const bounded = client as BoundedClient;
      return { deadlineMs: bounded.deadlineMs, statementTimeoutMs: bounded.statementTimeoutMs, lockTimeoutMs: bounded.lockTimeoutMs };
    },
    setBounds: (client, bounds) => {
      Object.assign(client as BoundedClient, bounds);
    },
    resetBounds: (client) => {
      const bounded = client as BoundedClient;
      Object.assign(bounded, bounded.openedWith);
    },
  };
}

// PgBouncer answers a startup parameter it does not know with a FATAL protocol violation
// (08P01) before any authentication; PostgreSQL itself accepts these three.
function refusesStartupBounds(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '08P01';
}
