import type { Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { ValidationError } from '../../src/errors.js';
import * as incidentTimers from '../../src/queries/incident-timers.js';
import * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import * as phrases from '../../src/queries/phrases.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { offlineDb } from '../support/offline-db.js';

// Input that JavaScript accepts but PostgreSQL rejects (or silently changes), class by class,
// on every function each class reaches. Every call runs on offlineDb, whose every query fails:
// a ValidationError naming the field proves the input was refused before any query.

const id = '01890000-0000-7000-8000-000000000001';
const other = '01890000-0000-7000-8000-000000000002';
const wellFormedToken = Buffer.alloc(32, 7).toString('base64url');

type Call = (db: Kysely<DB>) => unknown;
type Case = [name: string, field: string, call: Call];

async function refusal(call: Call): Promise<unknown> {
  try {
    await call(offlineDb);
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectRefused(cases: Case[]) {
  it.each(cases)('%s refuses it as a ValidationError naming %s', async (_name, field, call) => {
    const error = await refusal(call);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });
}

// Every text input: [function, field, call with that field set to `text`].
const textInputs: Array<[string, string, (db: Kysely<DB>, text: string) => unknown]> = [
  ['users.create', 'email', (db, t) => users.create(db, { email: `a${t}@example.org`, passwordHash: 'h', displayName: 'D', slug: 's' })],
  ['users.create', 'passwordHash', (db, t) => users.create(db, { email: 'a@example.org', passwordHash: `h${t}`, displayName: 'D', slug: 's' })],
  ['users.create', 'displayName', (db, t) => users.create(db, { email: 'a@example.org', passwordHash: 'h', displayName: `D${t}`, slug: 's' })],
  ['users.create', 'slug', (db, t) => users.create(db, { email: 'a@example.org', passwordHash: 'h', displayName: 'D', slug: `s${t}` })],
  ['users.findByEmail', 'email', (db, t) => users.findByEmail(db, `a${t}@example.org`)],
  ['users.findBySlug', 'slug', (db, t) => users.findBySlug(db, `s${t}`)],
  ['users.updateProfile', 'displayName', (db, t) => users.updateProfile(db, id, { displayName: `D${t}` })],
  ['users.updateProfile', 'slug', (db, t) => users.updateProfile(db, id, { slug: `s${t}` })],
  ['users.updatePassword', 'passwordHash', (db, t) => users.updatePassword(db, id, `h${t}`)],
  ['users.isSlugAvailable', 'slug', (db, t) => users.isSlugAvailable(db, `s${t}`)],
  ['users.grantRole', 'role', (db, t) => users.grantRole(db, id, `admin${t}`)],
  ['users.revokeRole', 'role', (db, t) => users.revokeRole(db, id, `admin${t}`)],
  ['incidentTimers.create', 'notes', (db, t) => incidentTimers.create(db, { userId: id, notes: `n${t}` })],
  ['incidentTimers.update', 'notes', (db, t) => incidentTimers.update(db, { id, userId: other }, { notes: `n${t}` })],
  ['incidentTimers.latestPublicBySlug', 'slug', (db, t) => incidentTimers.latestPublicBySlug(db, `s${t}`)],
  ['phrases.randomForSlug', 'slug', (db, t) => phrases.randomForSlug(db, `s${t}`)],
  ['phrases.listForUser', 'search', (db, t) => phrases.listForUser(db, id, { search: `q${t}` })],
  ['phrases.list', 'search', (db, t) => phrases.list(db, id, { search: `q${t}` })],
  ['phrases.create', 'text', (db, t) => phrases.create(db, { text: `p${t}`, createdBy: id })],
  ['phrases.update', 'text', (db, t) => phrases.update(db, { phraseId: id, adminId: other }, { text: `p${t}` })],
  ['phraseSuggestions.submit', 'text', (db, t) => phraseSuggestions.submit(db, id, `p${t}`)],
  ['phraseSuggestions.approve', 'reason', (db, t) => phraseSuggestions.approve(db, { suggestionId: id, adminId: other, reason: `r${t}` })],
  ['phraseSuggestions.reject', 'reason', (db, t) => phraseSuggestions.reject(db, { suggestionId: id, adminId: other, reason: `r${t}` })],
  ['refreshTokens.issue', 'deviceInfo', (db, t) => refreshTokens.issue(db, { userId: id, deviceInfo: { userAgent: `u${t}` } })],
  ['refreshTokens.issue', 'deviceInfo', (db, t) => refreshTokens.issue(db, { userId: id, deviceInfo: { [`key${t}`]: 'u' } })],
  ['refreshTokens.rotate', 'deviceInfo', (db, t) => refreshTokens.rotate(db, wellFormedToken, { deviceInfo: { nested: [{ ua: `u${t}` }] } })],
];

describe('a NUL character (\\u0000) in any text', () => {
  expectRefused(textInputs.map(([name, field, call]) => [name, field, (db) => call(db, '\u0000')]));
});

describe('a lone surrogate in any text (jsonb rejects it; text would store U+FFFD instead)', () => {
  expectRefused(textInputs.flatMap(([name, field, call]) => [
    [`${name} (\\uD800)`, field, (db) => call(db, '\uD800')],
    [`${name} (\\uDC00)`, field, (db) => call(db, 'x\uDC00')],
  ]));
});

// A request's megabytes are refused by their length before anything reads them through (a
// 30-million-character search was split into an array first: 0.3 s of the event loop, 350 MB).
describe('text far past its limit, refused by its length before it is read', () => {
  const huge = '\u0000'.padEnd(1_000_000, 'x');
  it.each(textInputs.filter(([, field]) => field !== 'deviceInfo'))('%s (%s)', async (_name, field, call) => {
    // Its characters are never iterated: counting them ([...text]) copied them all first.
    const iterate = String.prototype[Symbol.iterator];
    let iterated = 0;
    String.prototype[Symbol.iterator] = function (this: string) {
      if (this.length >= huge.length - 1) iterated += 1;
      return iterate.call(this);
    };
    let error: unknown;
    try {
      error = await refusal((db) => call(db, huge));
    } finally {
      String.prototype[Symbol.iterator] = iterate;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ field, message: expect.stringMatching(/must be at most \d+ characters/) });
    expect(iterated).toBe(0);
  });

  // Each slot, a hole too, and each member, one left out too, counts: a walk through them all
  // took 0.8 s for ten million items, 7 s for fifty million holes.
  it.each([
    ['ten million items', () => new Array<number>(10_000_000).fill(0)],
    ['a million holes', () => new Array<number>(1_000_000)],
  ])('refreshTokens.issue (deviceInfo): %s in an array are refused without a walk through them', async (_case, array) => {
    let read = 0;
    const isIndex = (key: string | symbol) => typeof key === 'string' && /^\d+$/.test(key);
    const items = new Proxy(array(), {
      get: (target, key, receiver) => ((read += isIndex(key) ? 1 : 0), Reflect.get(target, key, receiver) as unknown),
      has: (target, key) => ((read += isIndex(key) ? 1 : 0), Reflect.has(target, key)),
    });
    const error = await refusal((db) => refreshTokens.issue(db, { userId: id, deviceInfo: { items } }));
    expect(error).toMatchObject({ field: 'deviceInfo', message: expect.stringContaining('must be at most 4096 characters as JSON') });
    expect(read).toBeLessThanOrEqual(4096);
  });

  it('refreshTokens.issue (deviceInfo): a million members left out are refused, though JSON.stringify would leave {}', async () => {
    const deviceInfo = Object.fromEntries(Array.from({ length: 1_000_000 }, (_, i) => [`k${i}`, undefined]));
    const error = await refusal((db) => refreshTokens.issue(db, { userId: id, deviceInfo }));
    expect(error).toMatchObject({ field: 'deviceInfo', message: expect.stringContaining('must be at most 4096 characters as JSON') });
  });

  it('refreshTokens.issue (deviceInfo): a hole in an array is refused as undefined is, not written as null', async () => {
    const tags = [1, 2, 3];
    delete tags[1];
    const error = await refusal((db) => refreshTokens.issue(db, { userId: id, deviceInfo: { tags } }));
    expect(error).toMatchObject({ field: 'deviceInfo', message: expect.stringContaining('must be a plain JSON object') });
  });
});

// Every paged list: [function, call with these page options].
const pagedLists: Array<[string, (db: Kysely<DB>, page: { limit?: number; offset?: number }) => unknown]> = [
  ['incidentTimers.listForUser', (db, page) => incidentTimers.listForUser(db, id, page)],
  ['phrases.listForUser', (db, page) => phrases.listForUser(db, id, page)],
  ['phrases.listExcluded', (db, page) => phrases.listExcluded(db, id, page)],
  ['phrases.list', (db, page) => phrases.list(db, id, page)],
  ['phraseSuggestions.listForUser', (db, page) => phraseSuggestions.listForUser(db, id, page)],
  ['phraseSuggestions.listPending', (db, page) => phraseSuggestions.listPending(db, id, page)],
];

describe('offsets and limits that are integers in JavaScript but not bigints (2**63, 1e21, 1e300)', () => {
  expectRefused(
    pagedLists.flatMap(([name, call]) =>
      [2 ** 63, 1e21, 1e300, Number.MAX_SAFE_INTEGER + 1].flatMap((n): Case[] => [
        [`${name} (offset ${n})`, 'offset', (db) => call(db, { offset: n })],
        [`${name} (limit ${n})`, 'limit', (db) => call(db, { limit: n })],
      ]),
    ),
  );
});

describe('dates outside timestamptz (before 4714-11-24 BC)', () => {
  const tooEarly = [new Date(Date.UTC(-4713, 10, 23, 23, 59, 59, 999)), new Date(-8.64e15)];
  expectRefused(
    tooEarly.flatMap((date): Case[] => [
      [`incidentTimers.create (${date.toISOString()})`, 'resetAt', (db) => incidentTimers.create(db, { userId: id, resetAt: date })],
      [`incidentTimers.update (${date.toISOString()})`, 'resetAt', (db) => incidentTimers.update(db, { id, userId: other }, { resetAt: date })],
    ]),
  );
});

describe('null or undefined in place of an input object, null in place of an options object', () => {
  const missing: Array<[string, string, (db: Kysely<DB>, value: null | undefined) => unknown]> = [
    ['users.create', 'input', (db, v) => users.create(db, v as never)],
    ['users.updateProfile', 'changes', (db, v) => users.updateProfile(db, id, v as never)],
    ['incidentTimers.create', 'input', (db, v) => incidentTimers.create(db, v as never)],
    ['incidentTimers.update (ref)', 'ref', (db, v) => incidentTimers.update(db, v as never, { notes: 'n' })],
    ['incidentTimers.update (changes)', 'changes', (db, v) => incidentTimers.update(db, { id, userId: other }, v as never)],
    ['incidentTimers.remove', 'ref', (db, v) => incidentTimers.remove(db, v as never)],
    ['phrases.create', 'input', (db, v) => phrases.create(db, v as never)],
    ['phrases.update (target)', 'target', (db, v) => phrases.update(db, v as never, { text: 't' })],
    ['phrases.update (changes)', 'changes', (db, v) => phrases.update(db, { phraseId: id, adminId: other }, v as never)],
    ['phraseSuggestions.approve', 'decision', (db, v) => phraseSuggestions.approve(db, v as never)],
    ['phraseSuggestions.reject', 'decision', (db, v) => phraseSuggestions.reject(db, v as never)],
    ['refreshTokens.issue', 'input', (db, v) => refreshTokens.issue(db, v as never)],
  ];
  const nullOptions: Array<[string, (db: Kysely<DB>, value: unknown) => unknown]> = [
    ['users.updatePassword', (db, v) => users.updatePassword(db, id, 'h', v as never)],
    ['users.isSlugAvailable', (db, v) => users.isSlugAvailable(db, 'slug', v as never)],
    ['users.grantRole', (db, v) => users.grantRole(db, id, 'admin', v as never)],
    ['refreshTokens.configure', (_db, v) => refreshTokens.configure(v as never)],
    ['refreshTokens.rotate', (db, v) => refreshTokens.rotate(db, wellFormedToken, v as never)],
    ['refreshTokens.purgeExpired', (db, v) => refreshTokens.purgeExpired(db, v as never)],
    ['incidentTimers.listForUser', (db, v) => incidentTimers.listForUser(db, id, v as never)],
    ['phrases.listForUser', (db, v) => phrases.listForUser(db, id, v as never)],
    ['phrases.listExcluded', (db, v) => phrases.listExcluded(db, id, v as never)],
    ['phrases.list', (db, v) => phrases.list(db, id, v as never)],
    ['phraseSuggestions.listForUser', (db, v) => phraseSuggestions.listForUser(db, id, v as never)],
    ['phraseSuggestions.listPending', (db, v) => phraseSuggestions.listPending(db, id, v as never)],
  ];
  expectRefused([
    ...missing.flatMap(([name, field, call]): Case[] => [
      [`${name} (null)`, field, (db) => call(db, null)],
      [`${name} (undefined)`, field, (db) => call(db, undefined)],
    ]),
    ...nullOptions.flatMap(([name, call]): Case[] => [
      [`${name} (null)`, 'options', (db) => call(db, null)],
      [`${name} ('a string')`, 'options', (db) => call(db, 'a string')],
    ]),
  ]);
});
