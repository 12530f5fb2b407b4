import { type Expression, type Kysely, type Selectable, sql } from 'kysely';
import type { DB, Phrases } from '../../generated/db.js';
import { inTransaction } from '../db/in-transaction.js';
import { inLibrarySchema, libraryTable } from '../db/library-schema.js';
import { prepareQuery } from '../db/prepared-query.js';
import { queryFunction } from '../db/query-function.js';
import { serializedStatement } from '../db/serialized-statement.js';
import { NotFoundError, ValidationError } from '../errors.js';
import {
  escapeLikePattern,
  limits,
  requireBoolean,
  requireInput,
  requireOptions,
  requirePage,
  requireSlug,
  textOrNull,
  requireText,
  requireUuid,
} from '../validation.js';
import type { CamelCased } from './camel-cased.js';
import { noRowReturned } from './no-row-returned.js';
import { notFoundOnMissingReference } from './missing-reference.js';
import { type Page, type PageOptions, pageOf } from './page.js';
import { requireRole } from './require-role.js';

/**
 * Motivational phrases, each user's exclusions, and the admin's catalogue.
 *
 * Phrases outlive their authors: deleting a user sets `createdBy` of the phrases they created
 * or suggested to null (ON DELETE SET NULL) and removes their exclusions (ON DELETE CASCADE),
 * so deleting a user never fails because of phrases. Phrases are never deleted, only
 * deactivated (`update(…, { active: false })`), which keeps every user's exclusions intact.
 */

/** A phrase as services see it (`phrase_text` is `text`; the internal draw number stays inside). */
export type Phrase = CamelCased<Omit<Selectable<Phrases>, 'phrase_text' | 'draw_no'>> & { text: string };

/** A phrase in a user's list, with whether this user excluded it. */
export type PhraseForUser = Phrase & { excluded: boolean };

/** A phrase the user excluded, with when. */
export type ExcludedPhrase = Phrase & { excludedAt: Date };

export type { Page, PageOptions } from './page.js';

export interface ListOptions extends PageOptions {
  /** Case-insensitive substring; `%`, `_` and `\` match literally. Blank means no filter. */
  search?: string | undefined;
}

export interface AdminListOptions extends ListOptions {
  /** Include deactivated phrases (default true: the admin manages those too). */
  includeInactive?: boolean | undefined;
}

export interface NewPhrase {
  text: string;
  /** The acting admin, credited as the phrase's creator. */
  createdBy: string;
}

const phraseColumns = [
  'phrases.id',
  'phrases.phrase_text as text',
  'phrases.active',
  'phrases.created_by as createdBy',
  'phrases.created_at as createdAt',
  'phrases.updated_at as updatedAt',
] as const;

// Candidates per draw. The plan stops at the first hit, so a draw costs about 1/p index probes
// for a fraction p of eligible draw numbers (2 when half the phrases are excluded); the count
// only bounds how often the exact fallback runs: 64 misses in a row have chance (1-p)^64, about
// 1e-19 at p = 0.5 and 0.1 % at p = 0.1.
const drawCandidates = 64;

// K independent uniform fractions in [0, 1), numbered in order. They are made once per
// statement (an InitPlan): random() sits in the array subquery, not in the join condition,
// where a volatile call could run per phrase row instead of per candidate. WITH ORDINALITY tells
// the planner that the rows arrive ordered by `ord`, so `ORDER BY c.ord LIMIT 1` needs no sort.
const candidates = sql<{ f: number; ord: string }>`unnest(array(SELECT random() FROM generate_series(1, ${sql.lit(
  drawCandidates,
)}))) WITH ORDINALITY`.as<'c'>(sql`c (f, ord)`);

// The user's exclusion of the phrase of the enclosing query, by its primary key.
const exclusionBy = (db: Kysely<DB>, userId: string | Expression<string>) =>
  db
    .selectFrom('user_excluded_phrases as e')
    .select('e.phrase_id')
    .where('e.user_id', '=', userId)
    .where('e.phrase_id', '=', sql.ref<string>('phrases.id'));

/**
 * The first of the candidates, scaled to 1..max(draw_no), that lands on an active phrase `userId`
 * has not excluded. The candidates are i.i.d. uniform, so the first hit is uniform over the
 * eligible phrases whatever the gaps (deactivated, excluded or never committed draw numbers);
 * when all miss, no row, and the caller falls back to the exact draw.
 *
 * max(draw_no) is read from the end of the unique index, and a nested loop probes
 * phrases_draw_no_key candidate by candidate, stopping at the first hit. OFFSET 0 keeps the
 * NOT EXISTS a per-row filter (one primary-key probe of the exclusions per active candidate)
 * rather than an anti-join, which buys nothing at run time here and costs a third of the
 * planning time, the larger part of the whole statement.
 */
const rejectionDraw = (db: Kysely<DB>, userId: string | Expression<string>) =>
  db
    .selectFrom(candidates)
    .innerJoin('phrases', (join) =>
      join.on('phrases.draw_no', '=', sql<number>`1 + floor(c.f * (SELECT max(p.draw_no) FROM ${libraryTable('phrases')} p))::int`),
    )
    .select(phraseColumns)
    .where('phrases.active', '=', true)
    .where(({ not, exists }) => not(exists(exclusionBy(db, userId).offset(sql.lit(0)))))
    .orderBy('c.ord')
    .limit(1);

// The draws run on every page view: built and compiled once (see prepareQuery).
const drawForUser = prepareQuery((db, p: { userId: string }) => rejectionDraw(db, p.userId));
const drawForSlug = prepareQuery((db, p: { slug: string }) =>
  db
    .selectFrom('users')
    .leftJoinLateral(() => rejectionDraw(db, sql.ref<string>('users.id')).as('hit'), (join) => join.onTrue())
    .select(['users.id as ownerId', 'hit.id', 'hit.text', 'hit.active', 'hit.createdBy', 'hit.createdAt', 'hit.updatedAt'])
    .where('users.slug', '=', p.slug)
    .where('users.active', '=', true),
);
// Uniform by construction but O(n): only for when every candidate missed, i.e. the user has
// excluded nearly everything (or there are no phrases at all).
const exactDrawQuery = (db: Kysely<DB>, userId: string) =>
  db
    .selectFrom('phrases')
    .select(phraseColumns)
    .where('phrases.active', '=', true)
    .where(({ not, exists }) => not(exists(exclusionBy(db, userId))))
    .orderBy(sql`random()`)
    .limit(1);
const exactDraw = prepareQuery((db, p: { userId: string }) => exactDrawQuery(db, p.userId));
// The same for a public page, whose owner must still be active: the draw that found the owner
// active was a statement of its own, and a deactivation may have committed since.
const exactDrawForActiveOwner = prepareQuery((db, p: { userId: string }) =>
  exactDrawQuery(db, p.userId).where(({ exists }) =>
    exists(db.selectFrom('users').select('users.id').where('users.id', '=', p.userId).where('users.active', '=', true)),
  ),
);

/**
 * A uniformly random active phrase that the user has not excluded, or null when none is left.
 * One statement in the common case, O(log n) at any size: random draw numbers are looked up
 * through the unique index until one hits an eligible phrase (rejection sampling). Only when all
 * 64 candidates miss (the user excluded nearly everything) does a second, exact and O(n)
 * statement run. An unknown user has excluded nothing, so gets any active phrase.
 *
 * @example
 * const phrase = await phrases.randomForUser(db, userId) // { id, text, active, createdBy, … } | null
 */
export const randomForUser = queryFunction(async function randomForUser(db: Kysely<DB>, userId: string): Promise<Phrase | null> {
  const id = requireUuid('userId', userId);
  const hit = (await drawForUser.execute(db, { userId: id })).rows[0];
  return hit ?? (await exactDraw.execute(db, { userId: id })).rows[0] ?? null;
});

/**
 * {@link randomForUser} for the public page of the user with this slug, honouring that user's
 * exclusions; null for an unknown or deactivated user, or when no phrase is left. The user is
 * found in the same statement as the draw.
 *
 * @example
 * const phrase = await phrases.randomForSlug(db, 'kenn')
 */
export const randomForSlug = queryFunction(async function randomForSlug(db: Kysely<DB>, slug: string): Promise<Phrase | null> {
  const value = requireSlug(slug);
  const row = (await drawForSlug.execute(db, { slug: value })).rows[0];
  if (!row) return null;
  const { ownerId, id, text, active, createdBy, createdAt, updatedAt } = row;
  if (id === null || text === null || active === null || createdAt === null || updatedAt === null) {
    // The owner exists but every candidate missed.
    return (await exactDrawForActiveOwner.execute(db, { userId: ownerId })).rows[0] ?? null;
  }
  return { id, text, active, createdBy, createdAt, updatedAt };
});

/**
 * A case-insensitive substring search: the ILIKE pattern of the whole text, and two anchors
 * for the trigram index. The user's `%`, `_` and `\` are escaped so they match literally
 * (backslash is ILIKE's default escape).
 */
interface Search {
  pattern: string;
  /** Patterns of the two longest words (of 3 or more characters) of the text, or the whole pattern. */
  anchors: [string, string];
}

// The trigram index answers a pattern by intersecting the posting lists of all its trigrams,
// and a common word ("and", "the") has a list as long as the table: "keep and going" spent
// most of its time on "and". The index is asked for the two longest words only (both implied
// by the whole text, so no match is lost), and the whole pattern then filters the candidates.
function searchOf(search: unknown): Search | null {
  const text = textOrNull('search', search, limits.searchLength);
  if (text === null) return null;
  const pattern = `%${escapeLikePattern(text)}%`;
  const words = text
    .split(/\s+/)
    .filter((word) => [...word].length >= 3)
    .sort((a, b) => b.length - a.length)
    .map((word) => `%${escapeLikePattern(word)}%`);
  const first = words[0] ?? pattern;
  return { pattern, anchors: [first, words[1] ?? first] };
}

// The active phrases, matching the search when there is one. The whole pattern is applied to
// `phrase_text || ''`, which the index cannot serve, so the planner asks the index for the
// anchors only.
const activeMatching = (db: Kysely<DB>, search: Search | null) =>
  db
    .selectFrom('phrases')
    .where('phrases.active', '=', true)
    .$if(search !== null, (qb) =>
      qb
        .where('phrases.phrase_text', 'ilike', search!.anchors[0])
        .where('phrases.phrase_text', 'ilike', search!.anchors[1])
        .where(sql<string>`phrases.phrase_text || ''`, 'ilike', search!.pattern),
    );

// A page of active phrases with the user's excluded flag. The page is cut before the exclusions
// are joined, so only its rows are looked up, and the total of matches rides along as
// count(*) OVER () from the same scan.
const userPageQuery = (db: Kysely<DB>, p: { userId: string; limit: number; offset: number }, search: Search | null) =>
  db
    .selectFrom(
      activeMatching(db, search)
        .select([...phraseColumns, sql<string>`count(*) OVER ()`.as('total')])
        .orderBy('phrases.phrase_text')
        .orderBy('phrases.id')
        .limit(p.limit)
        .offset(p.offset)
        .as('page'),
    )
    .leftJoin('user_excluded_phrases as e', (join) => join.onRef('e.phrase_id', '=', 'page.id').on('e.user_id', '=', p.userId))
    .select([
      'page.id',
      'page.text',
      'page.active',
      'page.createdBy',
      'page.createdAt',
      'page.updatedAt',
      sql<boolean>`e.user_id IS NOT NULL`.as('excluded'),
      'page.total',
    ])
    .orderBy('page.text')
    .orderBy('page.id');

// A user's list is the other page everyone visits: built and compiled once per shape.
const userPage = prepareQuery((db, p: { userId: string; limit: number; offset: number }) => userPageQuery(db, p, null));
const userPageMatching = prepareQuery(
  (db, p: { userId: string; pattern: string; first: string; second: string; limit: number; offset: number }) =>
    userPageQuery(db, p, { pattern: p.pattern, anchors: [p.first, p.second] }),
);

/**
 * One page of the active phrases, sorted by text, each with whether this user excluded it,
 * and the number of matches. `search` is a case-insensitive substring in which `%`, `_` and `\`
 * match literally. The page and its total come from one statement; the exclusion flags are
 * looked up only for the rows of the page. Without a trigram index the search scans the
 * active phrases (about 80 ms at 100,000 on a small machine).
 *
 * @example
 * const { items, total } = await phrases.listForUser(db, userId, { search: '100%', limit: 20, offset: 40 })
 */
export const listForUser = queryFunction(async function listForUser(
  db: Kysely<DB>,
  userId: string,
  listOptions?: ListOptions,
): Promise<Page<PhraseForUser>> {
  const id = requireUuid('userId', userId);
  const options = requireOptions('options', listOptions);
  const search = searchOf(options.search);
  const { limit, offset } = requirePage(options);
  const { rows } =
    search === null
      ? await userPage.execute(db, { userId: id, limit, offset })
      : await userPageMatching.execute(db, {
          userId: id,
          pattern: search.pattern,
          first: search.anchors[0],
          second: search.anchors[1],
          limit,
          offset,
        });
  return pageOf(rows, offset, async () => {
    const { n } = await activeMatching(inLibrarySchema(db), search)
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow(noRowReturned);
    return Number(n);
  });
});

/**
 * Hides a phrase from the user's random draws. Idempotent: excluding it again changes nothing.
 * An unknown phrase or user is `NotFoundError` (`entity` says which); a deactivated phrase can
 * be excluded too.
 *
 * @example await phrases.exclude(db, userId, phraseId)
 */
export const exclude = queryFunction(async function exclude(db: Kysely<DB>, userId: string, phraseId: string): Promise<void> {
  const uid = requireUuid('userId', userId);
  const pid = requireUuid('phraseId', phraseId);
  // The user's and the phrase's rows are locked (FOR KEY SHARE, as the foreign-key checks
  // would) before the row is inserted: on a held user row every caller then waits in the row's
  // queue, twice at most (its tuple lock, then the holder), and fails as LockNotAvailableError.
  // Locked only by those checks, after the speculative insert, same-key callers waited for
  // each other's insert, each wait with a new lock_timeout, until statement_timeout cancelled
  // one (QueryCanceledError, not retryable).
  const insert = () =>
    inLibrarySchema(db)
      .insertInto('user_excluded_phrases')
      .columns(['user_id', 'phrase_id'])
      .expression(
        db
          .selectFrom(['users', 'phrases'])
          .select(['users.id as user_id', 'phrases.id as phrase_id'])
          .where('users.id', '=', uid)
          .where('phrases.id', '=', pid)
          // Already excluded: no row to insert, so none to lock either (the rows are locked as
          // they pass this filter), and a call that changes nothing never waits for a held user.
          .where(({ not, exists, selectFrom }) =>
            not(exists(selectFrom('user_excluded_phrases as e').select('e.user_id').where('e.user_id', '=', uid).where('e.phrase_id', '=', pid))),
          )
          .forKeyShare(),
      )
      .onConflict((oc) => oc.columns(['user_id', 'phrase_id']).doNothing())
      .executeTakeFirst();
  // Idempotent on a database whose default isolation is REPEATABLE READ too: there a caller
  // racing another for the same key failed for serialization, and runs again (serializedStatement).
  const result = await serializedStatement(db, insert)
    // The user or the phrase deleted while the insert waited for its row (the insert read it
    // before): its foreign-key check fails, and the caller learns which one is gone.
    .catch(notFoundOnMissingReference({ user_excluded_phrases_user_id_fkey: 'user', user_excluded_phrases_phrase_id_fkey: 'phrase' }));
  if ((result.numInsertedOrUpdatedRows ?? 0n) > 0n) return;
  // Nothing inserted: already excluded (fine), or the user or the phrase does not exist.
  const found = await inLibrarySchema(db)
    .selectNoFrom(({ exists, selectFrom }) => [
      exists(selectFrom('users').select('users.id').where('users.id', '=', uid)).as('user'),
      exists(selectFrom('phrases').select('phrases.id').where('phrases.id', '=', pid)).as('phrase'),
    ])
    .executeTakeFirstOrThrow(noRowReturned);
  if (!found.user) throw new NotFoundError('user');
  if (!found.phrase) throw new NotFoundError('phrase');
});

/**
 * Shows an excluded phrase to the user again. Idempotent: including a phrase that is not
 * excluded (or does not exist) changes nothing and is no error.
 *
 * @example await phrases.include(db, userId, phraseId)
 */
export const include = queryFunction(async function include(db: Kysely<DB>, userId: string, phraseId: string): Promise<void> {
  const uid = requireUuid('userId', userId);
  const pid = requireUuid('phraseId', phraseId);
  await serializedStatement(db, () => inLibrarySchema(db).deleteFrom('user_excluded_phrases').where('user_id', '=', uid).where('phrase_id', '=', pid).execute());
});

/**
 * One page of the phrases the user excluded, most recently excluded first, deactivated ones
 * included (with `active: false`), and their number. An unknown user has excluded nothing.
 *
 * @example
 * const { items, total } = await phrases.listExcluded(db, userId) // items[0].excludedAt
 */
export const listExcluded = queryFunction(async function listExcluded(
  db: Kysely<DB>,
  userId: string,
  options?: PageOptions,
): Promise<Page<ExcludedPhrase>> {
  const id = requireUuid('userId', userId);
  const { limit, offset } = requirePage(requireOptions('options', options));
  const excluded = inLibrarySchema(db)
    .selectFrom('user_excluded_phrases as e')
    .innerJoin('phrases', 'phrases.id', 'e.phrase_id')
    .where('e.user_id', '=', id);
  const rows = await excluded
    .select([...phraseColumns, 'e.created_at as excludedAt', sql<string>`count(*) over ()`.as('total')])
    .orderBy('e.created_at', 'desc')
    .orderBy('phrases.id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  return pageOf(rows, offset, async () => {
    const { n } = await excluded.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(noRowReturned);
    return Number(n);
  });
});

/**
 * Adds an active phrase; admin only (`ForbiddenError` otherwise, checked in the same
 * transaction). The acting admin is credited as its creator.
 *
 * @example
 * const phrase = await phrases.create(db, { text: 'Ship it.', createdBy: adminId })
 */
export const create = queryFunction(async function create(db: Kysely<DB>, newPhrase: NewPhrase): Promise<Phrase> {
  const input = requireInput('input', newPhrase);
  const row = {
    phrase_text: requireText('text', input.text, limits.phraseLength),
    created_by: requireUuid('createdBy', input.createdBy),
  };
  return inTransaction(db, async (trx) => {
    await requireRole(trx, row.created_by, 'admin');
    return inLibrarySchema(trx).insertInto('phrases').values(row).returning(phraseColumns).executeTakeFirstOrThrow(noRowReturned);
  });
});

/**
 * Changes a phrase's text and/or active flag, as the admin `adminId` (`ForbiddenError`
 * otherwise, checked in the same transaction). Deactivating hides the phrase from draws and
 * user lists but keeps it and its exclusions; an unknown phrase is `NotFoundError`.
 *
 * @example
 * await phrases.update(db, { phraseId, adminId }, { active: false })
 */
export const update = queryFunction(async function update(
  db: Kysely<DB>,
  phrase: { phraseId: string; adminId: string },
  phraseChanges: { text?: string | undefined; active?: boolean | undefined },
): Promise<Phrase> {
  const target = requireInput('target', phrase);
  const changes = requireInput('changes', phraseChanges);
  const phraseId = requireUuid('phraseId', target.phraseId);
  const adminId = requireUuid('adminId', target.adminId);
  const set: { phrase_text?: string; active?: boolean } = {};
  if (changes.text !== undefined) set.phrase_text = requireText('text', changes.text, limits.phraseLength);
  if (changes.active !== undefined) set.active = requireBoolean('active', changes.active);
  if (Object.keys(set).length === 0) throw new ValidationError('changes', 'name at least one of text, active');
  return inTransaction(db, async (trx) => {
    await requireRole(trx, adminId, 'admin');
    const updated = await inLibrarySchema(trx)
      .updateTable('phrases')
      .set(set)
      .where('id', '=', phraseId)
      .returning(phraseColumns)
      .executeTakeFirst();
    if (!updated) throw new NotFoundError('phrase');
    return updated;
    // READ COMMITTED whatever the database's default: two admins' changes at once apply one
    // after the other rather than fail for serialization.
  }, { ownReadCommitted: true });
});

/**
 * One page of all phrases for the admin `adminId` (`ForbiddenError` otherwise, checked in the
 * same transaction), newest first, deactivated ones included unless `includeInactive: false`,
 * with `search` as in {@link listForUser}, and the number of matches.
 *
 * @example
 * const { items, total } = await phrases.list(db, adminId, { search: 'habit', includeInactive: false })
 */
export const list = queryFunction(async function list(db: Kysely<DB>, adminId: string, listOptions?: AdminListOptions): Promise<Page<Phrase>> {
  const id = requireUuid('adminId', adminId);
  const options = requireOptions('options', listOptions);
  const pattern = searchOf(options.search)?.pattern ?? null;
  const { limit, offset } = requirePage(options);
  const includeInactive = options.includeInactive === undefined ? true : requireBoolean('includeInactive', options.includeInactive);
  return inTransaction(db, async (trx) => {
    await requireRole(trx, id, 'admin');
    const matches = inLibrarySchema(trx)
      .selectFrom('phrases')
      .$if(!includeInactive, (qb) => qb.where('phrases.active', '=', true))
      .$if(pattern !== null, (qb) => qb.where('phrases.phrase_text', 'ilike', pattern!));
    const rows = await matches
      .select([...phraseColumns, sql<string>`count(*) over ()`.as('total')])
      // draw_no follows insertion order and is unique: newest first, deterministically.
      .orderBy('phrases.draw_no', 'desc')
      .limit(limit)
      .offset(offset)
      .execute();
    return pageOf(rows, offset, async () => {
      const { n } = await matches.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(noRowReturned);
      return Number(n);
    });
  });
});

/**
 * How many phrases exist (`total`) and how many of them are active (`active`, the ones users
 * can draw), in one scan.
 *
 * @example
 * const { total, active } = await phrases.count(db)
 */
export const count = queryFunction(async function count(db: Kysely<DB>): Promise<{ total: number; active: number }> {
  const row = await inLibrarySchema(db)
    .selectFrom('phrases')
    .select((eb) => [
      eb.fn.countAll<string>().as('total'),
      sql<string>`count(*) filter (where active)`.as('active'),
    ])
    .executeTakeFirstOrThrow(noRowReturned);
  return { total: Number(row.total), active: Number(row.active) };
});
