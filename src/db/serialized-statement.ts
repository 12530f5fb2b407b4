import { mapDatabaseError, SerializationError } from '../errors.js';

// Enough for each of a row's concurrent writers (ten tabs refreshing one token) to commit once
// before the statement gets its turn; then the SerializationError goes to the caller.
const attempts = 20;

/**
 * Runs `statement`, one statement outside any transaction of the caller's (so in a
 * transaction of its own), again while it fails for serialization (SQLSTATE 40001), as READ
 * COMMITTED would have re-read the row: where the database or role defaults to REPEATABLE
 * READ or SERIALIZABLE, a row that another transaction changed after the statement's snapshot
 * fails a `FOR UPDATE` or `FOR SHARE` of it instead. A statement that fails changes nothing,
 * so running it again is safe; the next run sees what the other transaction committed. Inside
 * a caller's transaction (`executor.isTransaction`) it runs once: the caller chose the level
 * and retries the whole transaction.
 *
 * @example
 * const { rows } = await serializedStatement(db, () => rotateStatement.execute(db, params))
 */
export async function serializedStatement<T>(executor: { readonly isTransaction: boolean }, statement: () => Promise<T>): Promise<T> {
  if (executor.isTransaction) return statement();
  for (let attempt = 1; ; attempt++) {
    try {
      return await statement();
    } catch (error) {
      if (attempt === attempts || !(mapDatabaseError(error) instanceof SerializationError)) throw error;
    }
  }
}
