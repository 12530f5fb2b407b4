import type { Kysely, Transaction } from 'kysely';
import type { DB } from '../../generated/db.js';

/**
 * Runs `work` in a transaction: the caller's, when `db` already is one (so query functions
 * compose inside a service's own transaction), else a new one that commits when `work`
 * resolves and rolls back when it throws.
 *
 * @example
 * await inTransaction(db, async (trx) => {
 *   await trx.updateTable('users').set({ active: false }).where('id', '=', id).execute()
 *   await trx.updateTable('refresh_tokens').set({ revoked_at: sql`now()` }).where('user_id', '=', id).execute()
 * })
 */
export function inTransaction<T>(
  db: Kysely<DB>,
  work: (trx: Transaction<DB>) => Promise<T>,
  // For work that relies on each statement's own snapshot: READ COMMITTED even where the
  // database or role defaults to another level. A caller's transaction is checked by the work.
  options: { readCommitted?: boolean } = {},
): Promise<T> {
  if (db.isTransaction) return work(db as Transaction<DB>);
  return (options.readCommitted ? db.transaction().setIsolationLevel('read committed') : db.transaction()).execute(work);
}
