import { type Kysely, type Selectable, sql } from 'kysely';
import type { DB, RefreshTokens } from '../../generated/db.js';
import { inLibrarySchema } from '../db/library-schema.js';

/** Why a refresh token was revoked: the values `refresh_tokens.revoked_reason`'s CHECK allows (generated). */
export type RevokedReason = NonNullable<Selectable<RefreshTokens>['revoked_reason']>;

/** Whose live tokens to revoke: a user's, one family of theirs, or all but one family. */
export interface RevokeScope {
  userId: string;
  familyId?: string | undefined;
  exceptFamilyId?: string | undefined;
}

/**
 * The transaction every revocation runs in (`inTransaction`'s options): READ COMMITTED, the
 * caller's refused at another level, for the reason {@link revokeLiveTokens} gives.
 */
export const revokingSessions = { readCommittedFor: 'revoking sessions' } as const;

/**
 * Revokes the live (unrevoked) refresh tokens in `scope` with `reason` and returns the family
 * of each. The caller holds the user row locked first (updated, or `FOR NO KEY UPDATE`), so
 * that every issue or rotation of this user in flight has finished and this later statement
 * sees the children they added: in a READ COMMITTED transaction, whose later statement takes
 * a snapshot of its own (the callers run it through `inTransaction(…, revokingSessions)`:
 * under REPEATABLE READ or SERIALIZABLE the snapshot predates the wait, and a login in flight
 * during a password change would keep its session). The one statement behind logout, reuse detection, a
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
