import { CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { ForbiddenError, NotFoundError, ValidationError } from '../../src/errors.js';
import * as phrases from '../../src/queries/phrases.js';
import * as users from '../../src/queries/users.js';
import { newAdmin, newUser } from '../support/factories.js';
import { offlineDb } from '../support/offline-db.js';
import { useTestDatabase } from '../support/test-database.js';
import { duringUncommittedDelete } from '../support/uncommitted-delete.js';

const testDb = useTestDatabase();

const unknownId = '01890000-0000-7000-8000-000000000000';
const token = () => Math.random().toString(36).slice(2, 10);

const offline = offlineDb;

// The admin who makes the phrases that tests need as material.
let editor: users.User;
beforeAll(async () => {
  editor = await newAdmin(testDb.db);
});

async function newPhrase(text = `Phrase ${token()}`, active = true): Promise<phrases.Phrase> {
  const phrase = await phrases.create(testDb.db, { text, createdBy: editor.id });
  return active ? phrase : phrases.update(testDb.db, { phraseId: phrase.id, adminId: editor.id }, { active: false });
}

// Test setup only: bulk phrases straight into the table.
async function insertPhrases(n: number, prefix = `Bulk ${token()}`): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    INSERT INTO phrases (phrase_text) SELECT ${prefix} || ' ' || i FROM generate_series(1, ${n}::int) i RETURNING id`.execute(
    testDb.db,
  );
  return rows.map((row) => row.id);
}

// Test setup only: the user excludes every phrase except `keep`.
async function excludeAllBut(userId: string, keep: string[]): Promise<void> {
  await sql`
    INSERT INTO user_excluded_phrases (user_id, phrase_id)
    SELECT ${userId}, id FROM phrases WHERE id <> ALL (${keep}::uuid[])
    ON CONFLICT DO NOTHING`.execute(testDb.db);
}

class Rollback extends Error {}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

const planNodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(planNodes)];

describe('phrases.randomForUser', () => {
  it('draws only active phrases the user has not excluded, and null once none is left', async () => {
    const user = await newUser(testDb.db);
    const a = await newPhrase();
    const b = await newPhrase();
    const inactive = await newPhrase(undefined, false);
    await excludeAllBut(user.id, [a.id, b.id, inactive.id]);

    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) seen.add((await phrases.randomForUser(testDb.db, user.id))!.id);
    expect([...seen].sort()).toEqual([a.id, b.id].sort());
    expect(await phrases.randomForUser(testDb.db, user.id)).toEqual(expect.objectContaining({ active: true }));

    await phrases.exclude(testDb.db, user.id, a.id);
    await phrases.exclude(testDb.db, user.id, b.id);
    expect(await phrases.randomForUser(testDb.db, user.id)).toBeNull();
  });

  it('is uniform over the eligible phrases: chi-square over 20 phrases and 5,000 draws', async () => {
    const user = await newUser(testDb.db);
    const eligible: string[] = [];
    for (let i = 0; i < 20; i++) {
      // Uneven runs of ineligible draw numbers (excluded, or deactivated) before each eligible
      // phrase: a draw that favoured the phrase after a gap, or the lowest draw number among the
      // hits, would skew the counts far beyond the threshold.
      await insertPhrases((i * 7) % 5);
      if (i % 3 === 0) await newPhrase(undefined, false);
      eligible.push((await newPhrase(`Eligible ${i} ${token()}`)).id);
    }
    await excludeAllBut(user.id, eligible);

    const draws = 5_000;
    const counts = new Map(eligible.map((id) => [id, 0]));
    // 10 draws at a time, as 10 requests would; each on its own pooled connection.
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        for (let i = 0; i < draws / 10; i++) {
          const phrase = await phrases.randomForUser(testDb.db, user.id);
          counts.set(phrase!.id, (counts.get(phrase!.id) ?? Number.NaN) + 1);
        }
      }),
    );
    expect(counts.size).toBe(20); // nothing outside the eligible set was drawn
    const expected = draws / eligible.length;
    const chiSquare = [...counts.values()].reduce((sum, observed) => sum + (observed - expected) ** 2 / expected, 0);
    // df = 19. The p = 0.001 critical value is 43.82; 60 is p ≈ 4e-6, so a uniform draw fails
    // about once in 250,000 runs, while a bias that doubles one phrase's share adds ≈ 215 to
    // the statistic at 5,000 draws (it grows with the draws; more would only cost time in
    // every project) and a gap or lowest-draw-number bias far more.
    expect(chiSquare).toBeLessThan(60);
  });

  it('returns the one phrase left when the user has excluded all others, even when every candidate misses', async () => {
    const user = await newUser(testDb.db);
    // Hundreds of excluded draw numbers around the one eligible phrase: most rejection draws
    // miss, so the exact fallback has to find it.
    await insertPhrases(300);
    const last = await newPhrase();
    await insertPhrases(300);
    await excludeAllBut(user.id, [last.id]);
    for (let i = 0; i < 20; i++) {
      expect(await phrases.randomForUser(testDb.db, user.id)).toEqual(last);
    }
  });

  it('probes the draw_no index and stops at the first hit, for users and slugs: no sequential scan, no sort (EXPLAIN at 20,000 phrases)', async () => {
    const user = await newUser(testDb.db);
    const captured: { sql: string; parameters: readonly unknown[] }[] = [];
    const logged = createDb(
      { databaseUrl: testDb.url, minConnections: 0, maxConnections: 1 },
      { log: (event) => void (event.level === 'query' && captured.push(event.query)) },
    );
    try {
      await logged
        .transaction()
        .execute(async (trx) => {
          await sql`INSERT INTO phrases (phrase_text) SELECT 'Plan ' || i FROM generate_series(1, 20000) i`.execute(trx);
          await sql`INSERT INTO user_excluded_phrases (user_id, phrase_id)
                    SELECT ${user.id}, id FROM phrases WHERE draw_no % 2 = 0`.execute(trx);
          await sql`ANALYZE phrases, user_excluded_phrases`.execute(trx);
          captured.length = 0;
          expect(await phrases.randomForUser(trx, user.id)).not.toBeNull();
          expect(await phrases.randomForSlug(trx, user.slug)).not.toBeNull();
          expect(captured).toHaveLength(2); // one statement per draw: no fallback at this hit rate
          for (const draw of captured.splice(0)) {
            const { rows } = await trx.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
              CompiledQuery.raw(`EXPLAIN (FORMAT JSON) ${draw.sql}`, [...draw.parameters]),
            );
            const nodes = planNodes(rows[0]!['QUERY PLAN'][0].Plan);
            expect(nodes).toContainEqual(expect.objectContaining({ 'Node Type': 'Index Scan', 'Index Name': 'phrases_draw_no_key' }));
            expect(nodes).not.toContainEqual(expect.objectContaining({ 'Node Type': 'Seq Scan', 'Relation Name': 'phrases' }));
            expect(nodes.map((node) => node['Node Type'])).not.toContain('Sort');
          }
          throw new Rollback();
        })
        .catch((error: unknown) => {
          if (!(error instanceof Rollback)) throw error;
        });
    } finally {
      await logged.destroy();
    }
  });

  it('rejects a malformed user id before any query', async () => {
    await expect(phrases.randomForUser(offline, 'nope')).rejects.toMatchObject({ field: 'userId' });
  });
});

describe('phrases.randomForSlug', () => {
  it('draws for the public page of an active user, honouring that user’s exclusions', async () => {
    const owner = await newUser(testDb.db);
    const only = await newPhrase();
    await excludeAllBut(owner.id, [only.id]);
    expect(await phrases.randomForSlug(testDb.db, owner.slug)).toEqual(only);
    await phrases.exclude(testDb.db, owner.id, only.id);
    expect(await phrases.randomForSlug(testDb.db, owner.slug)).toBeNull();
  });

  it('returns the last phrase left when every candidate misses, through the exact fallback', async () => {
    const owner = await newUser(testDb.db);
    const last = await newPhrase();
    await insertPhrases(500);
    await excludeAllBut(owner.id, [last.id]);
    for (let i = 0; i < 10; i++) expect(await phrases.randomForSlug(testDb.db, owner.slug)).toEqual(last);
  });

  it('is null for an unknown or deactivated user', async () => {
    const owner = await newUser(testDb.db);
    expect(await phrases.randomForSlug(testDb.db, owner.slug)).not.toBeNull();
    await users.setActive(testDb.db, owner.id, false);
    expect(await phrases.randomForSlug(testDb.db, owner.slug)).toBeNull();
    expect(await phrases.randomForSlug(testDb.db, `nobody-${token()}`)).toBeNull();
  });

  // The draw that finds the owner active and the exact fallback are two statements: the
  // fallback asks again, or a deactivation committed between them showed a phrase on the
  // page of a deactivated user. The second statement is held back until that has committed.
  it('is null for an owner deactivated between its draw and the exact fallback', async () => {
    const owner = await newUser(testDb.db);
    await excludeAllBut(owner.id, []);
    let heldBack: Promise<void> | undefined;
    const query = pg.Client.prototype.query as (...args: unknown[]) => unknown;
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      const sent = args[0] as string | { text?: string };
      if (heldBack === undefined && /order by random\(\)/i.test(typeof sent === 'string' ? sent : (sent?.text ?? ''))) {
        heldBack = (async () => {
          await users.setActive(testDb.db, owner.id, false);
          await newPhrase(); // one the fallback would find
        })();
        // Sent whatever happened meanwhile: a statement never sent would leave the call hanging.
        const send = () => query.apply(this, args);
        return heldBack.then(send, send) as never;
      }
      return query.apply(this, args) as never;
    });
    onTestFinished(() => spy.mockRestore());
    expect(await phrases.randomForSlug(testDb.db, owner.slug)).toBeNull();
    spy.mockRestore();
    expect(heldBack).toBeDefined();
    await heldBack;
  });

  it('rejects a malformed slug before any query', async () => {
    await expect(phrases.randomForSlug(offline, 'Not A Slug')).rejects.toMatchObject({ field: 'slug' });
  });
});

describe('phrases.listForUser', () => {
  it('pages the active phrases by text with the user’s excluded flag and the total of matches', async () => {
    const user = await newUser(testDb.db);
    const tag = token();
    const [c, a, b] = [await newPhrase(`${tag} c`), await newPhrase(`${tag} a`), await newPhrase(`${tag} b`)];
    await newPhrase(`${tag} d (inactive)`, false);
    await phrases.exclude(testDb.db, user.id, b.id);

    const all = await phrases.listForUser(testDb.db, user.id, { search: tag });
    expect(all).toEqual({
      items: [
        { ...a, excluded: false },
        { ...b, excluded: true },
        { ...c, excluded: false },
      ],
      total: 3,
    });
    const second = await phrases.listForUser(testDb.db, user.id, { search: tag, limit: 2, offset: 2 });
    expect(second).toEqual({ items: [{ ...c, excluded: false }], total: 3 });
    // Past the end there is no row to carry the total, which still comes back.
    expect(await phrases.listForUser(testDb.db, user.id, { search: tag, offset: 10 })).toEqual({ items: [], total: 3 });
    expect(await phrases.listForUser(testDb.db, user.id, { search: `${tag} nothing` })).toEqual({ items: [], total: 0 });
  });

  it('lists every active phrase without a search, 20 to a page by default', async () => {
    const user = await newUser(testDb.db);
    const { active } = await phrases.count(testDb.db);
    const page = await phrases.listForUser(testDb.db, user.id);
    expect(page.total).toBe(active);
    expect(page.items).toHaveLength(Math.min(20, active));
  });

  it('searches case-insensitively', async () => {
    const user = await newUser(testDb.db);
    const tag = token();
    const phrase = await newPhrase(`Keep ${tag} CALM and carry on`);
    const page = await phrases.listForUser(testDb.db, user.id, { search: `${tag.toUpperCase()} calm` });
    expect(page.items.map((item) => item.id)).toEqual([phrase.id]);
  });

  it.each([
    ['%', '100% sure', '1000 sure', '100%'],
    ['_', 'snake_case', 'snakeXcase', 'snake_c'],
    ['\\', 'back\\slash', 'backslash', 'back\\s'],
  ])('matches %s in the search text literally', async (_char, literal, wildcardOnly, search) => {
    const user = await newUser(testDb.db);
    const tag = token();
    const wanted = await newPhrase(`${tag} ${literal}`);
    await newPhrase(`${tag} ${wildcardOnly}`);
    const page = await phrases.listForUser(testDb.db, user.id, { search: `${tag} ${search}` });
    expect(page.items.map((item) => item.id)).toEqual([wanted.id]);
  });

  it.each([
    ['limit', { limit: 0 }],
    ['limit', { limit: 101 }],
    ['limit', { limit: 2.5 }],
    ['offset', { offset: -1 }],
    ['search', { search: 'x'.repeat(201) }],
  ])('rejects an invalid %s before any query', async (field, options) => {
    const error = await phrases.listForUser(offline, unknownId, options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });
});

describe('phrases.exclude / include / listExcluded', () => {
  it('excludes and includes idempotently', async () => {
    const user = await newUser(testDb.db);
    const phrase = await newPhrase();
    await phrases.exclude(testDb.db, user.id, phrase.id);
    await phrases.exclude(testDb.db, user.id, phrase.id);
    expect((await phrases.listExcluded(testDb.db, user.id)).items.map((item) => item.id)).toEqual([phrase.id]);
    await phrases.include(testDb.db, user.id, phrase.id);
    await phrases.include(testDb.db, user.id, phrase.id);
    expect(await phrases.listExcluded(testDb.db, user.id)).toEqual({ items: [], total: 0 });
  });

  it('refuses to exclude an unknown phrase, or for an unknown user, with NotFound', async () => {
    const user = await newUser(testDb.db);
    const phrase = await newPhrase();
    await expect(phrases.exclude(testDb.db, user.id, unknownId)).rejects.toMatchObject({ entity: 'phrase' });
    await expect(phrases.exclude(testDb.db, unknownId, phrase.id)).rejects.toMatchObject({ entity: 'user' });
    await expect(phrases.exclude(testDb.db, unknownId, phrase.id)).rejects.toBeInstanceOf(NotFoundError);
    // Including what was never excluded is already the wanted state.
    await expect(phrases.include(testDb.db, user.id, unknownId)).resolves.toBeUndefined();
  });

  it('is NotFound for a user or a phrase deleted while it waited for that row, naming which', async () => {
    const user = await newUser(testDb.db);
    const phrase = await newPhrase();
    // The insert read the row in its snapshot; its foreign-key check then meets it deleted.
    const forDeletedUser = await duringUncommittedDelete(testDb.directUrl, 'users', user.id, () => phrases.exclude(testDb.db, user.id, phrase.id));
    expect(forDeletedUser).toBeInstanceOf(NotFoundError);
    expect(forDeletedUser).toMatchObject({ entity: 'user' });
    const other = await newUser(testDb.db);
    const ofDeletedPhrase = await duringUncommittedDelete(testDb.directUrl, 'phrases', phrase.id, () => phrases.exclude(testDb.db, other.id, phrase.id));
    expect(ofDeletedPhrase).toBeInstanceOf(NotFoundError);
    expect(ofDeletedPhrase).toMatchObject({ entity: 'phrase' });
  });

  it('lists the exclusions newest first, deactivated phrases included, with when and how many', async () => {
    const user = await newUser(testDb.db);
    const first = await newPhrase();
    const second = await newPhrase(undefined, false);
    const third = await newPhrase();
    for (const phrase of [first, second, third]) await phrases.exclude(testDb.db, user.id, phrase.id);
    const page = await phrases.listExcluded(testDb.db, user.id, { limit: 2 });
    expect(page.total).toBe(3);
    expect(page.items).toEqual([
      { ...third, excludedAt: expect.any(Date) },
      { ...second, excludedAt: expect.any(Date) },
    ]);
    expect((await phrases.listExcluded(testDb.db, user.id, { offset: 2 })).items.map((item) => item.id)).toEqual([first.id]);
    expect(await phrases.listExcluded(testDb.db, user.id, { offset: 5 })).toEqual({ items: [], total: 3 });
  });

  it('rejects malformed ids before any query', async () => {
    await expect(phrases.exclude(offline, 'x', unknownId)).rejects.toMatchObject({ field: 'userId' });
    await expect(phrases.exclude(offline, unknownId, 'x')).rejects.toMatchObject({ field: 'phraseId' });
    await expect(phrases.include(offline, unknownId, 'x')).rejects.toMatchObject({ field: 'phraseId' });
    await expect(phrases.listExcluded(offline, 'x')).rejects.toMatchObject({ field: 'userId' });
    await expect(phrases.listExcluded(offline, unknownId, { limit: 0 })).rejects.toMatchObject({ field: 'limit' });
  });
});

describe('phrases admin: create / update / list / count', () => {
  it('creates an active phrase credited to the admin, with trimmed text', async () => {
    const admin = await newAdmin(testDb.db);
    const phrase = await phrases.create(testDb.db, { text: '  Ship small, ship often.  ', createdBy: admin.id });
    expect(phrase).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      text: 'Ship small, ship often.',
      active: true,
      createdBy: admin.id,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
  });

  it('refuses create, update and list to a non-admin, a deactivated admin and an unknown user, changing nothing', async () => {
    const user = await newUser(testDb.db);
    const lapsed = await newAdmin(testDb.db);
    await users.setActive(testDb.db, lapsed.id, false);
    const phrase = await newPhrase();
    const before = await phrases.count(testDb.db);
    for (const actor of [user.id, lapsed.id, unknownId]) {
      await expect(phrases.create(testDb.db, { text: 'Nope', createdBy: actor })).rejects.toBeInstanceOf(ForbiddenError);
      await expect(
        phrases.update(testDb.db, { phraseId: phrase.id, adminId: actor }, { active: false }),
      ).rejects.toBeInstanceOf(ForbiddenError);
      await expect(phrases.list(testDb.db, actor)).rejects.toBeInstanceOf(ForbiddenError);
    }
    expect(await phrases.count(testDb.db)).toEqual(before);
    expect((await phrases.listForUser(testDb.db, user.id, { search: phrase.text })).items[0]).toMatchObject({
      id: phrase.id,
      active: true,
    });
  });

  it('updates text and active flag; a deactivated phrase leaves draws and user lists but keeps exclusions', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const phrase = await newPhrase();
    await phrases.exclude(testDb.db, user.id, phrase.id);
    const renamed = await phrases.update(testDb.db, { phraseId: phrase.id, adminId: admin.id }, { text: `Renamed ${token()}` });
    expect(renamed).toMatchObject({ id: phrase.id, active: true, createdBy: phrase.createdBy });
    const { rows: stamps } = await sql<{ bumped: boolean }>`
      SELECT updated_at > created_at AS bumped FROM phrases WHERE id = ${phrase.id}`.execute(testDb.db);
    expect(stamps).toEqual([{ bumped: true }]); // in the database's microseconds, not a Date's milliseconds
    const off = await phrases.update(testDb.db, { phraseId: phrase.id, adminId: admin.id }, { active: false });
    expect(off).toMatchObject({ text: renamed.text, active: false });
    expect((await phrases.listForUser(testDb.db, user.id, { search: renamed.text })).total).toBe(0);
    expect((await phrases.listExcluded(testDb.db, user.id)).items).toEqual([{ ...off, excludedAt: expect.any(Date) }]);
  });

  it('refuses an unknown phrase with NotFound and an empty change with a Validation error', async () => {
    const admin = await newAdmin(testDb.db);
    await expect(phrases.update(testDb.db, { phraseId: unknownId, adminId: admin.id }, { active: false })).rejects.toMatchObject({
      entity: 'phrase',
    });
    await expect(phrases.update(offline, { phraseId: unknownId, adminId: admin.id }, {})).rejects.toMatchObject({
      field: 'changes',
    });
  });

  it('lists for the admin newest first, inactive included unless asked otherwise, with search and total', async () => {
    const admin = await newAdmin(testDb.db);
    const tag = token();
    const older = await newPhrase(`${tag} older`);
    const hidden = await newPhrase(`${tag} hidden`, false);
    const newest = await newPhrase(`${tag} NEWEST`);
    expect(await phrases.list(testDb.db, admin.id, { search: tag })).toEqual({ items: [newest, hidden, older], total: 3 });
    expect(await phrases.list(testDb.db, admin.id, { search: tag, includeInactive: false })).toEqual({
      items: [newest, older],
      total: 2,
    });
    expect(await phrases.list(testDb.db, admin.id, { search: `${tag} newest`, limit: 1 })).toEqual({ items: [newest], total: 1 });
    expect(await phrases.list(testDb.db, admin.id, { search: tag, limit: 1, offset: 1 })).toEqual({ items: [hidden], total: 3 });
    expect(await phrases.list(testDb.db, admin.id, { search: tag, offset: 3 })).toEqual({ items: [], total: 3 });
  });

  it('counts all phrases and the active ones', async () => {
    const before = await phrases.count(testDb.db);
    await newPhrase();
    await newPhrase(undefined, false);
    expect(await phrases.count(testDb.db)).toEqual({ total: before.total + 2, active: before.active + 1 });
  });

  it('joins the caller’s transaction: a rollback undoes a create', async () => {
    const admin = await newAdmin(testDb.db);
    const text = `Rolled back ${token()}`;
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        await phrases.create(trx, { text, createdBy: admin.id });
        throw new Rollback();
      })
      .catch(() => undefined);
    expect((await phrases.list(testDb.db, admin.id, { search: text })).total).toBe(0);
  });

  it.each([
    ['text', { text: '   ' }],
    ['text', { text: 'x'.repeat(501) }],
    ['createdBy', { createdBy: 'not-a-uuid' }],
  ])('rejects an invalid %s before any query', async (field, overrides) => {
    const error = await phrases.create(offline, { text: 'Fine', createdBy: unknownId, ...overrides }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });

  it('accepts a phrase of exactly 500 characters', async () => {
    const admin = await newAdmin(testDb.db);
    expect((await phrases.create(testDb.db, { text: 'x'.repeat(500), createdBy: admin.id })).text).toHaveLength(500);
  });

  it.each([
    ['phraseId', { phraseId: 'x', adminId: unknownId }, { active: false }],
    ['adminId', { phraseId: unknownId, adminId: 'x' }, { active: false }],
    ['text', { phraseId: unknownId, adminId: unknownId }, { text: 'x'.repeat(501) }],
    ['active', { phraseId: unknownId, adminId: unknownId }, { active: 'yes' as unknown as boolean }],
  ])('update rejects an invalid %s before any query', async (field, target, changes) => {
    await expect(phrases.update(offline, target, changes)).rejects.toMatchObject({ field });
  });

  it.each([
    ['adminId', 'x', {}],
    ['limit', unknownId, { limit: 101 }],
    ['offset', unknownId, { offset: -5 }],
    ['includeInactive', unknownId, { includeInactive: 'no' as unknown as boolean }],
  ])('list rejects an invalid %s before any query', async (field, adminId, options) => {
    await expect(phrases.list(offline, adminId, options)).rejects.toMatchObject({ field });
  });
});

describe('deleting a user', () => {
  it('keeps the phrases they created, uncredited, and removes their exclusions', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const phrase = await phrases.create(testDb.db, { text: `Outlives its author ${token()}`, createdBy: admin.id });
    await phrases.exclude(testDb.db, user.id, phrase.id);

    await testDb.db.deleteFrom('users').where('id', 'in', [admin.id, user.id]).execute();

    const other = await newAdmin(testDb.db);
    expect((await phrases.list(testDb.db, other.id, { search: phrase.text })).items).toEqual([
      { ...phrase, createdBy: null, updatedAt: expect.any(Date) },
    ]);
    const { rows } = await sql<{ n: string }>`
      SELECT count(*) AS n FROM user_excluded_phrases WHERE user_id = ${user.id}`.execute(testDb.db);
    expect(rows[0]!.n).toBe('0');
  });
});
