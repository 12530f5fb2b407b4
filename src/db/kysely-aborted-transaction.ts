// Kysely (0.28.19 and later) marks the error of a COMMIT that PostgreSQL answered with
// ROLLBACK (an earlier statement failed, and the work caught that and went on) with this
// registered symbol, the same in every copy of Kysely. Its transactions end as aborted, without
// a ROLLBACK of their own, when the error they meet carries it (and mapDatabaseError, in
// errors.ts, knows such an error by it).
const kyselyAbortedTransaction = Symbol.for('kysely.AbortedTransactionError');

/**
 * Marks `error` as standing for Kysely's `AbortedTransactionError`, so that Kysely ends its
 * transaction as aborted and rethrows `error` itself.
 *
 * @example
 * throw markedAsKyselyAbortedTransaction(new TransactionAbortedError())
 */
export function markedAsKyselyAbortedTransaction<E extends Error>(error: E): E {
  Object.defineProperty(error, kyselyAbortedTransaction, { value: true });
  return error;
}
