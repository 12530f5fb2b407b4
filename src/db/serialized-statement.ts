import { performance } from 'node:perf_hooks';
import { mapDatabaseError, SerializationError, TransactionAbortedError } from '../errors.js';

// Each run waits for, and then sees, the writers that were ahead of it (a token's rotation by
// another tab, a deactivation): a few runs at most; beyond these, the SerializationError goes
// to the caller, who may retry it as any other.
const attempts = 20;
// Each run may wait up to lock_timeout for a row before failing for serialization: on a row
// that other transactions keep changing, twenty runs waited 40-60 s. No run starts once this
// much has passed since the first (the default statement_timeout: the call then takes about as
// long as one statement may).
const retryBudgetMs = 5_000;

/**
 * Runs `statement`, one statement outside any transaction of the caller's (so in a
 * transaction of its own), again while it fails for serialization (SQLSTATE 40001), as READ
 * COMMITTED would have re-read the row: where the database or role defaults to REPEATABLE
 * READ or SERIALIZABLE, a row that another transaction changed after the statement's snapshot
 * fails a `FOR UPDATE` or `FOR SHARE` of it instead. A statement that fails changes nothing,
 * so running it again is safe; the next run sees what the other transaction committed. Inside
 * a caller's transaction (`executor.isTransaction`) it runs once: the caller chose the level
 * and retries the whole transaction. At most 20 runs, and none begun 5 s after the
 * first: then the caller gets the SerializationError.
 *
 * @example
 * const { rows } = await serializedStatement(db, () => rotateStatement.execute(db, params))
 */
export async function serializedStatement<T>(executor: { readonly isTransaction: boolean }, statement: () => Promise<T>): Promise<T> {
  if (executor.isTransaction) return statement();
  const startedAt = performance.now();
  let first: unknown;
  for (let attempt = 1; ; attempt++) {
    try {
      return await statement();
    } catch (error) {
      const mapped = mapDatabaseError(error);
      first ??= error;
      // A transaction the caller opened by hand on a connection of its own (BEGIN on
      // db.connection()) is not one Kysely knows of: there the next run fails as aborted, and
      // the caller hears of the serialization failure, as it would have without the retry.
      if (mapped instanceof TransactionAbortedError) throw first;
      if (attempt === attempts || !(mapped instanceof SerializationError) || performance.now() - startedAt >= retryBudgetMs) throw error;
    }
  }
}
