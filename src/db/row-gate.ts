import type { Kysely } from 'kysely';
import { LockNotAvailableError } from '../errors.js';

interface Waiter {
  go(): void;
  fail(error: LockNotAvailableError): void;
}

// One row's calls in one pool: whether one holds a connection, and who waits for its turn.
interface RowQueue {
  running: boolean;
  waiting: Waiter[];
}

interface RowGates {
  /** How long a call may wait here for its turn: the pool's `lock_timeout`. */
  waitMs: number;
  rows: Map<string, RowQueue>;
}

// On the adapter, which every instance of one createDb shares (its withPlugin, withSchema,
// withoutPlugins and transactions), by a registered symbol: a service that loads both builds
// of this package has two copies of this module, and either must find the other's gates.
const rowGates = Symbol.for('@kennwilliamson/db/row-gates');

/**
 * Gives the pool behind `db` its row gates (see {@link gatedByRow}): a call waits at most
 * `waitMs` for its turn.
 *
 * @example addRowGates(db, config.lockTimeoutMs)
 */
export function addRowGates(db: Kysely<any>, waitMs: number): void {
  const gates: RowGates = { waitMs, rows: new Map() };
  Object.defineProperty(db.getExecutor().adapter, rowGates, { value: gates });
}

/**
 * Runs `work`, a call that writes or locks the row `id` of `table`, once no other call of the
 * same pool for that row is running. One held row (an admin's long transaction, a client
 * retrying in a loop) then takes one of the pool's connections, not all of them, and every
 * other user's calls go on; its callers fail as they would on the server, as the retryable
 * `LockNotAvailableError`, each within the pool's `lock_timeout` of its turn coming or not:
 * a call waits here at most that long, and when the running call fails for a lock, those
 * waiting behind it fail with it, without having taken a connection. In a transaction (which
 * has its connection, and may hold the row itself) and on a `Kysely` that createDb did not
 * make, `work` runs at once.
 *
 * @example
 * return gatedByRow(db, 'users', id, () => db.updateTable('users').set(set).where('id', '=', id).execute())
 */
export async function gatedByRow<T>(db: Kysely<any>, table: string, id: string, work: () => Promise<T>): Promise<T> {
  const gates = db.isTransaction ? undefined : (db.getExecutor().adapter as { [rowGates]?: RowGates })[rowGates];
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
      for (const waiter of queue.waiting.splice(0)) waiter.fail(new LockNotAvailableError({ cause: failedForLock, lockTimeoutMs: gates.waitMs }));
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
      queue.waiting.splice(queue.waiting.indexOf(waiter), 1);
      reject(new LockNotAvailableError({ lockTimeoutMs: gates.waitMs }));
    }, gates.waitMs);
    queue.waiting.push(waiter);
  });
}
