import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { gatedByRow } from '../db/row-gate.js';

/**
 * Runs `work`, a call that writes or locks the user's row, through the pool's gate for that row
 * (see gatedByRow): while the row looks held, it waits in the process rather than on a
 * connection. The look at the row after a call failed for its lock takes the lock that a change
 * of the user's other columns takes (`FOR NO KEY UPDATE`), without waiting, in a statement of
 * its own, which lets it go at once.
 *
 * @example return gatedByUserRow(db, id, () => inTransaction(db, (trx) => …))
 */
export function gatedByUserRow<T>(db: Kysely<DB>, userId: string, work: () => Promise<T>): Promise<T> {
  return gatedByRow(db, `users:${userId}`, work, () =>
    inLibrarySchema(db).selectFrom('users').select('id').where('id', '=', userId).forNoKeyUpdate().noWait().execute(),
  );
}
