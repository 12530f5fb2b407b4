import { afterAll, describe, expect, it } from 'vitest';
import * as api from '../../src/index.js';
import { DbError } from '../../src/errors.js';
import { poolOf } from '../../src/db/create-db.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// A bounded, reproducible fuzz run: every exported query function, called many times with
// arguments drawn (by a fixed seed) from a pool of odd and hostile values mixed with valid ones.
// Whatever a call does, a failure must be a DbError, and no message may repeat a secret.

const testDb = useTestDatabase();
const seed = 20_261_126;
const callsPerFunction = 200;
const secret = 'secret-marker-7f3a';

const initialDefaults = api.refreshTokens.configure({});
afterAll(() => {
  api.refreshTokens.configure(initialDefaults);
});

// mulberry32: small, fast and deterministic.
function randomSource(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const fieldNames = [
  'email', 'passwordHash', 'displayName', 'slug', 'userId', 'notes', 'resetAt', 'text', 'createdBy', 'phraseId',
  'adminId', 'suggestionId', 'reason', 'id', 'active', 'limit', 'offset', 'search', 'includeInactive',
  'excludeUserId', 'grantedBy', 'keepFamilyId', 'deviceInfo', 'slidingTtlSeconds', 'absoluteTtlSeconds',
  'reuseGraceSeconds', 'batchSize', 'revokedRetentionSeconds', 'displayName',
];

describe('every exported query function under a fuzz of bad arguments', () => {
  it(`throws only DbErrors, never repeating a secret (seed ${seed}, ${callsPerFunction} calls per function)`, async () => {
    const db = testDb.db;
    const user = await newUser(db);
    const admin = await newAdmin(db);
    const phrase = await api.phrases.create(db, { text: `Fuzz phrase ${secret}`, createdBy: admin.id });
    const suggestion = await api.phraseSuggestions.submit(db, user.id, 'A fuzzed suggestion');
    const issued = await api.refreshTokens.issue(db, { userId: user.id });

    const scalars: unknown[] = [
      undefined, null, true, false, 0, -1, 1, 1.5, 20, NaN, Infinity, -Infinity, 2 ** 63, 1e21, 1e300, -0, 5n,
      '', ' ', '\u0000', 'a\u0000b', '\uD800', 'x\uDC00', 'x'.repeat(100_000), 'not-a-uuid', `$argon2id$${secret}`,
      '01890000-0000-7000-8000-000000000000', user.id, admin.id, phrase.id, suggestion.id, issued.familyId,
      user.slug, 'Bad Slug', user.email, 'a\u0000@example.org', 'admin', 'user', issued.token, Buffer.alloc(32).toString('base64url'),
      Symbol('s'), () => 1, [], [1, 2], new Date(NaN), new Date(-8.64e15), new Date(8.64e15), new Date(Date.UTC(-4713, 10, 24)),
      new Date(), Object.create(null),
    ];
    const random = randomSource(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const value = (depth: number): unknown => {
      const roll = random();
      if (depth < 2 && roll < 0.35) {
        const object: Record<string, unknown> = {};
        for (let i = Math.floor(random() * 5); i > 0; i--) object[pick(fieldNames)] = value(depth + 1);
        return object;
      }
      if (depth < 2 && roll < 0.4) return { [pick(['\u0000', '\uD800', 'ok'])]: value(depth + 1) };
      return pick(scalars);
    };

    const functions = Object.entries(api).flatMap(([namespace, exported]) =>
      ['users', 'refreshTokens', 'incidentTimers', 'phrases', 'phraseSuggestions'].includes(namespace)
        ? Object.entries(exported as Record<string, unknown>).flatMap(([name, fn]) =>
            typeof fn === 'function' ? [[`${namespace}.${name}`, fn as (...args: unknown[]) => unknown] as const] : [],
          )
        : [],
    );
    expect(functions.length).toBeGreaterThanOrEqual(39);

    const offenders: string[] = [];
    let calls = 0;
    let failures = 0;
    for (const [name, fn] of functions) {
      for (let i = 0; i < callsPerFunction; i++) {
        const args = Array.from({ length: Math.floor(random() * 4) }, () => value(0));
        calls += 1;
        try {
          await fn(db, ...args);
        } catch (error) {
          failures += 1;
          if (!(error instanceof DbError)) offenders.push(`${name}: ${String(error)}`);
          else if (error.message.includes(secret)) offenders.push(`${name}: message repeats a secret: ${error.message}`);
        }
      }
    }
    expect(offenders).toEqual([]);
    expect(calls).toBe(functions.length * callsPerFunction);
    expect(failures).toBeGreaterThan(calls / 2);

    // Nothing leaked: every connection is back in the pool and none waits.
    const { pool } = poolOf(db);
    expect(pool.waitingCount).toBe(0);
    expect(pool.idleCount).toBe(pool.totalCount);
  });
});
