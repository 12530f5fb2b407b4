import { performance } from 'node:perf_hooks';
import { type ControlledTransaction, Kysely, type LogConfig, PostgresDialect, type PostgresPoolClient, type QueryResult, type Transaction } from 'kysely';
import type pg from 'pg';
import {
  ConnectionError,
  LockNotAvailableError,
  mapDatabaseError,
  PoolClosedError,
  PoolTimeoutError,
  PreparedStatementError,
  QueryCanceledError,
  TransactionAbortedError,
  ValidationError,
} from '../errors.js';
import type { DB } from '../../generated/db.js';
import type { BoundedClient } from './bounded-client.js';
import { markedAsKyselyAbortedTransaction } from './kysely-aborted-transaction.js';
import { callDeadlineFor, type DbConfig, type DbConfigInput, loadDbConfig, resolveDbConfig } from './db-config.js';
import { timerSlackMs } from './duration.js';
import { attachRowGates, createRowGates, type RowGates } from './row-gate.js';
import { waitedForRowLock } from './row-lock-wait.js';
import { runNamedStatement, type StatementResult } from './named-statement.js';
import type { StatementNaming } from './statement-naming.js';
import { createTunedPool, type PoolErrorListener, type PoolPlumbing, type TunedPool, type TunedPoolWithNaming } from './tuned-pool.js';
import { outsideTransactionStatement } from './outside-transaction-statements.js';
import { savepointBounds, savepointCommand } from './savepoint-bounds.js';
import { timeoutsOverrideSql } from './with-timeouts.js';

export interface CreateDbOptions {
  /** Called when an idle connection is lost or a refill fails; defaults to a line on stderr. */
  onPoolError?: PoolErrorListener | undefined;
  /**
   * Kysely's query log. Log `event.query.sql` only: parameters can hold password hashes and
   * token hashes, which must not reach a log line.
   */
  log?: LogConfig | undefined;
}

/** Runs compiled SQL on a pooled connection, as Kysely would, minus Kysely's executor layers. */
export type DirectQueryRunner = <R>(sqlText: string, parameters: readonly unknown[]) => Promise<QueryResult<R>>;

/**
 * The direct runner of a `Kysely` made by {@link createDb}, for statements compiled once
 * (see prepareQuery): checkout, query, release, errors mapped, and nothing else on the hot
 * path. Undefined for any other instance: a transaction (its statements must use its own
 * connection), `db.withPlugin(…)`/`db.withSchema(…)` (new instances, whose plugins must see
 * every statement), and a `db` with Kysely's query log on (which would not see these).
 */
export function directQueryRunner(db: Kysely<DB>): DirectQueryRunner | undefined {
  return tunedStateOf(db)?.direct;
}

/** What a `Kysely` made by createDb carries beside Kysely's own state. */
interface TunedState {
  tuned: TunedPoolWithNaming;
  direct: DirectQueryRunner | undefined;
  gates: RowGates;
  /** What poolOf hands out: the service's part of the pool, no checkouts. */
  handle: TunedPool;
}

// Found by a registered symbol, not by a class of ours: a service that loads both
// builds of this package (ESM and CommonJS) has two copies of this module, and a `db` made by
// one copy's createDb still reaches its pool through the other copy's functions.
const tunedState = Symbol.for('@kennwilliamson/db/tuned-state');

function tunedStateOf(db: Kysely<DB>): TunedState | undefined {
  return (db as unknown as { [tunedState]?: TunedState } | undefined)?.[tunedState];
}

/**
 * Sends `sqlText` as a named statement when it was registered by prepareQuery and the pool's
 * naming policy allows it on this connection (parsed and planned once per connection: a Bind
 * and an Execute from then on), else unnamed. A named statement that failed before it ran
 * (lost by `DISCARD ALL`, outdated by a migration, mixed up by a pooler) is repaired by the
 * policy and, outside a transaction, sent once more (see statement-naming.ts).
 */
async function sendStatement(
  naming: StatementNaming,
  client: pg.PoolClient,
  sqlText: string,
  parameters: unknown[],
  inTransaction: boolean,
): Promise<StatementResult> {
  const form = naming.formOf(client, sqlText);
  if (form === undefined) return client.query(sqlText, parameters);
  try {
    return await runNamedStatement(client, form.name, form.text, parameters, form.replaces);
  } catch (error) {
    const recovery = naming.recover(client, error, form, inTransaction);
    if (recovery === undefined) throw error;
    // Repaired, but the transaction it failed in is aborted: the caller may run it again.
    if (recovery === 'abort') throw new PreparedStatementError((error as { code: string }).code, { cause: error });
    const again = naming.formOf(client, sqlText);
    return again === undefined
      ? client.query(sqlText, parameters)
      : runNamedStatement(client, again.name, again.text, parameters, again.replaces);
  }
}

const countedCommands = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

function createDirectRunner(tuned: TunedPoolWithNaming): DirectQueryRunner {
  return async <R>(sqlText: string, parameters: readonly unknown[]) => {
    const client = await tuned.connect();
    tuned.callStarted(client);
    try {
      const result = await sendStatement(tuned.naming, client, sqlText, parameters as unknown[], false);
      return {
        rows: (result.rows ?? []) as R[],
        ...(countedCommands.has(result.command) && result.rowCount !== null
          ? { numAffectedRows: BigInt(result.rowCount) }
          : {}),
      };
    } catch (error) {
      throw mapClientError(tuned, client, error);
    } finally {
      tuned.callSettled(client);
      client.release();
    }
  };
}

/**
 * Maps a failed call's error, saying which bound fired where the pool knows the connection's
 * bounds, as the connection said when it was opened (see inspectConnection): a
 * `QueryCanceledError` that ran as long as `statement_timeout`, a `LockNotAvailableError` that
 * waited `lock_timeout`. A query can fail with the server's
 * 57P01 before the socket's end reaches pg, which then still counts the client as usable:
 * released as it is, it would go back to the pool and fail the next borrower (often the
 * caller's retry). Ending it now makes pg-pool discard it on release.
 */
function mapClientError(tuned: PoolPlumbing, client: pg.PoolClient, error: unknown): unknown {
  const mapped = mapDatabaseError(error);
  // A call the pool gave up at its deadline: the server's answer to the pool's cancel (or the
  // connection's close) is that deadline, not a cancel of the caller's. Any other error of the
  // statement's that came meanwhile is its true outcome. (Its own statement_timeout firing in
  // that second is told as the deadline too: the deadline is that bound and 5 s more, so such a
  // statement had been waiting on a server that took far longer than its bound to answer.)
  const abandonedBy = (client as unknown as BoundedClient).abandonedBy;
  if (abandonedBy !== undefined && (mapped instanceof QueryCanceledError || mapped instanceof ConnectionError)) return abandonedBy;
  // A FATAL error is the last message of its session, whatever it maps to: PgBouncer in
  // statement mode refuses a transaction (a ConfigError) and closes the connection, which pg,
  // not yet told, would let go back to the pool and fail the next borrower as `terminated`.
  if (!(mapped instanceof ConnectionError) && (error as { severity?: unknown } | null)?.severity === 'FATAL') {
    client.end().catch(() => undefined);
  }
  if (mapped instanceof ConnectionError) {
    client.end().catch(() => undefined);
    // A server that ends an idle session (idle_in_transaction_session_timeout) says why only
    // then; the next query merely finds the connection closed.
    const earlier = (client as unknown as BoundedClient).brokenBy;
    // The pool's end closed a connection the caller still held: nothing to retry.
    if (earlier instanceof PoolClosedError) return earlier;
    if (mapped.reason === 'terminated' && earlier !== undefined && earlier !== error) {
      const why = mapDatabaseError(earlier);
      if (why instanceof ConnectionError && why.reason !== 'terminated') return why;
    }
    return mapped;
  }
  if (!(mapped instanceof QueryCanceledError || mapped instanceof LockNotAvailableError)) return mapped;
  const startedAt = (client as unknown as BoundedClient).callStartedAt;
  const elapsedMs = startedAt === 0 ? undefined : Math.round(performance.now() - startedAt);
  const bounds = tuned.boundsOf(client);
  if (mapped instanceof LockNotAvailableError) {
    const waited = elapsedMs !== undefined && bounds.lockTimeoutMs !== undefined && elapsedMs >= bounds.lockTimeoutMs - timerSlackMs;
    return waited ? new LockNotAvailableError({ cause: error, lockTimeoutMs: bounds.lockTimeoutMs }) : mapped;
  }
  const limit = bounds.statementTimeoutMs;
  const reason =
    limit === undefined || elapsedMs === undefined ? 'unknown' : elapsedMs >= limit - timerSlackMs ? 'statement_timeout' : 'cancel_request';
  if (reason === 'statement_timeout' && waitedForRowLock(error)) {
    return new LockNotAvailableError({
      cause: error,
      limit: 'statement_timeout',
      ...(limit === undefined ? {} : { statementTimeoutMs: limit }),
      ...(bounds.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: bounds.lockTimeoutMs }),
    });
  }
  return new QueryCanceledError({
    cause: error,
    ...(elapsedMs === undefined ? {} : { elapsedMs }),
    ...(limit === undefined ? {} : { statementTimeoutMs: limit }),
    reason,
  });
}

const transactionStart = /^\s*(begin|start\s+transaction)\b/i;
const transactionEnd = /^\s*(commit|rollback|end|abort)\s*;?\s*$/i;

// In a transaction ('T') or a failed one ('E'), as the server's last ReadyForQuery said.
const transactionOpen = (client: pg.PoolClient) => ['T', 'E'].includes(client.getTransactionStatus() ?? '');

// PostgreSQL answers a BEGIN inside a transaction with a warning and carries on, so the COMMIT
// or ROLLBACK meant for the inner one ends the outer one: where a caller began a transaction by
// hand (BEGIN on db.connection(), which Kysely does not know of), a query function that opens
// its own (users.create, …) would commit the caller's work half-done, or roll it back, and the
// caller's later statements would run outside any transaction. pg knows the session's state from
// the server's last ReadyForQuery ('T' in a transaction, 'E' in a failed one), so this costs
// no round trip; behind a pooler in transaction mode it is the server connection's state too.
function refuseNestedBegin(client: pg.PoolClient): void {
  if (!transactionOpen(client)) return;
  throw new ValidationError(
    'db',
    'a transaction is already open on this connection (begun by hand?): a new one would end it with its own COMMIT or ' +
      'ROLLBACK; pass the transaction of db.transaction() or db.startTransaction() instead, and query functions run in it',
  );
}

// The same for a function that must run outside any transaction (refreshTokens.rotate, which
// commits a reuse revocation before it throws): inside one begun by hand its rotation joined
// the caller's transaction, and its reuse path was refused above instead of committing the
// revocation and throwing TokenReusedError.
function refuseInsideTransaction(client: pg.PoolClient, what: string): void {
  if (!transactionOpen(client)) return;
  throw new ValidationError(
    'db',
    `${what} needs the root database, not a transaction: a transaction is open on this connection (begun by hand?), and ${what} commits what it does itself`,
  );
}

// Every statement Kysely runs goes through here, which makes this the one place where
// PostgreSQL errors become typed errors (by SQLSTATE, see mapDatabaseError). Statements that
// prepareQuery compiled are sent named here too, in a transaction as well as outside one.
function errorMappingWrapper(tuned: TunedPoolWithNaming, client: pg.PoolClient): PostgresPoolClient {
  // Kysely opens and ends transactions with these statements on the connection it holds; a
  // failed named statement inside one cannot be retried (the transaction is aborted).
  let inTransaction = false;
  // Set by withTimeouts for the rest of its transaction: this connection's bounds differ.
  let overridden = false;
  const marks = savepointBounds();
  const endOverride = () => {
    marks.clear();
    if (!overridden) return;
    overridden = false;
    tuned.resetBounds(client);
  };
  return {
    query: (async (sqlText: string, parameters: unknown[]) => {
      let commit = false;
      // A savepoint lives in a transaction only: the statements outside one are not read for it.
      const savepoint = inTransaction && sqlText.length < 200 ? savepointCommand(sqlText) : undefined;
      if (sqlText.length < 80) {
        const ending = transactionEnd.exec(sqlText)?.[1]?.toLowerCase();
        if (ending !== undefined) {
          inTransaction = false;
          endOverride();
          commit = ending === 'commit' || ending === 'end';
        } else if (transactionStart.test(sqlText)) {
          refuseNestedBegin(client);
          inTransaction = true;
        }
      }
      const outsideOnly = outsideTransactionStatement(sqlText);
      if (outsideOnly !== undefined) refuseInsideTransaction(client, outsideOnly);
      tuned.callStarted(client);
      try {
        const result = await sendStatement(tuned.naming, client, sqlText, parameters, inTransaction);
        // A COMMIT that PostgreSQL completed as ROLLBACK committed nothing: the work went on
        // past a failed statement. Kysely before 0.28.19 reports success, later ones an error
        // of their own, which is no DbError.
        if (commit && result.command === 'ROLLBACK') {
          throw markedAsKyselyAbortedTransaction(new TransactionAbortedError());
        }
        if (sqlText === timeoutsOverrideSql) {
          overridden = true;
          tuned.setBounds(client, overriddenBounds(tuned, client, parameters));
        }
        if (savepoint?.kind === 'savepoint') marks.opened(savepoint.name, tuned.boundsOf(client), overridden);
        else if (savepoint?.kind === 'release') marks.released(savepoint.name);
        else if (savepoint?.kind === 'rollback') {
          // The server took back the SET LOCALs made since the savepoint: the pool's bounds follow.
          const before = marks.rolledBackTo(savepoint.name);
          if (before !== undefined) {
            if (before.overridden) tuned.setBounds(client, before.bounds);
            else if (overridden) tuned.resetBounds(client);
            overridden = before.overridden;
          }
        }
        return result;
      } catch (error) {
        throw mapClientError(tuned, client, error);
      } finally {
        tuned.callSettled(client);
      }
    }) as unknown as PostgresPoolClient['query'], // no cursor form: the dialect has no cursor configured

    // Kysely passes `true` after a failed ROLLBACK: that connection may still be inside the
    // transaction, and must be closed rather than handed to the next caller. So must one that a
    // caller's db.connection() callback left inside a transaction it began by hand (no COMMIT):
    // pooled, it would keep that transaction's locks and snapshot, and the next caller's
    // statements would run in it. Closing it makes the server roll it back.
    release: (destroy?: boolean) => {
      inTransaction = false;
      endOverride();
      const status = client.getTransactionStatus();
      client.release(destroy === true || status === 'T' || status === 'E' ? true : undefined);
    },
  } as PostgresPoolClient;
}

// withTimeouts sends its values as milliseconds, or null to keep one: the call deadline follows
// the new statement_timeout, so a call given more time by the server is given it here too.
function overriddenBounds(tuned: PoolPlumbing, client: pg.PoolClient, parameters: unknown[]) {
  const current = tuned.boundsOf(client);
  const [statement, lock] = parameters.map((value) => (value === null || value === undefined ? undefined : Number(value)));
  const statementTimeoutMs = statement ?? current.statementTimeoutMs;
  return {
    statementTimeoutMs,
    lockTimeoutMs: lock ?? current.lockTimeoutMs,
    deadlineMs: statement === undefined ? current.deadlineMs : callDeadlineFor(statement, current.deadlineMs),
  };
}

// What Kysely's dialect needs from a pool. One wrapper per pg client, kept for the client's
// life: Kysely caches its connection object by the client it is handed, and a new wrapper per
// checkout would defeat that cache.
function wrappingPool(tuned: TunedPoolWithNaming): { connect: () => Promise<PostgresPoolClient>; end: () => Promise<void> } {
  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  return {
    connect: async () => {
      const client = await tuned.connect();
      let wrapper = wrappers.get(client);
      if (wrapper === undefined) {
        wrapper = errorMappingWrapper(tuned, client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: tuned.end,
  };
}

// Kysely's derivations of an instance: new instances on the same driver.
const derivations = ['withPlugin', 'withoutPlugins', 'withSchema', 'withTables'] as const;

// Kysely starts its driver on the first query and skips the driver's destroy if none ran, yet
// the pool opened its minimum connections at creation: destroy() must always close them, on
// the `db` createDb made and on any instance derived from it (`db.withPlugin(…)`, as a
// service with CamelCasePlugin wires it), which also reaches the pool (poolOf) but sends
// nothing past Kysely's executor (no direct runner): its plugins must see every statement.
function keepTuned(db: Kysely<DB>, state: TunedState): Kysely<DB> {
  const derived = { tuned: state.tuned, direct: undefined, gates: state.gates, handle: state.handle };
  const own = (name: string, value: unknown) => Object.defineProperty(db, name, { value, configurable: true, writable: true });
  Object.defineProperty(db, tunedState, { value: state });
  attachRowGates(db, state.gates);
  for (const name of derivations) {
    const derive = Kysely.prototype[name] as (this: Kysely<DB>, ...args: unknown[]) => Kysely<DB>;
    own(name, (...args: unknown[]) => keepTuned(derive.apply(db, args), derived));
  }
  own('destroy', async () => {
    await Kysely.prototype.destroy.call(db);
    await state.tuned.end();
  });
  return db;
}

/**
 * Creates the `Kysely<DB>` that every query function takes first, on one tuned `pg` pool.
 * Without a config it reads the environment (see {@link loadDbConfig}); a partial config
 * fills the rest from the defaults. `await db.destroy()` closes every connection.
 *
 * @example
 * const db = createDb() // DATABASE_URL, DB_MAX_CONNECTIONS=10, DB_MIN_CONNECTIONS=2, DB_ACQUIRE_TIMEOUT=30
 * const user = await users.findByEmail(db, 'kenn@example.org')
 * await db.destroy()
 */
export function createDb(
  config?: DbConfigInput,
  options: CreateDbOptions = {},
): Kysely<DB> {
  const resolved = config === undefined ? loadDbConfig() : resolveDbConfig(config);
  const tuned = createTunedPool(resolved, options.onPoolError);
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool: wrappingPool(tuned) }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  // A call that waited its acquire timeout at a held row has waited for a connection.
  const gates = createRowGates(
    resolved.acquireTimeoutMs,
    (waitedMs) => new PoolTimeoutError(waitedMs, resolved.maxConnections, tuned.pool.totalCount - tuned.pool.idleCount, tuned.pool.waitingCount),
    // Idle connections a call beginning now would get at once: those not claimed yet by the
    // checkouts waiting. pg-pool queues even a checkout an idle connection will serve, on its
    // next tick: with none counted while any waited, a burst fired at once saw every call after
    // the first as one waiting for a busy pool, none counted at the row, and all of them took a
    // connection each, up to the pool's every one. (A connection still to be opened is not at
    // hand: a checkout begun a moment before may not have reached the pool yet.)
    () => Math.max(0, tuned.pool.idleCount - tuned.pool.waitingCount),
  );
  // The pool's functions are closures, not methods: handed out as they are.
  const handle: TunedPool = Object.freeze({ pool: tuned.pool, ready: tuned.ready, end: tuned.end, statementNaming: tuned.statementNaming });
  return keepTuned(db, { tuned, direct: options.log === undefined ? createDirectRunner(tuned) : undefined, gates, handle });
}

/**
 * The tuned pool behind a `Kysely` made by {@link createDb}, or one derived from it
 * (`withPlugin`, `withSchema`, `withTables`, a service's own table types such as
 * `CamelCasedDB`): wait for its minimum connections at start-up, or read its statistics. A
 * transaction has no pool of its own to give, and is refused: by the compiler where it is
 * typed as one, at run time (`ValidationError`) where a wider type holds it.
 *
 * @example
 * const db = createDb()
 * await poolOf(db).ready() // fail fast at start-up if the database is unreachable
 */
// Kysely<any>: an instance of any table types (Kysely is invariant in them), as only the
// instance decides which pool it reaches.
export function poolOf<K extends Kysely<any>>(db: K extends Transaction<any> | ControlledTransaction<any, any> ? never : K): TunedPool {
  return stateOf(db).handle;
}

/**
 * The whole tuned pool behind `db`, checkouts included: for the library's own modules and
 * tests, not exported from the package (a service's checkout would run without a call deadline).
 *
 * @example const client = await tunedPoolOf(db).connect()
 */
export function tunedPoolOf(db: Kysely<any>): PoolPlumbing {
  return stateOf(db).tuned;
}

function stateOf(db: Kysely<any>): TunedState {
  const state = tunedStateOf(db);
  if (state === undefined) throw new ValidationError('db', 'poolOf() takes a Kysely instance made by createDb()');
  return state;
}
