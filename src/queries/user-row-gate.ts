import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { gatedByRow } from '../db/row-gate.js';

/**
 * Runs `work`, a call that writes or locks the user's row, through the pool's gate for that row
 * (see gatedByRow): while the row looks held, it waits in the process rather than on a
 * connection. The look at the row after a call failed for its lock takes the lock that `work`
 * takes, without waiting, in a statement of its own, which lets it go at once: a change of the
 * slug (`keyChange`, a key: `FOR UPDATE`, which a transaction holding the row `FOR KEY SHARE`
 * blocks), or of the user's other columns (`FOR NO KEY UPDATE`).
 *
 * @example return gatedByUserRow(db, id, () => inTransaction(db, (trx) => …))
 */
export function gatedByUserRow<T>(db: Kysely<DB>, userId: string, work: () => Promise<T>, { keyChange = false } = {}): Promise<T> {
  const row = () => inLibrarySchema(db).selectFrom('users').select('id').where('id', '=', userId);
  return keyChange
    ? gatedByRow(db, `users:${userId}`, work, () => row().forUpdate().noWait().execute(), 3)
    : gatedByRow(db, `users:${userId}`, work, () => row().forNoKeyUpdate().noWait().execute(), 2);
}
