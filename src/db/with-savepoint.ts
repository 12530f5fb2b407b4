import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import type { DB } from '../../generated/db.js';
import { mapDatabaseError } from '../errors.js';
import { requireExecutor } from './require-executor.js';
import { typedTransaction } from './typed-transaction.js';
import { processWide } from './process-wide.js';
import type { CamelCasedDB } from './camel-cased-db.js';
import { type Executor, type ExecutorOf, withoutPlugins } from './query-function.js';

// Process-wide, as the names must be unique within a transaction whichever copy of this
// package (ESM or CommonJS build) opened the savepoint.
const savepoints = processWide('savepoints', () => ({ opened: 0 }));

/**
 * Runs `work` so that its failure does not abort the caller's transaction. In PostgreSQL a
 * failed statement aborts the whole transaction (every later statement fails with
 * `TransactionAbortedError` until it rolls back), so catching, say, a `UniqueViolationError`
 * from `users.create(trx, …)` and carrying on needs a savepoint: this one is released when
 * `work` resolves and rolled back to (undoing only `work`'s changes) when it throws, and the
 * error is rethrown for the caller to handle. Given the root `db`, it opens a transaction
 * instead, so `work` is all-or-nothing either way. Costs two extra round trips in a
 * transaction.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   const user = await withSavepoint(trx, (sp) => users.create(sp, input)).catch((error) => {
 *     if (error instanceof UniqueViolationError) return users.findByEmail(trx, input.email)
 *     throw error
 *   })
 *   await incidentTimers.create(trx, { userId: user!.id }) // the transaction is still usable
 * })
 */
export function withSavepoint<T, D extends DB = DB>(db: ExecutorOf<D>, work: (trx: Transaction<D>) => Promise<T>): Promise<T>;
/** The same, for a service's Kysely with CamelCasePlugin (see {@link CamelCasedDB}), tables of its own beside ours or not. */
export function withSavepoint<T, D extends CamelCasedDB = CamelCasedDB>(db: ExecutorOf<D>, work: (trx: Transaction<D>) => Promise<T>): Promise<T>;
export async function withSavepoint<T>(
  executor: Executor | ExecutorOf<DB> | ExecutorOf<CamelCasedDB>,
  // One body for both: the statements below are the library's own, and `work` gets back the
  // caller's transaction, with its plugins and so with the DB type it had.
  callerWork: ((trx: Transaction<DB>) => Promise<T>) | ((trx: Transaction<CamelCasedDB>) => Promise<T>),
): Promise<T> {
  requireExecutor(executor);
  const work = callerWork as (trx: Transaction<DB>) => Promise<T>;
  const db = executor as Kysely<DB>;
  if (!db.isTransaction) return typedTransaction(db, work);
  const trx = db as Transaction<DB>;
  // Its own statements run as written, whatever plugins the caller's transaction carries, and
  // fail with typed errors on a service's own Kysely too (an aborted transaction, a lost
  // connection); what `work` throws is rethrown as it was.
  const own = withoutPlugins(trx);
  const run = (statement: RawBuilder<unknown>) => statement.execute(own).catch((error: unknown) => Promise.reject(mapDatabaseError(error)));
  // Unique per process, so nested savepoints never shadow each other.
  const name = sql.id(`kw_savepoint_${++savepoints.opened}`);
  await run(sql`SAVEPOINT ${name}`);
  let result: T;
  try {
    result = await work(trx);
  } catch (error) {
    await run(sql`ROLLBACK TO SAVEPOINT ${name}`);
    throw error;
  }
  await run(sql`RELEASE SAVEPOINT ${name}`);
  return result;
}
