import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from '../../generated/db.js';
import { ValidationError } from '../errors.js';
import { withoutPlugins } from './query-function.js';

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
export async function inTransaction<T>(
  db: Kysely<DB>,
  work: (trx: Transaction<DB>) => Promise<T>,
  // For work that relies on each statement's own snapshot (`readCommittedFor` says what it
  // does, for the refusal): READ COMMITTED even where the database or role defaults to another
  // level, and a caller's transaction at another level is refused before the work changes anything.
  // `ownReadCommitted`: READ COMMITTED for a transaction of its own too, where a row another
  // transaction changed meanwhile should be read again rather than fail (SQLSTATE 40001), and a
  // caller's transaction keeps the caller's level (whose failure the caller retries).
  options: { readCommittedFor?: string; ownReadCommitted?: boolean } = {},
): Promise<T> {
  if (db.isTransaction) {
    const trx = db as Transaction<DB>;
    if (options.readCommittedFor !== undefined) await requireReadCommitted(trx, options.readCommittedFor);
    return work(trx);
  }
  const readCommitted = options.readCommittedFor !== undefined || options.ownReadCommitted === true;
  return (readCommitted ? db.transaction().setIsolationLevel('read committed') : db.transaction()).execute(work);
}

async function requireReadCommitted(trx: Transaction<DB>, what: string): Promise<void> {
  const { rows } = await sql<{ isolation: string }>`SELECT pg_catalog.current_setting('transaction_isolation') AS isolation`.execute(withoutPlugins(trx));
  const isolation = rows[0]!.isolation;
  if (isolation === 'read committed') return;
  throw new ValidationError(
    'db',
    `${what} needs a READ COMMITTED transaction, and this one is ${isolation.toUpperCase()}: its snapshot would predate ` +
      'what it waits for, and it would miss what that added; run it in a READ COMMITTED transaction',
  );
}
