import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import { type ConfigError, mapDatabaseError, ValidationError } from '../errors.js';
import { parseDuration } from './duration.js';
import { requireExecutor } from './require-executor.js';
import { typedTransaction } from './typed-transaction.js';
import type { DB } from '../../generated/db.js';
import type { CamelCasedDB } from './camel-cased-db.js';
import { type Executor, type ExecutorOf, withoutPlugins } from './query-function.js';

/** Bounds for one transaction, each in milliseconds or with a unit (`'60s'`, `'5min'`); an omitted one stays as it is. */
export interface StatementTimeouts {
  /** `statement_timeout` of each statement of the transaction (the pool's call deadline follows it). */
  statementTimeout?: number | string | undefined;
  /** `lock_timeout` of each statement of the transaction. */
  lockTimeout?: number | string | undefined;
  /** `idle_in_transaction_session_timeout` while the transaction waits on the caller. */
  idleInTransactionTimeout?: number | string | undefined;
}

/**
 * The one statement withTimeouts sends; the pool recognises it by its text and lengthens the
 * connection's call deadline for the rest of the transaction. `set_config(…, true)` is
 * `SET LOCAL`: it ends with the transaction, so nothing stays on a pooled server connection.
 */
export const timeoutsOverrideSql =
  "select pg_catalog.set_config('statement_timeout', coalesce($1, pg_catalog.current_setting('statement_timeout')), true), " +
  "pg_catalog.set_config('lock_timeout', coalesce($2, pg_catalog.current_setting('lock_timeout')), true), " +
  "pg_catalog.set_config('idle_in_transaction_session_timeout', coalesce($3, pg_catalog.current_setting('idle_in_transaction_session_timeout')), true)";

const timeoutNames: ReadonlySet<string> = new Set(['statementTimeout', 'lockTimeout', 'idleInTransactionTimeout'] satisfies Array<keyof StatementTimeouts>);

function millisecondsOf(field: string, value: number | string | undefined): string | null {
  if (value === undefined) return null;
  try {
    return String(parseDuration(field, value));
  } catch (error) {
    throw new ValidationError(field, (error as ConfigError).message);
  }
}

/**
 * Runs `work` in a transaction whose statements get other bounds than the pool's defaults: for
 * a call that needs more time (an admin listing, `refreshTokens.purgeExpired` on a large
 * table), or one that should give up sooner. Given the root `db` it opens a transaction;
 * given a transaction, the bounds apply to the rest of that transaction. Costs one round trip
 * (`SET LOCAL` of the three settings in one statement), on that call only. Takes any `Kysely`
 * (a `Kysely<CamelCasedDB>` with CamelCasePlugin too) and hands `work` a transaction of the same type.
 *
 * @example
 * // Purge a large table: up to two minutes per statement, 10 s for a lock.
 * const purged = await withTimeouts(db, { statementTimeout: '2min', lockTimeout: '10s' }, (trx) =>
 *   refreshTokens.purgeExpired(trx),
 * )
 */
export function withTimeouts<D extends DB = DB, T = unknown>(db: ExecutorOf<D>, timeouts: StatementTimeouts, work: (trx: Transaction<D>) => Promise<T>): Promise<T>;
/** The same, for a service's Kysely with CamelCasePlugin (see {@link CamelCasedDB}), tables of its own beside ours or not. */
export function withTimeouts<D extends CamelCasedDB = CamelCasedDB, T = unknown>(
  db: ExecutorOf<D>,
  timeouts: StatementTimeouts,
  work: (trx: Transaction<D>) => Promise<T>,
): Promise<T>;
/** The same, for any other Kysely (tables of the service's own only). */
export function withTimeouts<D, T>(db: ExecutorOf<D>, timeouts: StatementTimeouts, work: (trx: Transaction<D>) => Promise<T>): Promise<T>;
// The overloads name Transaction<D> beside Kysely<D>, and our tables' types first (the type
// parameters in the order they always had, <D, T>, for a caller that gives them): from a
// transaction (a ControlledTransaction too) against Kysely<D> alone, TypeScript inferred D as
// an index signature of the tables' types, which neither the transaction nor `work` matched.
export async function withTimeouts<D, T>(
  db: ExecutorOf<D>,
  timeouts: StatementTimeouts,
  work: (trx: Transaction<D>) => Promise<T>,
): Promise<T> {
  requireExecutor(db);
  if (timeouts === null || typeof timeouts !== 'object') throw new ValidationError('timeouts', 'must be an object');
  // A misnamed bound (`statementTimeoutMs`, from plain JavaScript or a spread config) was taken
  // without a word, and the transaction ran with the pool's defaults.
  for (const name of Object.keys(timeouts)) {
    if (!timeoutNames.has(name)) throw new ValidationError(name, `is no bound of withTimeouts (${[...timeoutNames].join(', ')})`);
  }
  const values = [
    millisecondsOf('statementTimeout', timeouts.statementTimeout),
    millisecondsOf('lockTimeout', timeouts.lockTimeout),
    millisecondsOf('idleInTransactionTimeout', timeouts.idleInTransactionTimeout),
  ];
  const [statement, lock] = values.map((value) => (value === null ? undefined : Number(value)));
  if (statement !== undefined && lock !== undefined && lock > statement) {
    throw new ValidationError('lockTimeout', `must not exceed statementTimeout (${statement} ms), which would fire first`);
  }
  const run = async (trx: Transaction<D>) => {
    // A typed error on a service's own Kysely too (an aborted transaction, a lost connection).
    // Without the caller's plugins, as the query functions' statements: a plugin that keeps
    // state per query (transformQuery, then transformResult) failed on a result of a query
    // it never saw, and one that rewrites statements would have changed this one.
    await withoutPlugins(trx as unknown as Executor).executeQuery(CompiledQuery.raw(timeoutsOverrideSql, values)).catch((error: unknown) => Promise.reject(mapDatabaseError(error)));
    return work(trx);
  };
  return db.isTransaction ? run(db as Transaction<D>) : typedTransaction(db, run);
}
