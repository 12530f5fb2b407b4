import { createHash, randomBytes } from 'node:crypto';
import { type Kysely, type RawBuilder, type Selectable, sql } from 'kysely';
import type { DB, RefreshTokens } from '../../generated/db.js';
import type { DeviceInfo } from '../device-info.js';
import { inTransaction } from '../db/in-transaction.js';
import { inLibrarySchema, libraryFunction } from '../db/library-schema.js';
import { prepareQuery } from '../db/prepared-query.js';
import { processWide } from '../db/process-wide.js';
import { queryFunction } from '../db/query-function.js';
import { serializedStatement } from '../db/serialized-statement.js';
import {
  TokenExpiredError,
  TokenInvalidError,
  TokenReusedError,
  UserInactiveError,
  ValidationError,
} from '../errors.js';
import { isStorableText, requireInput, requireOptions, requireSeconds, requireUuid } from '../validation.js';
import type { CamelCased } from './camel-cased.js';
import { noRowReturned } from './no-row-returned.js';
import { gatedByUserRow } from './user-row-gate.js';
import { revokeLiveTokens, type RevokedReason, revokingSessions, sessionCount } from './revoke-live-tokens.js';

/**
 * Rolling refresh tokens with rotation and reuse detection. A family is one login on one
 * device; every rotation revokes the presented token and adds a child to its family. Only
 * the SHA-256 of a token's 32 random bytes is stored, so a copy of the table cannot be
 * replayed, and no raw token is ever sent to the database, logged or put in an error.
 *
 * Locking protocol (what keeps concurrent rotations, logouts and deactivations from leaving
 * a live token behind, without deadlocks): every write takes the owning user's row first,
 * then token rows. Issuing and rotating hold the user row `FOR SHARE` until they commit;
 * every revocation (reuse, logout, `users.setActive(false)`, which updates the user row)
 * holds it exclusively and only then reads the family, so its snapshot contains every child
 * that a rotation in flight was about to add.
 */

export type { DeviceInfo } from '../device-info.js';
export type { RevokedReason } from './revoke-live-tokens.js';

/** Process-wide defaults of the token options; change them once with {@link configure}. */
export interface RefreshTokenDefaults {
  /** Lifetime of each token; every rotation moves the family's expiry this far ahead (default 7 days). */
  slidingTtlSeconds: number;
  /** Lifetime of a family from its login, which no rotation extends (default 30 days). */
  absoluteTtlSeconds: number;
  /** How long a token revoked by rotation still yields a fresh token, for concurrent refreshes (default 10 s). */
  reuseGraceSeconds: number;
  /** How long {@link purgeExpired} keeps revoked tokens, so that replays are recognised as reuse (default 30 days). */
  revokedRetentionSeconds: number;
}

export interface NewRefreshToken {
  userId: string;
  /** A plain JSON object of at most 4,096 characters as JSON; members that are undefined are left out, as JSON.stringify does. */
  deviceInfo?: DeviceInfo | null | undefined;
  /** Defaults to {@link RefreshTokenDefaults.slidingTtlSeconds}; kept by every rotation of the family. */
  slidingTtlSeconds?: number | undefined;
  /** Defaults to {@link RefreshTokenDefaults.absoluteTtlSeconds}; at least the sliding TTL. */
  absoluteTtlSeconds?: number | undefined;
}

export interface RotateOptions {
  /** Replaces the family's device info from this token on; `null` clears it; kept when omitted. */
  deviceInfo?: DeviceInfo | null | undefined;
  /** Defaults to {@link RefreshTokenDefaults.reuseGraceSeconds}; 0 turns the grace off. */
  reuseGraceSeconds?: number | undefined;
}

export interface PurgeOptions {
  /** Rows deleted per statement, 1 to 10,000 (default 1,000), so no statement holds many locks. */
  batchSize?: number | undefined;
  /** Defaults to {@link RefreshTokenDefaults.revokedRetentionSeconds}. */
  revokedRetentionSeconds?: number | undefined;
}

/** A new token: hand `token` to the client once; it cannot be read back. */
export interface IssuedToken {
  token: string;
  familyId: string;
  /** When this token expires unless rotated first (the database clock). */
  expiresAt: Date;
}

/** The token that replaces a rotated one, and whose session it continues. */
export interface RotatedToken extends IssuedToken {
  userId: string;
}

/** One live login of a user (a token family), as a "your devices" page shows it. */
export type Session = Pick<CamelCased<Selectable<RefreshTokens>>, 'familyId' | 'lastUsedAt' | 'expiresAt'> & {
  deviceInfo: DeviceInfo | null;
  /** When the user logged in. */
  createdAt: Date;
};


const day = 24 * 3600;
const builtInDefaults: Readonly<RefreshTokenDefaults> = Object.freeze({
  slidingTtlSeconds: 7 * day,
  absoluteTtlSeconds: 30 * day,
  reuseGraceSeconds: 10,
  revokedRetentionSeconds: 30 * day,
});
// Process-wide: configure() through one copy of this package (its ESM or its CommonJS build)
// holds for the other copy's functions too.
const settings = processWide('refresh-token-defaults', () => ({ defaults: builtInDefaults }));

const tokenBytes = 32;
const tokenPattern = /^[A-Za-z0-9_-]{43}$/;
const deviceInfoMaxLength = 4096;
const deviceInfoMaxDepth = 16;
const maxBatchSize = 10_000;

/**
 * Sets the process-wide defaults of the token options (validated together: the absolute TTL
 * must be at least the sliding one) and returns the defaults now in force; options passed to
 * a call still win. `configure({})` only reads them.
 *
 * @example refreshTokens.configure({ slidingTtlSeconds: 24 * 3600, reuseGraceSeconds: 5 })
 */
export function configure(changes: { [K in keyof RefreshTokenDefaults]?: RefreshTokenDefaults[K] | undefined }): Readonly<RefreshTokenDefaults> {
  const options = requireOptions('options', changes);
  const next = {
    slidingTtlSeconds: requireSeconds('slidingTtlSeconds', options.slidingTtlSeconds ?? settings.defaults.slidingTtlSeconds, 1),
    absoluteTtlSeconds: requireSeconds('absoluteTtlSeconds', options.absoluteTtlSeconds ?? settings.defaults.absoluteTtlSeconds, 1),
    reuseGraceSeconds: requireSeconds('reuseGraceSeconds', options.reuseGraceSeconds ?? settings.defaults.reuseGraceSeconds, 0),
    revokedRetentionSeconds: requireSeconds(
      'revokedRetentionSeconds',
      options.revokedRetentionSeconds ?? settings.defaults.revokedRetentionSeconds,
      0,
    ),
  };
  requireAbsoluteAtLeastSliding(next.slidingTtlSeconds, next.absoluteTtlSeconds);
  settings.defaults = Object.freeze(next);
  return settings.defaults;
}

/**
 * Starts a token family (a login on one device) for an active user and returns its first
 * token, which exists only in the result. An unknown or inactive user gets
 * `UserInactiveError` (both mean "may not hold a session"). The user row is locked
 * `FOR SHARE` in the same statement, so a concurrent `users.setActive(false)` either waits
 * and then revokes this token, or commits first and the issue fails. Joins the caller's
 * transaction.
 *
 * @example
 * const { token, expiresAt } = await refreshTokens.issue(db, { userId, deviceInfo: { userAgent } })
 * // SQL: with "owner" as (select "users"."id" from "users" where "users"."id" = $1 and "users"."active" = true for share)
 * //      insert into "refresh_tokens" (…) select … from "owner" returning …
 */
export const issue = queryFunction(async function issue(db: Kysely<DB>, login: NewRefreshToken): Promise<IssuedToken> {
  const input = requireInput('input', login);
  const userId = requireUuid('userId', input.userId);
  const deviceInfo = deviceInfoJson(input.deviceInfo);
  const slidingTtl = requireSeconds('slidingTtlSeconds', input.slidingTtlSeconds ?? settings.defaults.slidingTtlSeconds, 1);
  const absoluteTtl = requireSeconds('absoluteTtlSeconds', input.absoluteTtlSeconds ?? settings.defaults.absoluteTtlSeconds, 1);
  requireAbsoluteAtLeastSliding(slidingTtl, absoluteTtl);
  const { token, hash } = newToken();
  const [row] = (await serializedStatement(db, () => issueStatement.execute(db, { userId, hash, slidingTtl, absoluteTtl, deviceInfo }))).rows;
  if (!row) throw new UserInactiveError();
  return { token, ...row };
});

// Every login runs it: built and compiled once (see prepareQuery).
const issueStatement = prepareQuery(
  (db, p: { userId: string; hash: Buffer; slidingTtl: number; absoluteTtl: number; deviceInfo: string | null }) =>
    db
      .with('owner', (qb) =>
        qb.selectFrom('users').select('users.id').where('users.id', '=', p.userId).where('users.active', '=', true).forShare(),
      )
      .insertInto('refresh_tokens')
      .columns(['user_id', 'token_hash', 'family_id', 'expires_at', 'family_expires_at', 'device_info'])
      .expression((eb) =>
        eb
          .selectFrom('owner')
          .select([
            'owner.id',
            sql<Buffer>`cast(${p.hash} as bytea)`.as('token_hash'),
            sql<string>`${libraryFunction('uuid_generate_v7')}()`.as('family_id'),
            sql<Date>`now() + make_interval(secs => ${p.slidingTtl})`.as('expires_at'),
            sql<Date>`now() + make_interval(secs => ${p.absoluteTtl})`.as('family_expires_at'),
            sql<DeviceInfo | null>`cast(${p.deviceInfo} as jsonb)`.as('device_info'),
          ]),
      )
      .returning(['refresh_tokens.family_id as familyId', 'refresh_tokens.expires_at as expiresAt']),
);

/**
 * Exchanges a refresh token for a new one in the same family; the family's expiry slides
 * forward by the sliding TTL it was issued with, never past its absolute expiry. Every time
 * decision uses the database clock. Outcomes other than success are typed errors:
 * - `TokenInvalidError`: malformed (rejected before any query) or unknown (or purged);
 * - `UserInactiveError`: the user is deactivated, whatever the token's state (deactivation
 *   revoked it with reason `deactivated`);
 * - `TokenExpiredError`: the token's sliding expiry or its family's absolute expiry passed;
 * - `TokenReusedError`: the token was already revoked. Every token of the family is revoked
 *   (reason `reuse`) and that revocation is committed before the error is thrown. The one
 *   exception is the grace: a token revoked *by rotation* less than `reuseGraceSeconds` ago,
 *   in a family that still has a live token, yields another fresh token (two tabs refreshing
 *   at once). Tokens revoked for reuse, logout, deactivation or a password change, or whose
 *   family has been revoked since, get no grace. A token revoked by deactivation and presented
 *   after the user was reactivated, or revoked by `users.updatePassword` and presented later,
 *   counts as reuse, as a logged-out token does: that session has ended (its family is
 *   already revoked, so the reuse revocation changes nothing more).
 *
 * `db` must be the root `Kysely`, not a transaction (`ValidationError` on field `db`
 * otherwise): the function commits the reuse revocation itself even though it then throws,
 * which it could not promise inside a caller's transaction that rolls back on the error,
 * and it orders its own locks and transactions to stay deadlock-free. A rotation needs
 * nothing else in its transaction. The usual case is one statement (one round trip): the
 * user row is locked `FOR SHARE`, the presented token `FOR UPDATE`, and the live token is
 * revoked and its child inserted in the same statement; the grace and reuse paths run one
 * more short transaction.
 *
 * @example
 * try {
 *   const { token, userId, expiresAt } = await refreshTokens.rotate(db, cookies.refreshToken, { deviceInfo: { userAgent } })
 * } catch (error) {
 *   if (error instanceof TokenReusedError) alertSecurityLog(error.familyId)
 *   throw unauthorized()
 * }
 * // SQL: with "owner" as (… for share), "presented" as (… for update of "t"),
 * //      "revoked" as (update "refresh_tokens" … returning …), "child" as (insert into "refresh_tokens" … returning …)
 * //      select … from "presented"
 */
export const rotate = queryFunction(async function rotate(db: Kysely<DB>, token: string, rotateOptions?: RotateOptions): Promise<RotatedToken> {
  if (db.isTransaction) {
    throw new ValidationError(
      'db',
      'rotate needs the root database, not a transaction: it commits a reuse revocation before throwing',
    );
  }
  const presentedHash = hashOf(token);
  const options = requireOptions('options', rotateOptions);
  // SQL NULL keeps the parent's device info; JSON's null (which no stored value is) clears it.
  const deviceInfo = options.deviceInfo === null ? clearedDeviceInfo : deviceInfoJson(options.deviceInfo);
  const grace = requireSeconds('reuseGraceSeconds', options.reuseGraceSeconds ?? settings.defaults.reuseGraceSeconds, 0);
  const next = newToken();

  // Under a REPEATABLE READ or SERIALIZABLE default, a rotation that lost the token to another
  // fails for serialization instead of seeing it rotated: run again, it sees the reuse.
  const [outcome] = (await serializedStatement(db, () => rotateStatement.execute(db, { presentedHash, grace, nextHash: next.hash, deviceInfo }))).rows;

  if (!outcome) throw new TokenInvalidError();
  const { userId, familyId } = outcome;
  if (outcome.childExpiresAt) return { token: next.token, userId, familyId, expiresAt: outcome.childExpiresAt };
  if (!outcome.active) throw new UserInactiveError();
  if (outcome.familyExpired) throw new TokenExpiredError();
  if (outcome.revokedReason === null) {
    if (outcome.expired) throw new TokenExpiredError();
    // Live, unexpired and the user active, yet not rotated: cannot happen under the row lock.
    throw new TokenInvalidError();
  }

  // The grace transaction decides (with its own, later now()); this only spares it when the
  // grace cannot apply. With grace 0 a waiter's now() can predate the winner's revoked_at.
  if (grace > 0 && outcome.revokedReason === ('rotated' satisfies RevokedReason) && outcome.revokedWithinGrace) {
    const sibling = await grantGrace(db, { presentedId: outcome.id, userId, familyId, grace, hash: next.hash, deviceInfo });
    if (sibling === 'inactive') throw new UserInactiveError();
    if (sibling) return { token: next.token, userId, familyId, expiresAt: sibling };
  }

  // Reuse: committed in its own transaction, then reported.
  await inTransaction(db, (trx) => revokeSessions(trx, { userId, familyId }, 'reuse'), revokingSessions);
  throw new TokenReusedError(familyId);
});

/**
 * Logs out the session the token belongs to: every live token of its family is revoked with
 * reason `logout`. Returns whether anything was revoked (false for an unknown token or an
 * already revoked session, so a repeated logout is harmless); a malformed token is
 * `TokenInvalidError`. Joins the caller's transaction, at READ COMMITTED only (see revokeAllForUser).
 *
 * @example await refreshTokens.revoke(db, cookies.refreshToken)
 */
export const revoke = queryFunction(async function revoke(db: Kysely<DB>, token: string): Promise<boolean> {
  const hash = hashOf(token);
  return inTransaction(
    db,
    async (trx) => {
      const found = await inLibrarySchema(trx)
        .selectFrom('refresh_tokens')
        .select(['user_id', 'family_id'])
        .where('token_hash', '=', hash)
        .executeTakeFirst();
      if (!found) return false;
      const revoked = await revokeSessions(trx, { userId: found.user_id, familyId: found.family_id }, 'logout');
      return revoked.length > 0;
    },
    revokingSessions,
  );
});

/**
 * Logs the user out everywhere: every live token is revoked with reason `logout`. Returns the
 * number of sessions (token families) that were live; 0 for an unknown user. Joins the
 * caller's transaction, which must be READ COMMITTED (else `ValidationError`): the tokens are
 * read after the wait for the user row, by a statement whose snapshot must be taken then.
 *
 * @example const sessions = await refreshTokens.revokeAllForUser(db, userId) // "log out everywhere"
 */
export const revokeAllForUser = queryFunction(async function revokeAllForUser(db: Kysely<DB>, userId: string): Promise<number> {
  const id = requireUuid('userId', userId);
  return gatedByUserRow(db, id, () =>
    inTransaction(
      db,
      async (trx) => {
        const revoked = await revokeSessions(trx, { userId: id }, 'logout');
        return sessionCount(revoked);
      },
      revokingSessions,
    ),
  );
});

/**
 * The user's live sessions (families with an unrevoked, unexpired token), most recently used
 * first: device info (as of the last rotation), login time, last refresh (null until the
 * first one) and current expiry.
 *
 * @example
 * for (const session of await refreshTokens.listSessions(db, userId)) console.log(session.deviceInfo, session.lastUsedAt)
 */
export const listSessions = queryFunction(async function listSessions(db: Kysely<DB>, userId: string): Promise<Session[]> {
  const id = requireUuid('userId', userId);
  return (
    inLibrarySchema(db)
      .selectFrom('refresh_tokens')
      .select((eb) => [
        'family_id as familyId',
        sql<DeviceInfo | null>`(array_agg(device_info order by created_at desc))[1]`.as('deviceInfo'),
        eb.fn.min('family_created_at').as('createdAt'),
        eb.fn.max('last_used_at').as('lastUsedAt'),
        eb.fn.max('expires_at').as('expiresAt'),
      ])
      // Served by the index refresh_tokens_user_id_revoked_at_idx.
      .where('user_id', '=', id)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', sql<Date>`now()`)
      .groupBy('family_id')
      .orderBy(sql`max(coalesce(last_used_at, family_created_at))`, 'desc')
      .orderBy('family_id')
      .execute()
  );
});

/**
 * Deletes tokens that can never be used again, in batches of `batchSize` rows per statement
 * (each its own short transaction unless `db` is one), and returns how many it deleted:
 * - unrevoked tokens past their expiry;
 * - revoked tokens older than `revokedRetentionSeconds`, except tokens revoked by rotation
 *   whose family can still be used: those stay until the family's absolute expiry, so that
 *   replaying one is always recognised as reuse. Within the retention, a replayed revoked
 *   token is reported as reuse rather than as unknown.
 * Rows locked by another transaction (a rotation in progress, another purge, a user being
 * deleted) are skipped, and so is a row whose child is locked: the next run takes them. A
 * deleted parent leaves its children with `parent_id` null (the foreign key's `ON DELETE SET
 * NULL`). So two purges at once, or a purge and a user's deletion, never wait for each other
 * and never deadlock.
 *
 * @example const deleted = await refreshTokens.purgeExpired(db, { batchSize: 5000 }) // nightly job
 */
export const purgeExpired = queryFunction(async function purgeExpired(db: Kysely<DB>, purgeOptions?: PurgeOptions): Promise<number> {
  const options = requireOptions('options', purgeOptions);
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > maxBatchSize) {
    throw new ValidationError('batchSize', `must be a whole number from 1 to ${maxBatchSize}`);
  }
  const retention = requireSeconds(
    'revokedRetentionSeconds',
    options.revokedRetentionSeconds ?? settings.defaults.revokedRetentionSeconds,
    0,
  );
  let deleted = 0;
  // Two passes, each served by its own index (expires_at, revoked_at), rather than one OR.
  const passes = [
    sql<boolean>`revoked_at is null and expires_at < now()`,
    sql<boolean>`revoked_at < now() - make_interval(secs => ${retention})
      and (revoked_reason <> ${'rotated' satisfies RevokedReason} or family_expires_at < now())`,
  ];
  for (const condition of passes) {
    // A pass ends at the first batch that finds fewer than batchSize rows to pick, as tokens
    // that expire meanwhile are the next run's; or that deletes none of those it picked (each
    // left for a child another transaction holds), which the next batch would pick again.
    for (;;) {
      const batch = await purgeBatch(db, condition, batchSize).executeTakeFirstOrThrow(noRowReturned);
      deleted += Number(batch.deleted);
      if (Number(batch.picked) < batchSize || Number(batch.deleted) === 0) break;
    }
  }
  return deleted;
});

// One batch: picks up to `batchSize` rows that nobody holds, and deletes those whose children
// it could lock too. Deleting a parent updates its children (ON DELETE SET NULL), which would
// wait for a child that another transaction holds; and that one could be waiting for a row of
// this batch: two purges that took alternate links of one rotation chain, or a user's deletion
// whose cascade took one link, deadlocked. With every row the statement will write locked
// up front, without waiting (SKIP LOCKED), it never waits for anyone.
// The picked rows' children are read once, and the check of each picked row asks that set,
// not the table again (a child of a picked row not among those locked): priced as a lookup
// in the table per picked row, that check became a scan of the whole table from about 2,000
// rows a batch. With 2 million tokens a batch of 2,000 took about 400 ms instead of 55 ms,
// and one of 5,000 about 500 ms instead of 250 ms (PostgreSQL 17; 1,000 took about 30 ms
// either way). The planner may still scan the table for the set itself on a small table.
function purgeBatch(db: Kysely<DB>, condition: RawBuilder<boolean>, batchSize: number) {
  return inLibrarySchema(db)
    .with(
      (cte) => cte('picked').materialized(),
      (qc) => qc.selectFrom('refresh_tokens').select('id').where(condition).limit(batchSize).forUpdate().skipLocked(),
    )
    .with(
      (cte) => cte('children').materialized(),
      (qc) =>
        qc
          .selectFrom('refresh_tokens')
          .select(['id', 'parent_id'])
          .where('parent_id', 'in', (eb) => eb.selectFrom('picked').select('picked.id')),
    )
    .with(
      (cte) => cte('held_children').materialized(),
      (qc) =>
        qc
          .selectFrom('refresh_tokens')
          .select('id')
          .where('id', 'in', (eb) => eb.selectFrom('children').select('children.id'))
          .forUpdate()
          .skipLocked(),
    )
    .with('deleted', (qc) =>
      qc
        .deleteFrom('refresh_tokens')
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('picked')
            .select('picked.id')
            // No child that another transaction holds.
            .where(({ not, exists, selectFrom }) =>
              not(
                exists(
                  selectFrom('children')
                    .select('children.id')
                    .whereRef('children.parent_id', '=', 'picked.id')
                    .where(({ not, exists, selectFrom }) =>
                      not(exists(selectFrom('held_children').select('held_children.id').whereRef('held_children.id', '=', 'children.id'))),
                    ),
                ),
              ),
            ),
        )
        .returning('refresh_tokens.id'),
    )
    .selectNoFrom(({ selectFrom, fn }) => [
      selectFrom('picked').select(fn.countAll<string>().as('n')).as('picked'),
      selectFrom('deleted').select(fn.countAll<string>().as('n')).as('deleted'),
    ]);
}

const childColumns = [
  'user_id',
  'token_hash',
  'family_id',
  'parent_id',
  'expires_at',
  'family_expires_at',
  'family_created_at',
  'device_info',
  'last_used_at',
] as const;

// The usual path of rotate is one statement whose text never changes: it is built and
// compiled once (see prepareQuery), and each call only substitutes the values.
interface RotateParams {
  presentedHash: Buffer;
  grace: number;
  nextHash: Buffer;
  deviceInfo: string | null;
}

/**
 * Locks the user row `FOR SHARE` (before the token, as every revocation does: one lock
 * order everywhere, so no deadlock with users.setActive or a logout), then the presented
 * token `FOR UPDATE`; if the token is live, unexpired and its user active, revokes it
 * (reason rotated) and inserts its child, all in one statement. Returns the token's state
 * (every time comparison on the database clock) and the child's expiry, if one was made.
 */
const rotateStatement = prepareQuery((db, p: RotateParams) =>
  db
    .with('owner', (qb) =>
      qb
        .selectFrom('users')
        .select(['users.id', 'users.active'])
        .where('users.id', '=', (eb) =>
          eb.selectFrom('refresh_tokens').select('refresh_tokens.user_id').where('refresh_tokens.token_hash', '=', p.presentedHash),
        )
        .forShare(),
    )
    .with('presented', (qb) =>
      qb
        .selectFrom('refresh_tokens as t')
        .innerJoin('owner', 'owner.id', 't.user_id')
        .select([
          't.id',
          't.user_id as userId',
          't.family_id as familyId',
          't.revoked_reason as revokedReason',
          'owner.active',
          sql<boolean>`t.family_expires_at <= now()`.as('familyExpired'),
          sql<boolean>`t.expires_at <= now()`.as('expired'),
          sql<boolean>`t.revoked_at > now() - make_interval(secs => ${p.grace})`.as('revokedWithinGrace'),
          sql<boolean>`owner.active and t.revoked_at is null and t.expires_at > now() and t.family_expires_at > now()`.as(
            'rotatable',
          ),
        ])
        .where('t.token_hash', '=', p.presentedHash)
        .forUpdate(['t']),
    )
    .with('revoked', (qb) =>
      qb
        .updateTable('refresh_tokens')
        .set({ revoked_at: sql`now()`, revoked_reason: 'rotated' satisfies RevokedReason, last_used_at: sql`now()` })
        .where('refresh_tokens.id', '=', (eb) =>
          eb.selectFrom('presented').select('presented.id').where('presented.rotatable', '=', true),
        )
        .returning([
          'refresh_tokens.id',
          'refresh_tokens.user_id',
          'refresh_tokens.family_id',
          'refresh_tokens.created_at',
          'refresh_tokens.expires_at',
          'refresh_tokens.family_expires_at',
          'refresh_tokens.family_created_at',
          'refresh_tokens.device_info',
        ]),
    )
    .with('child', (qb) =>
      qb
        .insertInto('refresh_tokens')
        .columns(childColumns)
        .expression((eb) =>
          eb
            .selectFrom('revoked')
            .select([
              'revoked.user_id',
              sql<Buffer>`cast(${p.nextHash} as bytea)`.as('token_hash'),
              'revoked.family_id',
              'revoked.id as parent_id',
              // The parent's own window (expires_at - created_at) is the family's sliding TTL:
              // issue and rotate set both in one statement. When the absolute expiry capped the
              // parent, it caps the child as well.
              sql<Date>`least(now() + (revoked.expires_at - revoked.created_at), revoked.family_expires_at)`.as(
                'expires_at',
              ),
              'revoked.family_expires_at',
              'revoked.family_created_at',
              sql<DeviceInfo | null>`nullif(coalesce(cast(${p.deviceInfo} as jsonb), revoked.device_info), ${sql.lit(clearedDeviceInfo)}::jsonb)`.as(
                'device_info',
              ),
              sql<Date>`now()`.as('last_used_at'),
            ]),
        )
        .returning('refresh_tokens.expires_at'),
    )
    .selectFrom('presented')
    .selectAll('presented')
    .select((eb) => eb.selectFrom('child').select('child.expires_at').as('childExpiresAt')),
  { outsideTransactionsOf: 'rotate' },
);


/**
 * The grace path of {@link rotate}, in its own transaction: with the user row locked (so no
 * revocation is in flight), adds a sibling to the family if the presented token is still
 * within the grace and the family still has a live token (unrevoked and unexpired). Returns the sibling's expiry,
 * `undefined` when the grace does not apply (then it is reuse), or `'inactive'`.
 */
async function grantGrace(
  db: Kysely<DB>,
  input: { presentedId: string; userId: string; familyId: string; grace: number; hash: Buffer; deviceInfo: string | null },
): Promise<Date | 'inactive' | undefined> {
  const { presentedId, userId, familyId, grace, hash, deviceInfo } = input;
  // READ COMMITTED whatever the database's default, as the revocations run: at REPEATABLE READ
  // or SERIALIZABLE the snapshot would be the first statement's, taken before its wait for
  // the user row, and the insert would not see a logout committed during that wait.
  return db.transaction().setIsolationLevel('read committed').execute(async (trx) => {
    const owner = await inLibrarySchema(trx).selectFrom('users').select('active').where('id', '=', userId).forShare().executeTakeFirst();
    if (!owner?.active) return 'inactive';
    // A new statement, hence a snapshot taken after the lock: it sees every revocation and
    // every child committed before this transaction got the user row.
    const sibling = await inLibrarySchema(trx)
      .insertInto('refresh_tokens')
      .columns(childColumns)
      .expression((eb) =>
        eb
          .selectFrom('refresh_tokens as p')
          .select([
            'p.user_id',
            sql<Buffer>`cast(${hash} as bytea)`.as('token_hash'),
            'p.family_id',
            'p.id as parent_id',
            sql<Date>`least(now() + (p.expires_at - p.created_at), p.family_expires_at)`.as('expires_at'),
            'p.family_expires_at',
            'p.family_created_at',
            sql<DeviceInfo | null>`nullif(coalesce(cast(${deviceInfo} as jsonb), p.device_info), ${sql.lit(clearedDeviceInfo)}::jsonb)`.as('device_info'),
            sql<Date>`now()`.as('last_used_at'),
          ])
          .where('p.id', '=', presentedId)
          .where('p.revoked_reason', '=', 'rotated' satisfies RevokedReason)
          .where(sql<boolean>`p.revoked_at > now() - make_interval(secs => ${grace})`)
          .where('p.family_expires_at', '>', sql<Date>`now()`)
          .where((eb) =>
            eb.exists(
              eb
                .selectFrom('refresh_tokens as live')
                .select(sql`1`.as('one'))
                .where('live.family_id', '=', familyId)
                .where('live.revoked_at', 'is', null)
                // An unrevoked token past its expiry no longer keeps the session alive.
                .where('live.expires_at', '>', sql<Date>`now()`),
            ),
          ),
      )
      .returning('refresh_tokens.expires_at')
      .executeTakeFirst();
    return sibling?.expires_at;
  });
}

/**
 * Revokes every live token of a user, or of one family of theirs. The user row is locked
 * first (`FOR NO KEY UPDATE`, which waits for every issue or rotation of this user in
 * flight, as `users.setActive` does by updating it), and the tokens are read by a later
 * statement, whose snapshot therefore holds every child those rotations added: at READ
 * COMMITTED, which its callers make sure of (`inTransaction(…, revokingSessions)`).
 */
async function revokeSessions(
  trx: Kysely<DB>,
  scope: { userId: string; familyId?: string },
  reason: RevokedReason,
): Promise<Array<{ family_id: string }>> {
  await inLibrarySchema(trx).selectFrom('users').select('id').where('id', '=', scope.userId).forNoKeyUpdate().execute();
  return revokeLiveTokens(trx, scope, reason);
}

function newToken(): { token: string; hash: Buffer } {
  const bytes = randomBytes(tokenBytes);
  return { token: bytes.toString('base64url'), hash: sha256(bytes) };
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}

// A token is exactly the canonical base64url form of 32 bytes; anything else is rejected
// before a query, with an error that never repeats the input.
function hashOf(token: unknown): Buffer {
  if (typeof token !== 'string' || !tokenPattern.test(token)) throw new TokenInvalidError();
  const bytes = Buffer.from(token, 'base64url');
  if (bytes.length !== tokenBytes || bytes.toString('base64url') !== token) throw new TokenInvalidError();
  return sha256(bytes);
}

function requireAbsoluteAtLeastSliding(slidingTtl: number, absoluteTtl: number): void {
  if (absoluteTtl < slidingTtl) throw new ValidationError('absoluteTtlSeconds', 'must be at least slidingTtlSeconds');
}

// A rotation's device info that clears the parent's: JSON's null, which deviceInfoJson never gives.
const clearedDeviceInfo = 'null';

/** The device info as JSON text for a `jsonb` parameter, or null; a plain JSON object only. */
function deviceInfoJson(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  const tooLong = () => new ValidationError('deviceInfo', `must be at most ${deviceInfoMaxLength} characters as JSON`);
  // Every value takes at least a character of the JSON, a string or key its own length: the
  // walk stops once they exceed it, rather than go through a request's ten million items first.
  const budget = { characters: deviceInfoMaxLength };
  if (!isPlainObject(value) || !isJsonValue(value, 0, budget)) {
    if (budget.characters < 0) throw tooLong();
    throw new ValidationError('deviceInfo', 'must be a plain JSON object, its text without NUL characters or lone surrogates');
  }
  const text = JSON.stringify(value);
  if (text.length > deviceInfoMaxLength) throw tooLong();
  return text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

// jsonb cannot hold a NUL character or a lone surrogate, and JSON has no NaN, Infinity, Date or class
// instances: reject them here instead of failing in PostgreSQL or changing silently. A member
// that is undefined is left out, as JSON.stringify leaves it out: DeviceInfo allows it, so that
// `{ userAgent: req.headers['user-agent'] }` type-checks, and a request without that header
// must not fail the login. Undefined in an array (JSON.stringify's null), a hole too, is refused.
function isJsonValue(value: unknown, depth: number, budget: { characters: number }): boolean {
  if (depth > deviceInfoMaxDepth || --budget.characters < 0) return false;
  if (value === null || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (typeof value === 'string') return (budget.characters -= value.length) >= 0 && isStorableText(value);
  if (Array.isArray(value)) {
    // Every slot, a hole too (JSON.stringify's null, refused as undefined is): a character at least.
    if (value.length > budget.characters) {
      budget.characters = -1;
      return false;
    }
    for (let index = 0; index < value.length; index += 1) if (!isJsonValue(value[index], depth + 1, budget)) return false;
    return true;
  }
  if (isPlainObject(value)) {
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      const item = value[key];
      // A member left out still costs the walk: a character each, so that a million of them end it.
      if (item === undefined) {
        if (--budget.characters < 0) return false;
        continue;
      }
      if ((budget.characters -= key.length) < 0 || !isStorableText(key) || !isJsonValue(item, depth + 1, budget)) return false;
    }
    return true;
  }
  return false;
}
