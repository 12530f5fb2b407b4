import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { gatedByRow } from '../db/row-gate.js';

/** The lock a gated call takes on the user's row. */
export type UserRowLock = 'FOR KEY SHARE' | 'FOR NO KEY UPDATE' | 'FOR UPDATE';

/**
 * Runs `work`, a call that writes or locks the user's row, through the pool's gate for that row
 * (see gatedByRow): while the row looks held, it waits in the process rather than on a
 * connection. The look at the row after a call failed for its lock takes the lock that `work`
 * takes, without waiting, in a statement of its own, which lets it go at once: `FOR UPDATE`
 * for a change of the slug (a key: a transaction holding the row `FOR KEY SHARE` blocks it),
 * `FOR NO KEY UPDATE` for a change of the user's other columns, `FOR KEY SHARE` for an insert
 * that refers to the user (its foreign key's check takes that).
 *
 * @example return gatedByUserRow(db, id, () => inTransaction(db, (trx) => …))
 */
export function gatedByUserRow<T>(db: Kysely<DB>, userId: string, work: () => Promise<T>, lock: UserRowLock = 'FOR NO KEY UPDATE'): Promise<T> {
  const row = () => inLibrarySchema(db).selectFrom('users').select('id').where('id', '=', userId);
  const gate = `users:${userId}`;
  if (lock === 'FOR UPDATE') return gatedByRow(db, gate, work, () => row().forUpdate().noWait().execute(), 3);
  if (lock === 'FOR KEY SHARE') return gatedByRow(db, gate, work, () => row().forKeyShare().noWait().execute(), 0);
  return gatedByRow(db, gate, work, () => row().forNoKeyUpdate().noWait().execute(), 2);
}
