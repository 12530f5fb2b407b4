import type { Kysely, Transaction } from 'kysely';
import { mapDatabaseError } from '../errors.js';

/**
 * `db.transaction().execute(work)`, with the transaction's own failures (its BEGIN, its
 * COMMIT, a connection refused on the way) thrown as typed `DbError`s on any `Kysely`, a
 * service's own included (createDb's maps them already); what `work` throws is `work`'s own,
 * and comes back as it was thrown.
 *
 * @example await typedTransaction(serviceDb, (trx) => users.create(trx, input)) // a refused connection: ConnectionError
 */
export async function typedTransaction<D, T>(db: Kysely<D>, work: (trx: Transaction<D>) => Promise<T>): Promise<T> {
  let workFailed: { error: unknown } | undefined;
  try {
    return await db.transaction().execute(async (trx) => {
      try {
        return await work(trx);
      } catch (error) {
        workFailed = { error };
        throw error;
      }
    });
  } catch (error) {
    if (workFailed !== undefined && workFailed.error === error) throw error;
    throw mapDatabaseError(error);
  }
}
