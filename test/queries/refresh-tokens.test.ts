import { createHash, randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb, poolOf } from '../../src/db/create-db.js';
import {
  DbError,
  TokenExpiredError,
  TokenInvalidError,
  TokenReusedError,
  UserInactiveError,
  ValidationError,
} from '../../src/errors.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { newUser } from '../support/factories.js';
import { createTestDatabase, libraryUrl, useTestDatabase } from '../support/test-database.js';
import { eventually } from '../support/eventually.js';
import { useGateTrigger } from '../support/gate-trigger.js';

const testDb = useTestDatabase();
const unknownId = '01890000-0000-7000-8000-000000000000';
const day = 24 * 3600;

// A second pool on the same database, big enough for 50 truly concurrent callers.
let wideDb: Kysely<DB>;
beforeAll(() => {
  wideDb = createDb({ databaseUrl: testDb.url, maxConnections: 50, minConnections: 0 });
});
afterAll(async () => {
  await wideDb?.destroy();
});

const initialDefaults = refreshTokens.configure({});
afterEach(() => {
  refreshTokens.configure(initialDefaults);
});

interface TokenRow {
  id: string;
  user_id: string;
  token_hash: Buffer;
  family_id: string;
  parent_id: string | null;
  expires_at: Date;
  family_expires_at: Date;
  family_created_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
  device_info: unknown;
  last_used_at: Date | null;
  created_at: Date;
}

const hashOf = (token: string) => createHash('sha256').update(Buffer.from(token, 'base64url')).digest();

async function rowOf(token: string): Promise<TokenRow> {
  const { rows } = await sql<TokenRow>`SELECT * FROM refresh_tokens WHERE token_hash = ${hashOf(token)}`.execute(testDb.db);
  if (!rows[0]) throw new Error('no row for token');
  return rows[0];
}

async function familyRows(familyId: string): Promise<TokenRow[]> {
  const { rows } = await sql<TokenRow>`
    SELECT * FROM refresh_tokens WHERE family_id = ${familyId} ORDER BY created_at, id`.execute(testDb.db);
  return rows;
}

async function liveCount(where: { userId?: string; familyId?: string }): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM refresh_tokens
    WHERE revoked_at IS NULL
      AND (${where.userId ?? null}::uuid IS NULL OR user_id = ${where.userId ?? null}::uuid)
      AND (${where.familyId ?? null}::uuid IS NULL OR family_id = ${where.familyId ?? null}::uuid)`.execute(testDb.db);
  return rows[0]!.n;
}

async function dbNow(): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`SELECT now() AS now`.execute(testDb.db);
  return rows[0]!.now;
}

/** Moves a token's revocation `seconds` into the past (as if it happened then). */
async function revokedAgo(token: string, seconds: number): Promise<void> {
  await sql`UPDATE refresh_tokens SET revoked_at = now() - make_interval(secs => ${seconds})
            WHERE token_hash = ${hashOf(token)}`.execute(testDb.db);
}

/** Runs `work` and records every statement and parameter the pg driver was asked to send. */
async function sentToDatabase(work: () => Promise<unknown>): Promise<{ error: unknown; calls: unknown[][]; text: string }> {
  const spy = vi.spyOn(pg.Client.prototype, 'query');
  let error: unknown;
  try {
    await work();
  } catch (caught) {
    error = caught;
  }
  const calls = spy.mock.calls.map((call) => [...call]);
  spy.mockRestore();
  // Buffers as hex and base64url, so a raw token in any form shows up in the text.
  const text = JSON.stringify(calls, (_key, value: unknown) =>
    value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer'
      ? `${Buffer.from((value as { data: number[] }).data).toString('hex')} ${Buffer.from((value as { data: number[] }).data).toString('base64url')}`
      : value,
  );
  return { error, calls, text };
}

const secondsBetween = (later: Date, earlier: Date) => (later.getTime() - earlier.getTime()) / 1000;

describe('refreshTokens.configure', () => {
  it('has the documented defaults and changes them for later calls', async () => {
    expect(initialDefaults).toEqual({
      slidingTtlSeconds: 7 * day,
      absoluteTtlSeconds: 30 * day,
      reuseGraceSeconds: 10,
      revokedRetentionSeconds: 30 * day,
    });
    expect(refreshTokens.configure({ slidingTtlSeconds: 600 })).toMatchObject({ slidingTtlSeconds: 600, absoluteTtlSeconds: 30 * day });
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    expect(secondsBetween(issued.expiresAt, await dbNow())).toBeCloseTo(600, -1);
  });

  it.each([
    ['slidingTtlSeconds', { slidingTtlSeconds: 0 }],
    ['absoluteTtlSeconds', { absoluteTtlSeconds: 1.5 }],
    ['reuseGraceSeconds', { reuseGraceSeconds: -1 }],
    ['revokedRetentionSeconds', { revokedRetentionSeconds: -1 }],
    ['absoluteTtlSeconds', { slidingTtlSeconds: 31 * day }],
  ])('rejects a bad %s and keeps the previous defaults', (field, options) => {
    let error: unknown;
    try {
      refreshTokens.configure(options);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field });
    expect(refreshTokens.configure({})).toEqual(initialDefaults);
  });
});

describe('refreshTokens.issue', () => {
  it('returns a 43-character base64url token once and stores only its SHA-256', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { userAgent: 'Firefox' } });
    expect(issued).toEqual({ token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), familyId: expect.any(String), expiresAt: expect.any(Date) });
    expect(Buffer.from(issued.token, 'base64url')).toHaveLength(32);

    const row = await rowOf(issued.token);
    expect(row.token_hash.equals(hashOf(issued.token))).toBe(true);
    expect(row).toMatchObject({
      user_id: user.id,
      family_id: issued.familyId,
      parent_id: null,
      revoked_at: null,
      revoked_reason: null,
      last_used_at: null,
      device_info: { userAgent: 'Firefox' },
      expires_at: issued.expiresAt,
    });
    const now = await dbNow();
    expect(secondsBetween(row.expires_at, now)).toBeCloseTo(7 * day, -1);
    expect(secondsBetween(row.family_expires_at, now)).toBeCloseTo(30 * day, -1);
    expect(Math.abs(secondsBetween(row.family_created_at, now))).toBeLessThan(5);
  });

  it('starts a new family per login, with per-call TTLs', async () => {
    const user = await newUser(testDb.db);
    const a = await refreshTokens.issue(testDb.db, { userId: user.id, slidingTtlSeconds: 60, absoluteTtlSeconds: 120 });
    const b = await refreshTokens.issue(testDb.db, { userId: user.id });
    expect(a.familyId).not.toBe(b.familyId);
    expect(a.token).not.toBe(b.token);
    const row = await rowOf(a.token);
    expect(secondsBetween(row.expires_at, row.created_at)).toBe(60);
    expect(secondsBetween(row.family_expires_at, row.created_at)).toBe(120);
  });

  it('refuses an unknown or inactive user with UserInactiveError, storing nothing', async () => {
    await expect(refreshTokens.issue(testDb.db, { userId: unknownId })).rejects.toBeInstanceOf(UserInactiveError);
    const user = await newUser(testDb.db);
    await users.setActive(testDb.db, user.id, false);
    await expect(refreshTokens.issue(testDb.db, { userId: user.id })).rejects.toBeInstanceOf(UserInactiveError);
    expect(await refreshTokens.listSessions(testDb.db, user.id)).toEqual([]);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM refresh_tokens WHERE user_id = ${user.id}`.execute(testDb.db);
    expect(rows[0]!.n).toBe(0);
  });

  class DeviceClass {
    userAgent = 'x';
  }
  it.each([
    ['userId', { userId: 'not-a-uuid' }],
    ['deviceInfo', { deviceInfo: ['array'] }],
    ['deviceInfo', { deviceInfo: 'Firefox' }],
    ['deviceInfo', { deviceInfo: 42 }],
    ['deviceInfo', { deviceInfo: new Date() }],
    ['deviceInfo', { deviceInfo: new DeviceClass() }],
    ['deviceInfo', { deviceInfo: { nested: { at: new Date() } } }],
    ['deviceInfo', { deviceInfo: { fn: () => 1 } }],
    ['deviceInfo', { deviceInfo: { n: Number.NaN } }],
    ['deviceInfo', { deviceInfo: { list: ['a', undefined] } }],
    ['deviceInfo', { deviceInfo: { nul: 'a\u0000b' } }],
    ['deviceInfo', { deviceInfo: { big: 'x'.repeat(5000) } }],
    ['slidingTtlSeconds', { slidingTtlSeconds: 0 }],
    ['slidingTtlSeconds', { slidingTtlSeconds: -5 }],
    ['slidingTtlSeconds', { slidingTtlSeconds: 1.5 }],
    ['absoluteTtlSeconds', { absoluteTtlSeconds: 0 }],
    ['absoluteTtlSeconds', { slidingTtlSeconds: 100, absoluteTtlSeconds: 99 }],
  ])('rejects a bad %s with ValidationError before any query', async (field, overrides) => {
    const { error, calls } = await sentToDatabase(() =>
      refreshTokens.issue(testDb.db, { userId: unknownId, ...overrides } as refreshTokens.NewRefreshToken),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect(calls).toEqual([]);
  });

  it('accepts a deeply nested plain JSON object, including a null-prototype one', async () => {
    const user = await newUser(testDb.db);
    const deviceInfo = Object.assign(Object.create(null) as Record<string, unknown>, {
      ua: 'Safari',
      screen: { w: 390, h: 844, dpr: 3 },
      langs: ['en', null, true],
    });
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: deviceInfo as refreshTokens.DeviceInfo });
    expect((await rowOf(issued.token)).device_info).toEqual({ ...deviceInfo });
  });

  // DeviceInfo lets a member be undefined (a request header that was not sent), as a service
  // writes it; JSON.stringify leaves such a member out, and so does the stored value.
  it('leaves out a member that is undefined, at any depth, rather than fail the login', async () => {
    const user = await newUser(testDb.db);
    const headers: Record<string, string | undefined> = {};
    const issued = await refreshTokens.issue(testDb.db, {
      userId: user.id,
      deviceInfo: { userAgent: headers['user-agent'], client: { ip: undefined, app: 'web' } },
    });
    expect((await rowOf(issued.token)).device_info).toStrictEqual({ client: { app: 'web' } });
  });

  it('joins the caller’s transaction: a rollback leaves no token', async () => {
    const user = await newUser(testDb.db);
    let token = '';
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        token = (await refreshTokens.issue(trx, { userId: user.id })).token;
        throw new Error('login failed later');
      })
      .catch(() => undefined);
    await expect(refreshTokens.rotate(testDb.db, token)).rejects.toBeInstanceOf(TokenInvalidError);
  });
});

describe('refreshTokens.rotate', () => {
  it('revokes the live token as rotated and returns a child in the same family', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'A' } });
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    expect(rotated).toEqual({
      token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      userId: user.id,
      familyId: issued.familyId,
      expiresAt: expect.any(Date),
    });
    expect(rotated.token).not.toBe(issued.token);

    const [parent, child] = await familyRows(issued.familyId);
    expect(parent).toMatchObject({ revoked_reason: 'rotated', revoked_at: expect.any(Date), last_used_at: expect.any(Date) });
    expect(child).toMatchObject({
      parent_id: parent!.id,
      revoked_at: null,
      expires_at: rotated.expiresAt,
      family_expires_at: parent!.family_expires_at,
      family_created_at: parent!.family_created_at,
      device_info: { ua: 'A' },
      last_used_at: parent!.revoked_at,
    });
    expect(child!.token_hash.equals(hashOf(rotated.token))).toBe(true);
  });

  it('slides the expiry forward by the family’s own sliding TTL, using the database clock', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, slidingTtlSeconds: 3600, absoluteTtlSeconds: day });
    // As if issued 50 minutes ago: 10 minutes left.
    await sql`UPDATE refresh_tokens SET created_at = created_at - interval '50 minutes', expires_at = expires_at - interval '50 minutes'
              WHERE family_id = ${issued.familyId}`.execute(testDb.db);
    refreshTokens.configure({ slidingTtlSeconds: 60 }); // only new logins
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    const child = await rowOf(rotated.token);
    expect(secondsBetween(child.expires_at, child.created_at)).toBe(3600);
    expect(secondsBetween(rotated.expiresAt, await dbNow())).toBeCloseTo(3600, -1);
    // And the next rotation keeps the same window.
    const again = await rowOf((await refreshTokens.rotate(testDb.db, rotated.token)).token);
    expect(secondsBetween(again.expires_at, again.created_at)).toBe(3600);
  });

  it('never moves the expiry past the family’s absolute expiry', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, slidingTtlSeconds: 3600, absoluteTtlSeconds: day });
    // Late in the family's life: issued 30 minutes ago, so its expiry was already capped at the
    // family's, 90 seconds from now.
    await sql`UPDATE refresh_tokens SET created_at = now() - interval '30 minutes',
              family_expires_at = now() + interval '90 seconds', expires_at = now() + interval '90 seconds'
              WHERE family_id = ${issued.familyId}`.execute(testDb.db);
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    const child = await rowOf(rotated.token);
    expect(child.expires_at).toEqual(child.family_expires_at);
    expect(rotated.expiresAt).toEqual(child.family_expires_at);
    // The capped child rotates again, still capped.
    const next = await refreshTokens.rotate(testDb.db, rotated.token);
    expect(next.expiresAt).toEqual(child.family_expires_at);
  });

  it('replaces the device info when given and keeps it otherwise', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'old' } });
    const kept = await refreshTokens.rotate(testDb.db, issued.token);
    expect((await rowOf(kept.token)).device_info).toEqual({ ua: 'old' });
    const replaced = await refreshTokens.rotate(testDb.db, kept.token, { deviceInfo: { ua: 'new' } });
    expect((await rowOf(replaced.token)).device_info).toEqual({ ua: 'new' });
  });

  it('clears the device info when given null, as issue stores none for null', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'old' } });
    const cleared = await refreshTokens.rotate(testDb.db, issued.token, { deviceInfo: null });
    expect((await rowOf(cleared.token)).device_info).toBeNull();
    expect((await refreshTokens.listSessions(testDb.db, user.id))[0]!.deviceInfo).toBeNull();
    // Cleared, it stays so when a later rotation leaves it out.
    const next = await refreshTokens.rotate(testDb.db, cleared.token);
    expect((await rowOf(next.token)).device_info).toBeNull();
  });

  it('fails with TokenExpiredError once the sliding expiry passed, changing nothing', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE family_id = ${issued.familyId}`.execute(testDb.db);
    await expect(refreshTokens.rotate(testDb.db, issued.token)).rejects.toBeInstanceOf(TokenExpiredError);
    expect(await familyRows(issued.familyId)).toEqual([expect.objectContaining({ revoked_at: null, last_used_at: null })]);
  });

  it('fails with TokenExpiredError once the family’s absolute expiry passed, even for a revoked token', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    await sql`UPDATE refresh_tokens SET family_expires_at = now() - interval '1 second', expires_at = now() - interval '1 second'
              WHERE family_id = ${issued.familyId}`.execute(testDb.db);
    await expect(refreshTokens.rotate(testDb.db, rotated.token)).rejects.toBeInstanceOf(TokenExpiredError);
    await revokedAgo(issued.token, 3600);
    await expect(refreshTokens.rotate(testDb.db, issued.token)).rejects.toBeInstanceOf(TokenExpiredError);
  });

  it('fails with TokenInvalidError for an unknown token', async () => {
    const unknown = Buffer.alloc(32, 7).toString('base64url');
    await expect(refreshTokens.rotate(testDb.db, unknown)).rejects.toBeInstanceOf(TokenInvalidError);
  });

  it.each([
    ['empty', ''],
    ['too short', 'A'.repeat(42)],
    ['too long', 'A'.repeat(44)],
    ['padded base64', `${'A'.repeat(42)}=`],
    ['standard base64 characters', `${'A'.repeat(41)}+/`],
    ['whitespace', ` ${'A'.repeat(42)}`],
    ['non-canonical last character', `${'A'.repeat(42)}B`],
    ['not a string', 12345 as unknown as string],
    ['null', null as unknown as string],
  ])('rejects a malformed token (%s) with TokenInvalidError before any query', async (_case, token) => {
    for (const call of [() => refreshTokens.rotate(testDb.db, token), () => refreshTokens.revoke(testDb.db, token)]) {
      const { error, calls } = await sentToDatabase(call);
      expect(error).toBeInstanceOf(TokenInvalidError);
      expect(calls).toEqual([]);
    }
  });

  it.each([
    ['deviceInfo', { deviceInfo: ['not', 'an', 'object'] }],
    ['deviceInfo', { deviceInfo: { when: new Date() } }],
    ['reuseGraceSeconds', { reuseGraceSeconds: -1 }],
    ['reuseGraceSeconds', { reuseGraceSeconds: 0.5 }],
  ])('rejects a bad %s option with ValidationError before any query', async (field, options) => {
    const token = Buffer.alloc(32, 1).toString('base64url');
    const { error, calls } = await sentToDatabase(() =>
      refreshTokens.rotate(testDb.db, token, options as refreshTokens.RotateOptions),
    );
    expect(error).toMatchObject({ field });
    expect(calls).toEqual([]);
  });

  it('refuses a caller’s transaction (it could not promise the reuse revocation commits)', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const error = await testDb.db
      .transaction()
      .execute((trx) => refreshTokens.rotate(trx, issued.token))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field: 'db' });
    expect((await rowOf(issued.token)).revoked_at).toBeNull();
  });

  it('takes one statement on the usual path, locking the user row before the token row', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const { error, calls } = await sentToDatabase(() => refreshTokens.rotate(testDb.db, issued.token));
    expect(error).toBeUndefined();
    expect(calls).toHaveLength(1);
    // Sent as a named statement ({ name, text, values }) on a direct connection, else as text.
    const sent = calls[0]![0];
    const text = typeof sent === 'string' ? sent : (sent as { text: string }).text;
    expect(text).toMatch(/^with "owner" as \(.*for share\), "presented" as \(.*for update of "t"\), "revoked" as \(update/);
    expect(text).toContain('where "t"."token_hash" = $');
  });
});

describe('refreshTokens.rotate reuse detection', () => {
  async function rotatedPair(userId: string) {
    const issued = await refreshTokens.issue(testDb.db, { userId });
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    return { old: issued.token, current: rotated.token, familyId: issued.familyId };
  }

  it('revokes the whole family for reuse when a rotated token comes back after the grace, and commits it', async () => {
    const user = await newUser(testDb.db);
    const other = await refreshTokens.issue(testDb.db, { userId: user.id }); // another device
    const { old, current, familyId } = await rotatedPair(user.id);
    await revokedAgo(old, 11);

    const error = await refreshTokens.rotate(testDb.db, old).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenReusedError);
    expect(error).toMatchObject({ familyId, code: 'TOKEN_REUSED' });
    expect(await familyRows(familyId)).toEqual([
      expect.objectContaining({ revoked_reason: 'rotated' }),
      expect.objectContaining({ revoked_reason: 'reuse' }),
    ]);
    // The legitimate holder of the newest token is logged out too; the other device is not.
    await expect(refreshTokens.rotate(testDb.db, current)).rejects.toBeInstanceOf(TokenReusedError);
    expect((await rowOf(other.token)).revoked_at).toBeNull();
  });

  it('gives a token rotated less than the grace ago another token of the same family', async () => {
    const user = await newUser(testDb.db);
    const { old, current, familyId } = await rotatedPair(user.id);
    await revokedAgo(old, 4);
    const again = await refreshTokens.rotate(testDb.db, old, { reuseGraceSeconds: 5, deviceInfo: { tab: 2 } });
    expect(again).toMatchObject({ userId: user.id, familyId });
    expect(again.token).not.toBe(current);
    const sibling = await rowOf(again.token);
    expect(sibling).toMatchObject({ parent_id: (await rowOf(old)).id, revoked_at: null, device_info: { tab: 2 } });
    expect(secondsBetween(sibling.expires_at, sibling.created_at)).toBe(7 * day);
    // Both tabs keep working.
    expect((await rowOf(current)).revoked_at).toBeNull();
    await refreshTokens.rotate(testDb.db, current);
    await refreshTokens.rotate(testDb.db, again.token);
  });

  it("keeps the parent's device info in the grace's sibling when omitted, and clears it for null", async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'old' } });
    await refreshTokens.rotate(testDb.db, issued.token);
    const kept = await refreshTokens.rotate(testDb.db, issued.token, { reuseGraceSeconds: 60 });
    const cleared = await refreshTokens.rotate(testDb.db, issued.token, { reuseGraceSeconds: 60, deviceInfo: null });
    expect((await rowOf(kept.token)).device_info).toEqual({ ua: 'old' });
    expect((await rowOf(cleared.token)).device_info).toBeNull();
  });

  it('treats a token rotated more than the grace ago as reuse (boundary)', async () => {
    const user = await newUser(testDb.db);
    const { old, familyId } = await rotatedPair(user.id);
    await revokedAgo(old, 6);
    await expect(refreshTokens.rotate(testDb.db, old, { reuseGraceSeconds: 5 })).rejects.toBeInstanceOf(TokenReusedError);
    expect(await liveCount({ familyId })).toBe(0);
  });

  it('gives no grace at all with reuseGraceSeconds 0, from configure or per call', async () => {
    const user = await newUser(testDb.db);
    const a = await rotatedPair(user.id);
    await expect(refreshTokens.rotate(testDb.db, a.old, { reuseGraceSeconds: 0 })).rejects.toBeInstanceOf(TokenReusedError);
    refreshTokens.configure({ reuseGraceSeconds: 0 });
    const b = await rotatedPair(user.id);
    await expect(refreshTokens.rotate(testDb.db, b.old)).rejects.toBeInstanceOf(TokenReusedError);
    expect(await liveCount({ familyId: b.familyId })).toBe(0);
  });

  it('gives no grace to a token revoked by logout, even right away', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    expect(await refreshTokens.revoke(testDb.db, issued.token)).toBe(true);
    await expect(refreshTokens.rotate(testDb.db, issued.token)).rejects.toBeInstanceOf(TokenReusedError);
  });

  it('gives no grace to a rotated token whose family was since revoked by logout or reuse', async () => {
    const user = await newUser(testDb.db);
    const loggedOut = await rotatedPair(user.id);
    await refreshTokens.revoke(testDb.db, loggedOut.current);
    await expect(refreshTokens.rotate(testDb.db, loggedOut.old)).rejects.toBeInstanceOf(TokenReusedError);
    expect(await liveCount({ familyId: loggedOut.familyId })).toBe(0);

    const reused = await rotatedPair(user.id);
    await expect(refreshTokens.rotate(testDb.db, reused.current)).resolves.toBeDefined();
    await expect(refreshTokens.rotate(testDb.db, reused.current, { reuseGraceSeconds: 0 })).rejects.toBeInstanceOf(
      TokenReusedError,
    );
    // reused.old was rotated within the grace, but its family is now revoked for reuse.
    await expect(refreshTokens.rotate(testDb.db, reused.old)).rejects.toBeInstanceOf(TokenReusedError);
    expect(await liveCount({ familyId: reused.familyId })).toBe(0);
  });

  it('gives no grace when the family’s only unrevoked token has expired: an expired token keeps no session alive', async () => {
    const user = await newUser(testDb.db);
    const { old, current, familyId } = await rotatedPair(user.id);
    await revokedAgo(old, 2);
    await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = ${hashOf(current)}`.execute(
      testDb.db,
    );
    await expect(refreshTokens.rotate(testDb.db, old, { reuseGraceSeconds: 10 })).rejects.toBeInstanceOf(TokenReusedError);
    expect(await familyRows(familyId)).toHaveLength(2);
    expect(await liveCount({ familyId })).toBe(0);
  });

  it('gives a token revoked for reuse no grace', async () => {
    const user = await newUser(testDb.db);
    const { current } = await rotatedPair(user.id);
    await sql`UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'reuse' WHERE token_hash = ${hashOf(current)}`.execute(
      testDb.db,
    );
    await expect(refreshTokens.rotate(testDb.db, current)).rejects.toBeInstanceOf(TokenReusedError);
  });
});

describe('refreshTokens and users.setActive', () => {
  it('a deactivated user’s tokens fail with UserInactiveError and no new token is issued', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const rotated = await refreshTokens.rotate(testDb.db, (await refreshTokens.issue(testDb.db, { userId: user.id })).token);
    await users.setActive(testDb.db, user.id, false);

    expect(await liveCount({ userId: user.id })).toBe(0);
    expect((await rowOf(issued.token)).revoked_reason).toBe('deactivated');
    await expect(refreshTokens.rotate(testDb.db, issued.token)).rejects.toBeInstanceOf(UserInactiveError);
    await expect(refreshTokens.rotate(testDb.db, rotated.token)).rejects.toBeInstanceOf(UserInactiveError);
    await expect(refreshTokens.issue(testDb.db, { userId: user.id })).rejects.toBeInstanceOf(UserInactiveError);
    expect(await liveCount({ userId: user.id })).toBe(0);
  });

  it('a token revoked by deactivation counts as reuse once the user is reactivated', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    await users.setActive(testDb.db, user.id, false);
    await users.setActive(testDb.db, user.id, true);
    await expect(refreshTokens.rotate(testDb.db, issued.token)).rejects.toBeInstanceOf(TokenReusedError);
    await expect(refreshTokens.issue(testDb.db, { userId: user.id })).resolves.toBeDefined();
  });
});

describe('users.updatePassword and sessions', () => {
  async function passwordHashOf(userId: string): Promise<string> {
    const { rows } = await sql<{ password_hash: string }>`SELECT password_hash FROM users WHERE id = ${userId}`.execute(testDb.db);
    return rows[0]!.password_hash;
  }

  it('revokes every live session of the user (reason password_changed) with the new hash, and counts them', async () => {
    const user = await newUser(testDb.db);
    const bystander = await newUser(testDb.db);
    const laptop = await refreshTokens.issue(testDb.db, { userId: user.id });
    const phone = await refreshTokens.rotate(testDb.db, (await refreshTokens.issue(testDb.db, { userId: user.id })).token);
    const theirs = await refreshTokens.issue(testDb.db, { userId: bystander.id });

    expect(await users.updatePassword(testDb.db, user.id, 'new-hash')).toBe(2);

    expect(await passwordHashOf(user.id)).toBe('new-hash');
    expect(await liveCount({ userId: user.id })).toBe(0);
    expect((await rowOf(laptop.token)).revoked_reason).toBe('password_changed');
    expect((await rowOf(phone.token)).revoked_reason).toBe('password_changed');
    expect((await rowOf(theirs.token)).revoked_at).toBeNull();
    expect(await refreshTokens.listSessions(testDb.db, user.id)).toEqual([]);
  });

  it('keeps the session named by keepFamilyId, which goes on rotating', async () => {
    const user = await newUser(testDb.db);
    const current = await refreshTokens.issue(testDb.db, { userId: user.id });
    const elsewhere = await refreshTokens.issue(testDb.db, { userId: user.id });

    expect(await users.updatePassword(testDb.db, user.id, 'new-hash', { keepFamilyId: current.familyId })).toBe(1);

    expect((await rowOf(current.token)).revoked_at).toBeNull();
    expect((await rowOf(elsewhere.token)).revoked_reason).toBe('password_changed');
    await expect(refreshTokens.rotate(testDb.db, current.token)).resolves.toMatchObject({ familyId: current.familyId });
    await expect(users.updatePassword(testDb.db, user.id, 'h', { keepFamilyId: 'nope' })).rejects.toMatchObject({
      field: 'keepFamilyId',
    });
  });

  it('makes a token it revoked, presented later, fail as a logged-out one does: TokenReusedError, no new token', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const loggedOut = await refreshTokens.issue(testDb.db, { userId: user.id });
    await refreshTokens.revoke(testDb.db, loggedOut.token);
    await users.updatePassword(testDb.db, user.id, 'new-hash');

    for (const token of [issued.token, loggedOut.token]) {
      await expect(refreshTokens.rotate(testDb.db, token)).rejects.toBeInstanceOf(TokenReusedError);
    }
    expect(await familyRows(issued.familyId)).toEqual([expect.objectContaining({ revoked_reason: 'password_changed' })]);
    expect(await liveCount({ userId: user.id })).toBe(0);
  });

  it('joins the caller’s transaction: a rollback keeps the old hash and every session', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const before = await passwordHashOf(user.id);
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        await users.updatePassword(trx, user.id, 'new-hash');
        throw new Error('the service failed later');
      })
      .catch(() => undefined);
    expect(await passwordHashOf(user.id)).toBe(before);
    expect((await rowOf(issued.token)).revoked_at).toBeNull();
  });

  it('refuses an unknown user with NotFound, revoking nothing', async () => {
    await expect(users.updatePassword(testDb.db, unknownId, 'new-hash')).rejects.toMatchObject({ entity: 'user' });
  });

  it('a rotation that waits behind an uncommitted password change fails as reuse and leaves no live token', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    let commit!: () => void;
    const committing = new Promise<void>((resolve) => (commit = resolve));
    let changed!: () => void;
    const hasChanged = new Promise<void>((resolve) => (changed = resolve));
    const change = wideDb.transaction().execute(async (trx) => {
      await users.updatePassword(trx, user.id, 'new-hash');
      changed();
      await committing;
    });
    await hasChanged;
    let settled = false;
    const rotation = refreshTokens.rotate(wideDb, issued.token).finally(() => (settled = true));
    rotation.catch(() => undefined);
    try {
      await eventually(async () => {
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(testDb.db);
        return settled || rows[0]!.n > 0;
      }, 'the rotation waits for the user row');
      expect(settled).toBe(false);
    } finally {
      commit();
    }
    await change;
    await expect(rotation).rejects.toBeInstanceOf(TokenReusedError);
    expect(await liveCount({ userId: user.id })).toBe(0);
  });
});

describe('refreshTokens never expose a raw token', () => {
  it('sends no raw token to the database, stores none, and puts none in an error', async () => {
    const user = await newUser(testDb.db);
    const seen: string[] = [];
    const errors: unknown[] = [];
    const recorded = await sentToDatabase(async () => {
      const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
      const rotated = await refreshTokens.rotate(testDb.db, issued.token);
      seen.push(issued.token, rotated.token);
      errors.push(await refreshTokens.rotate(testDb.db, issued.token, { reuseGraceSeconds: 0 }).catch((e: unknown) => e));
      const second = await refreshTokens.issue(testDb.db, { userId: user.id });
      seen.push(second.token);
      await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE family_id = ${second.familyId}`.execute(
        testDb.db,
      );
      errors.push(await refreshTokens.rotate(testDb.db, second.token).catch((e: unknown) => e));
      await refreshTokens.revoke(testDb.db, second.token);
      const unknown = Buffer.alloc(32, 9).toString('base64url');
      seen.push(unknown);
      errors.push(await refreshTokens.rotate(testDb.db, unknown).catch((e: unknown) => e));
    });
    expect(recorded.error).toBeUndefined();
    expect(errors.map((e) => (e as DbError).code)).toEqual(['TOKEN_REUSED', 'TOKEN_EXPIRED', 'TOKEN_INVALID']);

    const { rows } = await sql<{ line: string }>`
      SELECT row_to_json(t)::text AS line FROM refresh_tokens t WHERE user_id = ${user.id}`.execute(testDb.db);
    const stored = rows.map((row) => row.line).join('\n');
    for (const token of seen) {
      const forms = [token, Buffer.from(token, 'base64url').toString('hex'), Buffer.from(token, 'base64url').toString('base64')];
      for (const form of forms) {
        expect(recorded.text).not.toContain(form);
        expect(stored).not.toContain(form);
        for (const error of errors) {
          expect(String((error as Error).message)).not.toContain(form);
          expect(JSON.stringify(error)).not.toContain(form);
        }
      }
    }
    expect(stored).toContain(hashOf(seen[0]!).toString('hex'));
  });
});

describe('refreshTokens.rotate under real concurrency', () => {
  async function fiftyAtOnce(token: string, reuseGraceSeconds: number) {
    // Warm the pool so the 50 calls meet at the row lock, not at connection setup.
    await Promise.all(Array.from({ length: 50 }, () => sql`SELECT 1`.execute(wideDb)));
    return Promise.allSettled(Array.from({ length: 50 }, () => refreshTokens.rotate(wideDb, token, { reuseGraceSeconds })));
  }

  async function expectPoolHealthy() {
    const { pool } = poolOf(wideDb);
    expect(pool.waitingCount).toBe(0);
    expect(pool.idleCount).toBe(pool.totalCount);
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND state LIKE 'idle in transaction%'`.execute(wideDb);
    expect(rows[0]!.n).toBe(0);
    await expect(sql`SELECT 1`.execute(wideDb)).resolves.toBeDefined();
  }

  it('with grace 0: exactly one of 50 rotations succeeds, 49 are reuse, the family ends revoked', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const results = await fiftyAtOnce(issued.token, 0);

    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(failures).toHaveLength(49);
    for (const failure of failures) expect(failure).toBeInstanceOf(TokenReusedError);
    // The winner's child was revoked for reuse by the losers.
    expect(await liveCount({ familyId: issued.familyId })).toBe(0);
    expect((await familyRows(issued.familyId)).map((row) => row.revoked_reason)).toEqual(['rotated', 'reuse']);
    await expectPoolHealthy();
  });

  it('with grace 10 s: all 50 rotations succeed with 50 distinct tokens of the same family', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const results = await fiftyAtOnce(issued.token, 10);

    const successes = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(new Set(successes.map((s) => s.token)).size).toBe(50);
    expect(new Set(successes.map((s) => s.familyId))).toEqual(new Set([issued.familyId]));
    expect(await liveCount({ familyId: issued.familyId })).toBe(50);
    await expectPoolHealthy();
  });

  it('a rotation racing users.setActive(false) never leaves a live token and never deadlocks', async () => {
    const tokens = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const user = await newUser(testDb.db);
        return { user, token: (await refreshTokens.issue(testDb.db, { userId: user.id })).token };
      }),
    );
    const outcomes = await Promise.allSettled(
      tokens.flatMap(({ user, token }) => [refreshTokens.rotate(wideDb, token), users.setActive(wideDb, user.id, false)]),
    );
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') expect(outcome.reason).toBeInstanceOf(UserInactiveError);
    }
    for (const { user } of tokens) expect(await liveCount({ userId: user.id })).toBe(0);
  });
});

// Deterministic races: a test-only trigger makes the insert of a token whose device info says
// { slow: true } wait on an advisory lock the test holds, so the issue or rotation stops with
// its locks taken and its new token not yet committed. The test then starts the revocation,
// waits until it is blocked behind those locks (or, were the locking broken, finished), and
// only then lets the insert go on.
describe('refreshTokens revocations that meet an issue or rotation in flight', () => {
  const gateKey = 73_100_042;
  useGateTrigger(() => testDb.db, { name: 'test_slow_token_insert', table: 'refresh_tokens', event: 'INSERT', when: "NEW.device_info ->> 'slow' = 'true'", key: gateKey });

  const slow = { slow: true };

  async function waitingOn(kind: 'advisory' | 'row'): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'
        AND (wait_event = 'advisory') = ${kind === 'advisory'}`.execute(testDb.db);
    return rows[0]!.n;
  }

  /** Runs `revocation` while `inFlight` holds its locks with its new token not yet inserted. */
  async function whileInserting(inFlight: () => Promise<unknown>, revocation: () => Promise<unknown>) {
    const gate = new pg.Client({ connectionString: testDb.directUrl });
    await gate.connect();
    await gate.query('SELECT pg_advisory_lock($1)', [gateKey]);
    let first: Promise<unknown> | undefined;
    let second: Promise<unknown> | undefined;
    try {
      first = inFlight();
      first.catch(() => undefined);
      await eventually(async () => (await waitingOn('advisory')) > 0, 'the insert waits at the gate');
      let settled = false;
      second = revocation().finally(() => (settled = true));
      second.catch(() => undefined);
      await eventually(async () => settled || (await waitingOn('row')) > 0, 'the revocation waits for the in-flight locks');
    } finally {
      await gate.query('SELECT pg_advisory_unlock($1)', [gateKey]);
      await gate.end();
    }
    return Promise.allSettled([first, second]);
  }

  async function rotatedPair(userId: string) {
    const issued = await refreshTokens.issue(testDb.db, { userId });
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    return { old: issued.token, current: rotated.token, familyId: issued.familyId };
  }

  it('a replay during a rotation revokes the child that rotation adds', async () => {
    const user = await newUser(testDb.db);
    const { old, current, familyId } = await rotatedPair(user.id);
    await revokedAgo(old, 60);
    const [rotation, replay] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => refreshTokens.rotate(wideDb, old),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(replay).toMatchObject({ status: 'rejected', reason: expect.any(TokenReusedError) });
    expect(await liveCount({ familyId })).toBe(0);
  });

  it('a logout during a rotation revokes the child that rotation adds', async () => {
    const user = await newUser(testDb.db);
    const { current, familyId } = await rotatedPair(user.id);
    const [rotation, logout] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => refreshTokens.revoke(wideDb, current),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(logout).toEqual({ status: 'fulfilled', value: true });
    expect(await liveCount({ familyId })).toBe(0);
  });

  it('a logout during a grace rotation revokes the token the grace adds', async () => {
    const user = await newUser(testDb.db);
    const { old, current, familyId } = await rotatedPair(user.id);
    const [grace, logout] = await whileInserting(
      () => refreshTokens.rotate(wideDb, old, { deviceInfo: slow }),
      () => refreshTokens.revoke(wideDb, current),
    );
    expect(grace.status).toBe('fulfilled');
    expect(logout.status).toBe('fulfilled');
    expect(await liveCount({ familyId })).toBe(0);
  });

  it('revokeAllForUser during a rotation revokes the child that rotation adds', async () => {
    const user = await newUser(testDb.db);
    const { current } = await rotatedPair(user.id);
    const [rotation, revokeAll] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => refreshTokens.revokeAllForUser(wideDb, user.id),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(revokeAll).toEqual({ status: 'fulfilled', value: 1 });
    expect(await liveCount({ userId: user.id })).toBe(0);
  });

  it('users.setActive(false) during a rotation revokes the child that rotation adds', async () => {
    const user = await newUser(testDb.db);
    const { current } = await rotatedPair(user.id);
    const [rotation, deactivation] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => users.setActive(wideDb, user.id, false),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(deactivation.status).toBe('fulfilled');
    expect(await liveCount({ userId: user.id })).toBe(0);
  });

  it('users.updatePassword during a rotation revokes the child that rotation adds', async () => {
    const user = await newUser(testDb.db);
    const { current, familyId } = await rotatedPair(user.id);
    const [rotation, change] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => users.updatePassword(wideDb, user.id, 'new-hash'),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(change).toEqual({ status: 'fulfilled', value: 1 });
    expect(await liveCount({ userId: user.id })).toBe(0);
    const child = (await familyRows(familyId)).at(-1)!;
    expect(child.revoked_reason).toBe('password_changed');
    const { token } = (rotation as PromiseFulfilledResult<{ token: string }>).value;
    await expect(refreshTokens.rotate(testDb.db, token)).rejects.toBeInstanceOf(TokenReusedError);
  });

  it('users.updatePassword keeping the rotating session revokes the others and leaves that rotation’s child live', async () => {
    const user = await newUser(testDb.db);
    const otherDevice = await refreshTokens.issue(testDb.db, { userId: user.id });
    const { current, familyId } = await rotatedPair(user.id);
    const [rotation, change] = await whileInserting(
      () => refreshTokens.rotate(wideDb, current, { deviceInfo: slow }),
      () => users.updatePassword(wideDb, user.id, 'new-hash', { keepFamilyId: familyId }),
    );
    expect(rotation.status).toBe('fulfilled');
    expect(change).toEqual({ status: 'fulfilled', value: 1 });
    expect((await rowOf(otherDevice.token)).revoked_reason).toBe('password_changed');
    expect(await liveCount({ familyId })).toBe(1);
    const { token } = (rotation as PromiseFulfilledResult<{ token: string }>).value;
    await expect(refreshTokens.rotate(testDb.db, token)).resolves.toMatchObject({ familyId });
  });

  it("users.updatePassword in a caller's REPEATABLE READ transaction is refused, rather than miss the token a login in flight adds", async () => {
    const user = await newUser(testDb.db);
    const [issued, change] = await whileInserting(
      () => refreshTokens.issue(wideDb, { userId: user.id, deviceInfo: slow }),
      // The snapshot is taken as the UPDATE starts, before it waits for the issue's lock.
      () => wideDb.transaction().setIsolationLevel('repeatable read').execute((trx) => users.updatePassword(trx, user.id, 'new-hash')),
    );
    expect(issued.status).toBe('fulfilled');
    expect(change).toMatchObject({ status: 'rejected', reason: expect.any(ValidationError) });
    expect((change as PromiseRejectedResult).reason.message).toContain('revoking sessions needs a READ COMMITTED transaction, and this one is REPEATABLE READ');
    // Refused whole: the password is the old one, and the session it would have missed is
    // there for the change to revoke when it is run again.
    expect((await users.findByEmail(testDb.db, user.email))?.passwordHash).not.toBe('new-hash');
    expect(await users.updatePassword(testDb.db, user.id, 'new-hash')).toBe(1);
    expect(await liveCount({ userId: user.id })).toBe(0);
  });

  it('users.setActive(false) during an issue revokes the token being issued', async () => {
    const user = await newUser(testDb.db);
    const [issued, deactivation] = await whileInserting(
      () => refreshTokens.issue(wideDb, { userId: user.id, deviceInfo: slow }),
      () => users.setActive(wideDb, user.id, false),
    );
    expect(issued.status).toBe('fulfilled');
    expect(deactivation.status).toBe('fulfilled');
    expect(await liveCount({ userId: user.id })).toBe(0);
  });
});

describe('revocations and the isolation level', () => {
  it("refuse a caller's REPEATABLE READ or SERIALIZABLE transaction, whose snapshot would predate the wait for the user row", async () => {
    const user = await newUser(testDb.db);
    const { token } = await refreshTokens.issue(testDb.db, { userId: user.id });
    const revocations: Array<[string, (trx: Kysely<DB>) => Promise<unknown>]> = [
      ['users.updatePassword', (trx) => users.updatePassword(trx, user.id, 'new-hash')],
      ['users.setActive(false)', (trx) => users.setActive(trx, user.id, false)],
      ['refreshTokens.revoke', (trx) => refreshTokens.revoke(trx, token)],
      ['refreshTokens.revokeAllForUser', (trx) => refreshTokens.revokeAllForUser(trx, user.id)],
    ];
    for (const level of ['repeatable read', 'serializable'] as const) {
      for (const [name, revocation] of revocations) {
        const error = await testDb.db.transaction().setIsolationLevel(level).execute(revocation).catch((e: unknown) => e);
        expect(error, `${name} in ${level}`).toBeInstanceOf(ValidationError);
        expect(error, `${name} in ${level}`).toMatchObject({ field: 'db' });
      }
    }
    expect(await liveCount({ userId: user.id })).toBe(1);
    // Refused before it changed anything: a caller that catches the error and commits keeps
    // the old password and an active user, not a change without its revocations.
    await testDb.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        await users.updatePassword(trx, user.id, 'new-hash').catch(() => undefined);
        await users.setActive(trx, user.id, false).catch(() => undefined);
      });
    expect((await users.findByEmail(testDb.db, user.email))?.passwordHash).not.toBe('new-hash');
    expect((await users.findById(testDb.db, user.id))?.active).toBe(true);
    // What revokes nothing is allowed at any level.
    await expect(testDb.db.transaction().setIsolationLevel('serializable').execute((trx) => users.setActive(trx, user.id, true))).resolves.toMatchObject({
      active: true,
    });
  });

  it("run their own transactions READ COMMITTED where the database's default is SERIALIZABLE", async () => {
    const database = await createTestDatabase();
    await sql`ALTER DATABASE ${sql.id(database.name)} SET default_transaction_isolation = 'serializable'`.execute(testDb.db);
    const serializableDb = createDb({ databaseUrl: libraryUrl(database), minConnections: 0 });
    try {
      const { rows } = await sql<{ level: string }>`SELECT current_setting('transaction_isolation') AS level`.execute(serializableDb);
      expect(rows).toEqual([{ level: 'serializable' }]);
      const user = await newUser(serializableDb);
      const first = await refreshTokens.issue(serializableDb, { userId: user.id });
      expect(await refreshTokens.revoke(serializableDb, first.token)).toBe(true);
      await refreshTokens.issue(serializableDb, { userId: user.id });
      expect(await refreshTokens.revokeAllForUser(serializableDb, user.id)).toBe(1);
      await refreshTokens.issue(serializableDb, { userId: user.id });
      expect(await users.updatePassword(serializableDb, user.id, 'new-hash')).toBe(1);
      await refreshTokens.issue(serializableDb, { userId: user.id });
      await users.setActive(serializableDb, user.id, false);
      await users.setActive(serializableDb, user.id, true);
      // Reuse detection revokes the family in a transaction of its own.
      const issued = await refreshTokens.issue(serializableDb, { userId: user.id });
      await refreshTokens.rotate(serializableDb, issued.token);
      await sql`UPDATE refresh_tokens SET revoked_at = now() - interval '1 hour' WHERE token_hash = ${hashOf(issued.token)}`.execute(serializableDb);
      await expect(refreshTokens.rotate(serializableDb, issued.token)).rejects.toBeInstanceOf(TokenReusedError);
      const { rows: live } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM refresh_tokens WHERE revoked_at IS NULL`.execute(serializableDb);
      expect(live).toEqual([{ n: 0 }]);
    } finally {
      await serializableDb.destroy();
      await database.drop();
    }
  });
});

describe('a grace rotation and a logout committed while it waited, under the database default level', () => {
  // rotate's first statement finds the presented token rotated within the grace; before its
  // grace transaction gets the user row, a logout of that session commits. The grace
  // transaction must read the family after that wait, whatever the database's default level.
  it.each(['repeatable read', 'serializable'] as const)('%s: the grace adds no token to the logged-out session, which is reuse', async (level) => {
    const database = await createTestDatabase();
    await sql`ALTER DATABASE ${sql.id(database.name)} SET default_transaction_isolation = ${sql.lit(level)}`.execute(testDb.db);
    const db = createDb({ databaseUrl: libraryUrl(database), maxConnections: 4, minConnections: 0 });
    // rotate runs on a pool of one connection: a checkout queued behind its first statement
    // gets the connection before its grace transaction does.
    const single = createDb({ databaseUrl: libraryUrl(database), maxConnections: 1, minConnections: 0 });
    const gate = new pg.Client({ connectionString: database.url });
    await gate.connect();
    const lockWaiters = async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(db)).rows[0]!.n;
    try {
      const user = await newUser(db);
      const issued = await refreshTokens.issue(db, { userId: user.id });
      const current = await refreshTokens.rotate(db, issued.token);
      // The presented token's row held, so that rotate's first statement waits for it.
      await gate.query('BEGIN');
      await gate.query('SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR KEY SHARE', [hashOf(issued.token)]);
      const rotation = refreshTokens.rotate(single, issued.token).catch((error: unknown) => error);
      await eventually(async () => (await lockWaiters()) === 1, "rotate's first statement waits for the token row");
      let holding!: () => void;
      const held = new Promise<void>((resolve) => (holding = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const hog = single.connection().execute(async () => {
        holding();
        await released;
      });
      await eventually(() => poolOf(single).pool.waitingCount === 1, 'the checkout is queued');
      await gate.query('COMMIT');
      await held; // rotate's first statement is done: the token is rotated, within the grace
      // The logout, in a READ COMMITTED transaction held open while the grace transaction starts.
      let loggedOut!: () => void;
      const revoked = new Promise<void>((resolve) => (loggedOut = resolve));
      let commit!: () => void;
      const mayCommit = new Promise<void>((resolve) => (commit = resolve));
      const logout = db
        .transaction()
        .setIsolationLevel('read committed')
        .execute(async (trx) => {
          const done = await refreshTokens.revoke(trx, current.token);
          loggedOut();
          await mayCommit;
          return done;
        });
      await revoked;
      release();
      await hog;
      await eventually(async () => (await lockWaiters()) === 1, 'the grace transaction waits for the user row');
      commit();
      expect(await logout).toBe(true);
      expect(await rotation).toBeInstanceOf(TokenReusedError);
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM refresh_tokens WHERE family_id = ${issued.familyId} AND revoked_at IS NULL`.execute(db);
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await gate.end();
      await single.destroy();
      await db.destroy();
      await database.drop();
    }
  });
});

describe('refreshTokens.revoke / revokeAllForUser', () => {
  it('revoke logs out the token’s whole session and is harmless when repeated', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    const rotated = await refreshTokens.rotate(testDb.db, issued.token);
    const other = await refreshTokens.issue(testDb.db, { userId: user.id });

    expect(await refreshTokens.revoke(testDb.db, rotated.token)).toBe(true);
    expect((await familyRows(issued.familyId)).map((row) => row.revoked_reason)).toEqual(['rotated', 'logout']);
    expect(await refreshTokens.revoke(testDb.db, rotated.token)).toBe(false);
    expect(await refreshTokens.revoke(testDb.db, Buffer.alloc(32, 3).toString('base64url'))).toBe(false);
    expect((await rowOf(other.token)).revoked_at).toBeNull();
  });

  it('revokeAllForUser logs out every session of that user only and counts the sessions', async () => {
    const user = await newUser(testDb.db);
    const bystander = await newUser(testDb.db);
    const a = await refreshTokens.issue(testDb.db, { userId: user.id });
    await refreshTokens.rotate(testDb.db, a.token); // still one session
    await refreshTokens.issue(testDb.db, { userId: user.id });
    const kept = await refreshTokens.issue(testDb.db, { userId: bystander.id });

    expect(await refreshTokens.revokeAllForUser(testDb.db, user.id)).toBe(2);
    expect(await liveCount({ userId: user.id })).toBe(0);
    const { rows } = await sql<{ reason: string }>`
      SELECT DISTINCT revoked_reason AS reason FROM refresh_tokens
      WHERE user_id = ${user.id} AND revoked_reason <> 'rotated'`.execute(testDb.db);
    expect(rows).toEqual([{ reason: 'logout' }]);
    expect((await rowOf(kept.token)).revoked_at).toBeNull();
    expect(await refreshTokens.revokeAllForUser(testDb.db, user.id)).toBe(0);
    expect(await refreshTokens.revokeAllForUser(testDb.db, unknownId)).toBe(0);
    await expect(refreshTokens.revokeAllForUser(testDb.db, 'nope')).rejects.toMatchObject({ field: 'userId' });
  });

  it('revoke joins the caller’s transaction: a rollback undoes the logout', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        await refreshTokens.revoke(trx, issued.token);
        throw new Error('later failure');
      })
      .catch(() => undefined);
    expect((await rowOf(issued.token)).revoked_at).toBeNull();
  });
});

describe('refreshTokens.listSessions', () => {
  it('lists the user’s live families, most recently used first, with device, login, last use and expiry', async () => {
    const user = await newUser(testDb.db);
    const fresh = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'fresh' } });
    const used = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { ua: 'old' } });
    const rotated = await refreshTokens.rotate(testDb.db, used.token, { deviceInfo: { ua: 'new' } });
    const loggedOut = await refreshTokens.issue(testDb.db, { userId: user.id });
    await refreshTokens.revoke(testDb.db, loggedOut.token);
    const expired = await refreshTokens.issue(testDb.db, { userId: user.id });
    await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE family_id = ${expired.familyId}`.execute(testDb.db);
    await refreshTokens.issue(testDb.db, { userId: (await newUser(testDb.db)).id });

    const usedRow = await rowOf(used.token);
    const freshRow = await rowOf(fresh.token);
    expect(await refreshTokens.listSessions(testDb.db, user.id)).toEqual([
      {
        familyId: used.familyId,
        deviceInfo: { ua: 'new' },
        createdAt: usedRow.family_created_at,
        lastUsedAt: usedRow.last_used_at,
        expiresAt: rotated.expiresAt,
      },
      { familyId: fresh.familyId, deviceInfo: { ua: 'fresh' }, createdAt: freshRow.family_created_at, lastUsedAt: null, expiresAt: fresh.expiresAt },
    ]);
    await expect(refreshTokens.listSessions(testDb.db, 'nope')).rejects.toMatchObject({ field: 'userId' });
  });
});

describe('refreshTokens.purgeExpired', () => {
  it('deletes expired and long-revoked tokens in batches, keeping what can still be replayed', async () => {
    const user = await newUser(testDb.db);
    const issueFor = () => refreshTokens.issue(testDb.db, { userId: user.id });
    const rowExists = async (token: string) =>
      (await sql`SELECT 1 FROM refresh_tokens WHERE token_hash = ${hashOf(token)}`.execute(testDb.db)).rows.length === 1;
    const hour = 3600;

    // Earlier tests left purgeable rows in this database: clear them so the count is ours.
    await refreshTokens.purgeExpired(testDb.db, { revokedRetentionSeconds: hour });

    const live = await issueFor();
    const expiredLive = await Promise.all([issueFor(), issueFor(), issueFor()]);
    for (const token of expiredLive) {
      await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE family_id = ${token.familyId}`.execute(testDb.db);
    }
    // Rotated two hours ago in a family that is still alive: kept for replay detection.
    const aliveFamily = await issueFor();
    const aliveChild = await refreshTokens.rotate(testDb.db, aliveFamily.token);
    await revokedAgo(aliveFamily.token, 2 * hour);
    // Logged out two hours ago: deleted; ten minutes ago: kept (within the retention).
    const oldLogout = await issueFor();
    await refreshTokens.revoke(testDb.db, oldLogout.token);
    await revokedAgo(oldLogout.token, 2 * hour);
    const recentLogout = await issueFor();
    await refreshTokens.revoke(testDb.db, recentLogout.token);
    await revokedAgo(recentLogout.token, 600);
    // A family past its absolute expiry: the old rotated parent goes, the child revoked
    // recently by logout stays (with its parent link cleared).
    const deadFamily = await issueFor();
    const deadChild = await refreshTokens.rotate(testDb.db, deadFamily.token);
    await refreshTokens.revoke(testDb.db, deadChild.token);
    await sql`UPDATE refresh_tokens SET family_expires_at = now() - interval '1 minute', expires_at = now() - interval '1 minute'
              WHERE family_id = ${deadFamily.familyId}`.execute(testDb.db);
    await revokedAgo(deadFamily.token, 2 * hour);
    await revokedAgo(deadChild.token, 600);

    const deleted = await refreshTokens.purgeExpired(testDb.db, { batchSize: 2, revokedRetentionSeconds: hour });
    expect(deleted).toBe(5);
    for (const token of [...expiredLive.map((t) => t.token), oldLogout.token, deadFamily.token]) {
      expect(await rowExists(token)).toBe(false);
    }
    for (const token of [live.token, aliveFamily.token, aliveChild.token, recentLogout.token, deadChild.token]) {
      expect(await rowExists(token)).toBe(true);
    }
    expect((await rowOf(deadChild.token)).parent_id).toBeNull();
    // The kept rotated token is still recognised as reuse.
    await expect(refreshTokens.rotate(testDb.db, aliveFamily.token)).rejects.toBeInstanceOf(TokenReusedError);
    expect(await refreshTokens.purgeExpired(testDb.db, { revokedRetentionSeconds: hour })).toBe(0);
  });

  it('ends a pass at a batch that finds fewer rows than batchSize: tokens that expire meanwhile are the next run\'s', async () => {
    const user = await newUser(testDb.db);
    await refreshTokens.purgeExpired(testDb.db);
    // Every token of these that is deleted brings an expired one in its place, as sessions
    // keep expiring while a purge runs: a purge that went on while it found any would never end.
    await sql`CREATE FUNCTION test_respawn_token() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at, device_info)
        VALUES (OLD.user_id, sha256(gen_random_uuid()::text::bytea), OLD.family_id, OLD.expires_at, OLD.family_expires_at, OLD.device_info);
        RETURN OLD;
      END $fn$`.execute(testDb.db);
    await sql`CREATE TRIGGER test_respawn_token AFTER DELETE ON refresh_tokens FOR EACH ROW
      WHEN (OLD.device_info ->> 'respawn' = 'true') EXECUTE FUNCTION test_respawn_token()`.execute(testDb.db);
    try {
      for (let i = 0; i < 3; i++) {
        const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { respawn: true } });
        await sql`UPDATE refresh_tokens SET expires_at = now() - interval '1 minute' WHERE token_hash = ${hashOf(issued.token)}`.execute(testDb.db);
      }

      expect(await refreshTokens.purgeExpired(testDb.db, { batchSize: 5 })).toBe(3);
    } finally {
      await sql`DROP TRIGGER test_respawn_token ON refresh_tokens`.execute(testDb.db);
      await sql`DROP FUNCTION test_respawn_token()`.execute(testDb.db);
    }
    // The three that came meanwhile, for the next run.
    expect(await refreshTokens.purgeExpired(testDb.db, { batchSize: 5 })).toBe(3);
  });

  describe('beside another transaction deleting tokens', () => {
    const gateKey = 73_100_978;
    // Holds a deletion of a token (a purge's, a cascade's) for tokens whose device info says
    // so: the deleting transaction keeps that row.
    useGateTrigger(() => testDb.db, { name: 'test_slow_token_delete', table: 'refresh_tokens', event: 'DELETE', when: "OLD.device_info ->> 'slowDelete' = 'true'", key: gateKey });

    /**
     * One rotation chain, revoked by rotation long ago in a family past its absolute expiry:
     * parent -> middle -> last, revoked 40, 50 and 35 days ago. The middle one is slow to
     * delete, and stored first, so that whoever deletes the family's rows takes it first.
     */
    async function expiredChain(userId: string): Promise<{ parent: string; middle: string; last: string }> {
      const [parent, middle, last] = [randomUUID(), randomUUID(), randomUUID()];
      // One statement: its foreign-key checks run at its end, when the parent exists.
      await sql`
        INSERT INTO refresh_tokens (id, user_id, token_hash, family_id, parent_id, expires_at, family_expires_at, revoked_at, revoked_reason, device_info)
        SELECT v.id, ${userId}, sha256(gen_random_uuid()::text::bytea), ${randomUUID()}, v.parent_id, now() - interval '2 days',
               now() - interval '1 day', now() - v.age, 'rotated', v.device_info
          FROM (VALUES (${middle}::uuid, ${parent}::uuid, interval '50 days', '{"slowDelete": true}'::jsonb),
                       (${parent}::uuid, NULL::uuid, interval '40 days', NULL::jsonb),
                       (${last}::uuid, ${middle}::uuid, interval '35 days', NULL::jsonb)) AS v (id, parent_id, age, device_info)`.execute(testDb.db);
      return { parent, middle, last };
    }

    async function remaining(ids: string[]): Promise<string[]> {
      const { rows } = await sql<{ id: string }>`SELECT id FROM refresh_tokens WHERE id = ANY (${ids}::uuid[]) ORDER BY id`.execute(testDb.db);
      return rows.map((row) => row.id);
    }

    async function lockWaiters(): Promise<number> {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event <> 'advisory'`.execute(testDb.db);
      return rows[0]!.n;
    }

    /** Runs `purge` while `holder` is held deleting the chain's middle row; it must end without waiting for a row. */
    async function purgeWhileHeld(holder: () => Promise<unknown>, purge: () => Promise<number>): Promise<unknown> {
      const gate = new pg.Client({ connectionString: testDb.directUrl });
      await gate.connect();
      let held: Promise<unknown> | undefined;
      try {
        await gate.query('SELECT pg_advisory_lock($1)', [gateKey]);
        held = holder().catch((error: unknown) => error);
        await eventually(
          async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'`.execute(testDb.db)).rows[0]!.n === 1,
          'the other deletion holds the middle row',
        );
        let settled = false;
        const purged = purge().then(
          (value) => value,
          (error: unknown) => error,
        );
        void purged.finally(() => (settled = true));
        await eventually(async () => settled || (await lockWaiters()) > 0, 'the purge ends, or waits for a row');
        expect(settled, 'the purge ended without waiting for a row the other deletion holds').toBe(true);
        return await purged;
      } finally {
        await gate.query('SELECT pg_advisory_unlock($1)', [gateKey]);
        await gate.end();
        await held;
      }
    }

    it('two at once (two instances of a nightly job) never wait for each other: what the other holds is left for the next run', async () => {
      const user = await newUser(testDb.db);
      // What earlier tests left, out of the way: the first purge below must take the middle row.
      await refreshTokens.purgeExpired(testDb.db, { revokedRetentionSeconds: 45 * day });
      const { parent, middle, last } = await expiredChain(user.id);
      // The first purge keeps revoked tokens for 45 days: only the middle row is its to delete.
      let first: Promise<number> | undefined;
      const purged = await purgeWhileHeld(
        () => (first = refreshTokens.purgeExpired(wideDb, { batchSize: 1, revokedRetentionSeconds: 45 * day })),
        // The second one's to delete are the parent and the last row; the parent's child (the
        // middle row) and the last row are the first purge's.
        () => refreshTokens.purgeExpired(wideDb, { revokedRetentionSeconds: 30 * day }),
      );
      expect(purged).toBe(0);
      expect(await first).toBe(1);
      expect(await remaining([parent, middle, last])).toEqual([parent, last].sort());
      expect(await refreshTokens.purgeExpired(wideDb, { revokedRetentionSeconds: 30 * day })).toBe(2);
      expect(await remaining([parent, middle, last])).toEqual([]);
    });

    it("during a user's deletion never waits for it: the deletion takes the user's tokens once the purge is done", async () => {
      const user = await newUser(testDb.db);
      const { parent, middle, last } = await expiredChain(user.id);
      const deleter = new pg.Client({ connectionString: testDb.directUrl });
      await deleter.connect();
      try {
        // The deletion's cascade takes the middle row first, and is held there.
        const purged = await purgeWhileHeld(
          () => deleter.query('DELETE FROM users WHERE id = $1', [user.id]),
          () => refreshTokens.purgeExpired(wideDb, { revokedRetentionSeconds: 30 * day }),
        );
        expect(purged).toEqual(expect.any(Number));
      } finally {
        await deleter.end();
      }
      expect(await remaining([parent, middle, last])).toEqual([]);
      expect(await testDb.db.selectFrom('users').select('id').where('id', '=', user.id).execute()).toEqual([]);
    });
  });

  it('keeps revoked tokens for the default retention of 30 days', async () => {
    const user = await newUser(testDb.db);
    const issued = await refreshTokens.issue(testDb.db, { userId: user.id });
    await refreshTokens.revoke(testDb.db, issued.token);
    await revokedAgo(issued.token, 29 * day);
    await refreshTokens.purgeExpired(testDb.db);
    expect((await rowOf(issued.token)).revoked_reason).toBe('logout');
    await revokedAgo(issued.token, 30 * day + 60);
    await refreshTokens.purgeExpired(testDb.db);
    await expect(rowOf(issued.token)).rejects.toThrow('no row');
  });

  it.each([
    ['batchSize', { batchSize: 0 }],
    ['batchSize', { batchSize: 10_001 }],
    ['batchSize', { batchSize: 2.5 }],
    ['revokedRetentionSeconds', { revokedRetentionSeconds: -1 }],
  ])('rejects a bad %s before any query', async (field, options) => {
    const { error, calls } = await sentToDatabase(() => refreshTokens.purgeExpired(testDb.db, options));
    expect(error).toMatchObject({ field });
    expect(calls).toEqual([]);
  });
});
