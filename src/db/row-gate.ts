import { performance } from 'node:perf_hooks';
import type { Kysely } from 'kysely';
import { LockNotAvailableError } from '../errors.js';

interface Waiter {
  go(): void;
  fail(error: Error): void;
}

// One row's calls in one pool: whether one holds a connection, and who waits for its turn.
interface RowQueue {
  running: boolean;
  waiting: Waiter[];
}

/** A pool's row gates (see {@link gatedByRow}). */
export interface RowGates {
  /** The longest a call waits for its turn: the pool's acquire timeout. */
  readonly waitMs: number;
  /** The error of a call that waited `waitMs` for its turn, as one that waited for a connection. */
  readonly timedOut: (waitedMs: number) => Error;
  readonly rows: Map<string, RowQueue>;
}

// On each instance of one createDb that reaches its pool (the db itself, withPlugin's,
// withSchema's, and the copy a query function makes without plugins), by a registered symbol:
// a service that loads both builds of this package has two copies of this module. Not on a
// transaction, nor on the instance `db.connection()` hands its callback: those hold a
// connection already, perhaps with the row locked.
const rowGatesKey = Symbol.for('@kennwilliamson/db/row-gates');

/**
 * A pool's row gates: a call waits at most `waitMs` for its turn, then fails with `timedOut`'s error.
 *
 * @example const gates = createRowGates(config.acquireTimeoutMs, (waitedMs) => new PoolTimeoutError(waitedMs, …))
 */
export function createRowGates(waitMs: number, timedOut: (waitedMs: number) => Error): RowGates {
  return { waitMs, timedOut, rows: new Map() };
}

/**
 * Gives `db`, an instance that reaches the pool, the pool's row gates.
 *
 * @example attachRowGates(db.withPlugin(plugin), gates)
 */
export function attachRowGates(db: Kysely<any>, gates: RowGates): void {
  Object.defineProperty(db, rowGatesKey, { value: gates, configurable: true });
}

/** The row gates of `db`'s pool, if `db` reaches one through them. @example rowGatesOf(db)?.waitMs // 30000 */
export function rowGatesOf(db: Kysely<any>): RowGates | undefined {
  return (db as { [rowGatesKey]?: RowGates })[rowGatesKey];
}

/** How many rows have a call running or waiting in `db`'s pool (none once all settled). @example gatedRows(db) // 0 */
export function gatedRows(db: Kysely<any>): number {
  return rowGatesOf(db)?.rows.size ?? 0;
}

/**
 * Runs `work`, a call that writes or locks the row `id` of `table`, once no other call of the
 * same pool for that row is running. One held row (an admin's long transaction, a client
 * retrying in a loop) then takes one of the pool's connections, not all of them, and every
 * other user's calls go on. When the running call fails for a lock (`LockNotAvailableError`:
 * it waited `lock_timeout` for the row), the calls waiting behind it fail with it, never having
 * taken a connection; otherwise each waits for its turn at most the pool's acquire timeout
 * (then `PoolTimeoutError`, as for a connection). In a transaction, on the instance
 * `db.connection()` gives, and on a `Kysely` that createDb did not make, `work` runs at once.
 *
 * @example
 * return gatedByRow(db, 'users', id, () => db.updateTable('users').set(set).where('id', '=', id).execute())
 */
export async function gatedByRow<T>(db: Kysely<any>, table: string, id: string, work: () => Promise<T>): Promise<T> {
  const gates = db.isTransaction ? undefined : rowGatesOf(db);
  if (gates === undefined) return work();
  const row = `${table}:${id}`;
  let queue = gates.rows.get(row);
  if (queue === undefined) {
    queue = { running: false, waiting: [] };
    gates.rows.set(row, queue);
  }
  // A call that ends hands its turn to the first waiter, so that no newcomer takes it meanwhile.
  if (queue.running) await turn(gates, queue);
  else queue.running = true;
  let failedForLock: unknown;
  try {
    return await work();
  } catch (error) {
    // By its code: the error may be the other build's class, from a createDb of that copy.
    if ((error as { code?: unknown } | null)?.code === 'LOCK_NOT_AVAILABLE') failedForLock = error;
    throw error;
  } finally {
    if (failedForLock !== undefined) {
      const { lockTimeoutMs, statementTimeoutMs, limit } = failedForLock as Partial<LockNotAvailableError>;
      for (const waiter of queue.waiting.splice(0)) {
        waiter.fail(new LockNotAvailableError({ cause: failedForLock, lockTimeoutMs, statementTimeoutMs, limit, behindCallForRow: true }));
      }
    }
    const next = queue.waiting.shift();
    if (next !== undefined) next.go();
    else {
      queue.running = false;
      gates.rows.delete(row);
    }
  }
}

// Waits for the running call of the row to hand over its turn, at most the gates' waitMs.
function turn(gates: RowGates, queue: RowQueue): Promise<void> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const waiter: Waiter = {
      go: () => {
        clearTimeout(timer);
        resolve();
      },
      fail: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    };
    const timer = setTimeout(() => {
      const at = queue.waiting.indexOf(waiter);
      if (at >= 0) queue.waiting.splice(at, 1);
      reject(gates.timedOut(Math.round(performance.now() - started)));
    }, gates.waitMs);
    queue.waiting.push(waiter);
  });
}
