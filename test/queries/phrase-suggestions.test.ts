import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../src/errors.js';
import * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import * as phrases from '../../src/queries/phrases.js';
import * as users from '../../src/queries/users.js';
import { newAdmin, newUser } from '../support/factories.js';
import { offlineDb } from '../support/offline-db.js';
import { useTestDatabase } from '../support/test-database.js';
import { eventually } from '../support/eventually.js';
import { useGateTrigger } from '../support/gate-trigger.js';
import { duringUncommittedDelete } from '../support/uncommitted-delete.js';

const testDb = useTestDatabase();

const unknownId = '01890000-0000-7000-8000-000000000000';
const token = () => Math.random().toString(36).slice(2, 10);

const offline = offlineDb;

class Rollback extends Error {}

async function phrasesWithText(text: string): Promise<{ id: string; created_by: string | null }[]> {
  return testDb.db.selectFrom('phrases').select(['id', 'created_by']).where('phrase_text', '=', text).execute();
}

/** What each session of this database that waits for a lock waits for (`advisory`, `tuple`, `transactionid`, …). */
async function lockWaits(): Promise<string[]> {
  const { rows } = await sql<{ waitEvent: string }>`
    SELECT wait_event AS "waitEvent" FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(testDb.db);
  return rows.map((row) => row.waitEvent);
}

describe('phraseSuggestions.submit / listForUser', () => {
  it('records a pending suggestion with camelCase fields', async () => {
    const user = await newUser(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, '  Rest is part of the work.  ');
    expect(suggestion).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      userId: user.id,
      text: 'Rest is part of the work.',
      status: 'pending',
      reviewedBy: null,
      reviewedAt: null,
      reviewReason: null,
      phraseId: null,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
  });

  it('refuses an unknown user with NotFound', async () => {
    await expect(phraseSuggestions.submit(testDb.db, unknownId, 'Hello')).rejects.toMatchObject({ entity: 'user' });
  });

  it('lists only the user’s own suggestions, newest first, with their outcome and total', async () => {
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    await phraseSuggestions.submit(testDb.db, (await newUser(testDb.db)).id, 'Someone else’s');
    const first = await phraseSuggestions.submit(testDb.db, user.id, `First ${token()}`);
    const second = await phraseSuggestions.submit(testDb.db, user.id, `Second ${token()}`);
    const third = await phraseSuggestions.submit(testDb.db, user.id, `Third ${token()}`);
    const rejected = await phraseSuggestions.reject(testDb.db, { suggestionId: second.id, adminId: admin.id, reason: 'Dup' });

    expect(await phraseSuggestions.listForUser(testDb.db, user.id)).toEqual({ items: [third, rejected, first], total: 3 });
    expect(await phraseSuggestions.listForUser(testDb.db, user.id, { limit: 1, offset: 1 })).toEqual({
      items: [rejected],
      total: 3,
    });
    expect(await phraseSuggestions.listForUser(testDb.db, user.id, { offset: 3 })).toEqual({ items: [], total: 3 });
  });

  it.each([
    ['userId', () => phraseSuggestions.submit(offline, 'x', 'Hello')],
    ['text', () => phraseSuggestions.submit(offline, unknownId, ' \t ')],
    ['text', () => phraseSuggestions.submit(offline, unknownId, 'x'.repeat(501))],
    ['userId', () => phraseSuggestions.listForUser(offline, 'x')],
    ['limit', () => phraseSuggestions.listForUser(offline, unknownId, { limit: 0 })],
    ['offset', () => phraseSuggestions.listForUser(offline, unknownId, { offset: -1 })],
  ])('rejects an invalid %s before any query', async (field, call) => {
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });
});

describe('phraseSuggestions.listPending / countPending', () => {
  it('gives admins the queue oldest first with the submitter’s name and email, and counts it', async () => {
    const admin = await newAdmin(testDb.db);
    const submitter = await newUser(testDb.db, { displayName: 'Grace Hopper' });
    const before = await phraseSuggestions.countPending(testDb.db);
    const a = await phraseSuggestions.submit(testDb.db, submitter.id, `Queue A ${token()}`);
    const b = await phraseSuggestions.submit(testDb.db, submitter.id, `Queue B ${token()}`);
    const c = await phraseSuggestions.submit(testDb.db, submitter.id, `Queue C ${token()}`);
    await phraseSuggestions.reject(testDb.db, { suggestionId: b.id, adminId: admin.id });
    expect(await phraseSuggestions.countPending(testDb.db)).toBe(before + 2);

    const submitterFields = { submitterDisplayName: 'Grace Hopper', submitterEmail: submitter.email };
    const page = await phraseSuggestions.listPending(testDb.db, admin.id, { offset: before, limit: 5 });
    expect(page).toEqual({
      items: [
        { ...a, ...submitterFields },
        { ...c, ...submitterFields },
      ],
      total: before + 2,
    });
    expect(await phraseSuggestions.listPending(testDb.db, admin.id, { offset: before + 2 })).toEqual({
      items: [],
      total: before + 2,
    });
  });

  it('refuses the queue (it carries email addresses) to a non-admin', async () => {
    const user = await newUser(testDb.db);
    await expect(phraseSuggestions.listPending(testDb.db, user.id)).rejects.toBeInstanceOf(ForbiddenError);
  });

  it.each([
    ['adminId', () => phraseSuggestions.listPending(offline, 'x')],
    ['limit', () => phraseSuggestions.listPending(offline, unknownId, { limit: 101 })],
    ['offset', () => phraseSuggestions.listPending(offline, unknownId, { offset: -1 })],
  ])('rejects an invalid %s before any query', async (field, call) => {
    await expect(call()).rejects.toMatchObject({ field });
  });
});

describe('phraseSuggestions.approve', () => {
  it('creates an active phrase credited to the suggesting user and records the decision', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, `Approved ${token()}`);

    const dbNow = async () => (await sql<{ now: Date }>`SELECT now()`.execute(testDb.db)).rows[0]!.now;
    const before = await dbNow();
    const phrase = await phraseSuggestions.approve(testDb.db, { suggestionId: suggestion.id, adminId: admin.id, reason: 'Lovely' });
    const after = await dbNow();
    expect(phrase).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      text: suggestion.text,
      active: true,
      createdBy: user.id,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    const [decided] = (await phraseSuggestions.listForUser(testDb.db, user.id)).items;
    expect(decided).toEqual({
      ...suggestion,
      status: 'approved',
      reviewedBy: admin.id,
      reviewedAt: expect.any(Date),
      reviewReason: 'Lovely',
      phraseId: phrase.id,
      updatedAt: expect.any(Date),
    });
    // The decision is stamped with the time of the approving transaction.
    expect(decided!.reviewedAt!.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect(decided!.reviewedAt!.getTime()).toBeLessThanOrEqual(after.getTime());
    expect((await phrases.listForUser(testDb.db, user.id, { search: suggestion.text })).items).toEqual([
      { ...phrase, excluded: false },
    ]);
  });

  it('makes exactly one phrase when two admins approve the same suggestion at once; the other gets a Conflict', async () => {
    const [first, second] = [await newAdmin(testDb.db), await newAdmin(testDb.db)];
    const submitter = await newUser(testDb.db);
    const suggestions = await Promise.all(
      Array.from({ length: 5 }, (_, i) => phraseSuggestions.submit(testDb.db, submitter.id, `Raced ${i} ${token()}`)),
    );

    // Both admins approve every suggestion at once: calls on the pool, so each runs on its own
    // connection in its own transaction, racing for the suggestion's row lock.
    const races = await Promise.all(
      suggestions.map((suggestion) =>
        Promise.allSettled([
          phraseSuggestions.approve(testDb.db, { suggestionId: suggestion.id, adminId: first.id }),
          phraseSuggestions.approve(testDb.db, { suggestionId: suggestion.id, adminId: second.id }),
        ]),
      ),
    );
    for (const [i, results] of races.entries()) {
      const won = results.filter((result) => result.status === 'fulfilled');
      const lost = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost.map((result) => result.reason)).toEqual([expect.any(ConflictError)]);
      expect(await phrasesWithText(suggestions[i]!.text)).toHaveLength(1);
    }
  });

  it('makes the second decider wait for the first one’s lock, then refuses it with a Conflict', async () => {
    const admin = await newAdmin(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, (await newUser(testDb.db)).id, `Locked ${token()}`);
    let approved!: () => void;
    const firstApproved = new Promise<void>((resolve) => (approved = resolve));
    let commit!: () => void;
    const mayCommit = new Promise<void>((resolve) => (commit = resolve));

    // The first approval holds its transaction (and the row lock) open until told to commit.
    const first = testDb.db.transaction().execute(async (trx) => {
      const phrase = await phraseSuggestions.approve(trx, { suggestionId: suggestion.id, adminId: admin.id });
      approved();
      await mayCommit;
      return phrase;
    });
    await firstApproved;
    const second = phraseSuggestions
      .reject(testDb.db, { suggestionId: suggestion.id, adminId: admin.id })
      .catch((error: unknown) => error);

    // Wait until the second call is blocked on the first one's row lock, not merely slow.
    await eventually(async () => {
      const { rows } = await sql<{ n: string }>`
        SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(testDb.db);
      return rows[0]!.n === '1';
    }, 'the second decision waits for the row lock');
    commit();
    expect(await first).toMatchObject({ text: suggestion.text });
    expect(await second).toBeInstanceOf(ConflictError);
    const [decided] = (await phraseSuggestions.listForUser(testDb.db, suggestion.userId)).items;
    expect(decided).toMatchObject({ status: 'approved' });
  });

  it('joins the caller’s transaction: a rollback undoes the phrase and the decision', async () => {
    const admin = await newAdmin(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, (await newUser(testDb.db)).id, `Undone ${token()}`);
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        await phraseSuggestions.approve(trx, { suggestionId: suggestion.id, adminId: admin.id });
        throw new Rollback();
      })
      .catch(() => undefined);
    expect(await phrasesWithText(suggestion.text)).toEqual([]);
    expect((await phraseSuggestions.listForUser(testDb.db, suggestion.userId)).items).toEqual([suggestion]);
  });
});

describe('phraseSuggestions decisions: errors', () => {
  it('refuses a non-admin, a deactivated admin and an unknown user with Forbidden, even for an unknown suggestion', async () => {
    const user = await newUser(testDb.db);
    const lapsed = await newAdmin(testDb.db);
    await users.setActive(testDb.db, lapsed.id, false);
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, `Forbidden ${token()}`);
    for (const adminId of [user.id, lapsed.id, unknownId]) {
      for (const suggestionId of [suggestion.id, unknownId]) {
        await expect(phraseSuggestions.approve(testDb.db, { suggestionId, adminId })).rejects.toBeInstanceOf(ForbiddenError);
        await expect(phraseSuggestions.reject(testDb.db, { suggestionId, adminId })).rejects.toBeInstanceOf(ForbiddenError);
      }
    }
    expect((await phraseSuggestions.listForUser(testDb.db, user.id)).items).toEqual([suggestion]);
    expect(await phrasesWithText(suggestion.text)).toEqual([]);
  });

  it('refuses an unknown suggestion with NotFound', async () => {
    const admin = await newAdmin(testDb.db);
    await expect(phraseSuggestions.approve(testDb.db, { suggestionId: unknownId, adminId: admin.id })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(phraseSuggestions.reject(testDb.db, { suggestionId: unknownId, adminId: admin.id })).rejects.toMatchObject({
      entity: 'suggestion',
    });
  });

  it('decides only a pending suggestion: any second decision is a Conflict and changes nothing', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const approved = await phraseSuggestions.submit(testDb.db, user.id, `Once ${token()}`);
    const rejected = await phraseSuggestions.submit(testDb.db, user.id, `Never ${token()}`);
    await phraseSuggestions.approve(testDb.db, { suggestionId: approved.id, adminId: admin.id });
    const decided = await phraseSuggestions.reject(testDb.db, { suggestionId: rejected.id, adminId: admin.id, reason: 'No' });
    expect(decided).toMatchObject({ status: 'rejected', reviewedBy: admin.id, reviewReason: 'No', phraseId: null });
    expect(decided.reviewedAt).toBeInstanceOf(Date);

    for (const suggestionId of [approved.id, rejected.id]) {
      await expect(phraseSuggestions.approve(testDb.db, { suggestionId, adminId: admin.id })).rejects.toBeInstanceOf(
        ConflictError,
      );
      await expect(phraseSuggestions.reject(testDb.db, { suggestionId, adminId: admin.id })).rejects.toBeInstanceOf(
        ConflictError,
      );
    }
    expect(await phrasesWithText(approved.text)).toHaveLength(1);
    expect(await phrasesWithText(rejected.text)).toEqual([]);
  });

  it.each([
    ['suggestionId', { suggestionId: 'x', adminId: unknownId }],
    ['adminId', { suggestionId: unknownId, adminId: 'x' }],
    ['reason', { suggestionId: unknownId, adminId: unknownId, reason: '  ' }],
    ['reason', { suggestionId: unknownId, adminId: unknownId, reason: 'x'.repeat(501) }],
  ])('rejects an invalid %s before any query', async (field, decision) => {
    await expect(phraseSuggestions.approve(offline, decision)).rejects.toMatchObject({ field });
    await expect(phraseSuggestions.reject(offline, decision)).rejects.toMatchObject({ field });
  });
});

describe('deleting a user', () => {
  it('takes their suggestions with them but keeps the phrases made from them, uncredited', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const pending = await phraseSuggestions.submit(testDb.db, user.id, `Pending ${token()}`);
    const accepted = await phraseSuggestions.submit(testDb.db, user.id, `Accepted ${token()}`);
    const phrase = await phraseSuggestions.approve(testDb.db, { suggestionId: accepted.id, adminId: admin.id });

    await testDb.db.deleteFrom('users').where('id', '=', user.id).execute();

    expect(await phrasesWithText(accepted.text)).toEqual([{ id: phrase.id, created_by: null }]);
    const { rows } = await sql<{ n: string }>`
      SELECT count(*) AS n FROM phrase_suggestions WHERE id IN (${pending.id}, ${accepted.id})`.execute(testDb.db);
    expect(rows[0]!.n).toBe('0');
  });

  describe('while a decision is being made', () => {
    const gateKey = 73_100_977;
    // Holds an approval between its two statements (the suggestion locked; the phrase not yet
    // inserted), for phrases whose text says so.
    useGateTrigger(() => testDb.db, { name: 'test_slow_phrase_insert', table: 'phrases', event: 'INSERT', when: "NEW.phrase_text LIKE 'slow:%'", key: gateKey });

    it('waits for an approval in flight, then deletes the suggesting user and the suggestion: no deadlock', async () => {
      const admin = await newAdmin(testDb.db);
      const submitter = await newUser(testDb.db);
      const suggestion = await phraseSuggestions.submit(testDb.db, submitter.id, `slow: ${token()}`);
      const gate = new pg.Client({ connectionString: testDb.directUrl });
      const deleter = new pg.Client({ connectionString: testDb.directUrl });
      await Promise.all([gate.connect(), deleter.connect()]);
      try {
        await gate.query('SELECT pg_advisory_lock($1)', [gateKey]);
        const approval = phraseSuggestions.approve(testDb.db, { suggestionId: suggestion.id, adminId: admin.id }).catch((error: unknown) => error);
        await eventually(async () => (await lockWaits()).includes('advisory'), 'the approval waits at the gate, the suggestion locked');
        // The deletion takes the user row, then its cascade removes the user's suggestions:
        // the approval must not hold what the deletion needs while needing what it holds.
        const deletion = deleter.query('DELETE FROM users WHERE id = $1', [submitter.id]).then(
          () => 'deleted',
          (error: unknown) => error,
        );
        await eventually(async () => (await lockWaits()).length === 2, 'the deletion waits');
        await gate.query('SELECT pg_advisory_unlock($1)', [gateKey]);
        expect(await approval).toMatchObject({ text: suggestion.text, createdBy: submitter.id });
        expect(await deletion).toBe('deleted');
        expect(await phrasesWithText(suggestion.text)).toEqual([{ id: expect.any(String), created_by: null }]);
      } finally {
        await Promise.all([gate.end(), deleter.end()]);
      }
    });
  });

  it.each(['approve', 'reject'] as const)('refuses to %s for an admin deleted while it waited for their row with Forbidden', async (decide) => {
    const admin = await newAdmin(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, (await newUser(testDb.db)).id, `Orphaned ${token()}`);
    const outcome = await duringUncommittedDelete(testDb.directUrl, 'users', admin.id, () =>
      phraseSuggestions[decide](testDb.db, { suggestionId: suggestion.id, adminId: admin.id }),
    );
    expect(outcome).toBeInstanceOf(ForbiddenError);
    const [undecided] = (await phraseSuggestions.listForUser(testDb.db, suggestion.userId)).items;
    expect(undecided).toMatchObject({ status: 'pending', reviewedBy: null });
  });

  it('keeps the decisions of a deleted admin, without the reviewer', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, `Reviewed ${token()}`);
    const decided = await phraseSuggestions.reject(testDb.db, { suggestionId: suggestion.id, adminId: admin.id, reason: 'Meh' });

    await testDb.db.deleteFrom('users').where('id', '=', admin.id).execute();

    expect((await phraseSuggestions.listForUser(testDb.db, user.id)).items).toEqual([
      { ...decided, reviewedBy: null, updatedAt: expect.any(Date) },
    ]);
  });
});
