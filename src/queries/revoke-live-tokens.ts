import { type Kysely, type Selectable, sql } from 'kysely';
import type { DB, RefreshTokens } from '../../generated/db.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { ValidationError } from '../errors.js';

/** Why a refresh token was revoked: the values `refresh_tokens.revoked_reason`'s CHECK allows (generated). */
export type RevokedReason = NonNullable<Selectable<RefreshTokens>['revoked_reason']>;

/** Whose live tokens to revoke: a user's, one family of theirs, or all but one family. */
export interface RevokeScope {
  userId: string;
  familyId?: string;
  exceptFamilyId?: string;
}

/**
 * The transaction's isolation level, to select with the statement that locks the user row
 * (no round trip of its own) and hand to {@link requireReadCommitted}.
 */
export const transactionIsolation = sql<string>`pg_catalog.current_setting('transaction_isolation')`;

/**
 * Refuses to revoke in a transaction other than READ COMMITTED (a caller's, or one the
 * database's default made so). The revocation must see the tokens that the issues and
 * rotations it waited for (on the user row) added; under REPEATABLE READ or SERIALIZABLE its
 * snapshot was taken before that wait, and a login in flight during a password change would
 * keep its session, without a serialization failure to say so (the user row was only locked,
 * not changed).
 *
 * @example requireReadCommitted(user.isolation)
 */
export function requireReadCommitted(isolation: string): void {
  if (isolation === 'read committed') return;
  throw new ValidationError(
    'db',
    `revoking sessions needs a READ COMMITTED transaction, and this one is ${isolation.toUpperCase()}: its snapshot predates ` +
      'the wait for the user row, so it would miss a session that a login in flight adds; run it in a READ COMMITTED transaction',
  );
}

/**
 * Revokes the live (unrevoked) refresh tokens in `scope` with `reason` and returns the family
 * of each. The caller holds the user row locked first (updated, or `FOR NO KEY UPDATE`), so
 * that every issue or rotation of this user in flight has finished and this later statement
 * sees the children they added: in a READ COMMITTED transaction, which the caller checked
 * with {@link requireReadCommitted}. The one statement behind logout, reuse detection, a
 * deactivation and a password change.
 *
 * @example const revoked = await revokeLiveTokens(trx, { userId }, 'deactivated') // [{ family_id }, …]
 */
export function revokeLiveTokens(trx: Kysely<DB>, scope: RevokeScope, reason: RevokedReason): Promise<Array<{ family_id: string }>> {
  return inLibrarySchema(trx)
    .updateTable('refresh_tokens')
    .set({ revoked_at: sql`now()`, revoked_reason: reason })
    .where('user_id', '=', scope.userId)
    .where('revoked_at', 'is', null)
    .$if(scope.familyId !== undefined, (qb) => qb.where('family_id', '=', scope.familyId!))
    .$if(scope.exceptFamilyId !== undefined, (qb) => qb.where('family_id', '<>', scope.exceptFamilyId!))
    .returning('family_id')
    .execute();
}

/** How many sessions (token families) a revocation ended. @example sessionCount(await revokeLiveTokens(…)) // 2 */
export function sessionCount(revoked: ReadonlyArray<{ family_id: string }>): number {
  return new Set(revoked.map((row) => row.family_id)).size;
}
