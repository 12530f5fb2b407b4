import { type Kysely, type Selectable, type Transaction, sql } from 'kysely';
import type { DB, PhraseSuggestions } from '../../generated/db.js';
import { inTransaction } from '../db/in-transaction.js';
import { gatedByUserRow } from './user-row-gate.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { prepareQuery } from '../db/prepared-query.js';
import { queryFunction } from '../db/query-function.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { limits, optionalText, requireInput, requireOptions, requirePage, requireText, requireUuid } from '../validation.js';
import type { CamelCased } from './camel-cased.js';
import { noRowReturned } from './no-row-returned.js';
import { notFoundOnMissingReference } from './missing-reference.js';
import { type Page, type PageOptions, pageOf } from './page.js';
import type { Phrase } from './phrases.js';
import { holdsRole, requireRole } from './require-role.js';

/**
 * Phrases users suggest, and the admins' review of them.
 *
 * Deleting a user never fails because of suggestions: the user's own suggestions go with them
 * (ON DELETE CASCADE), while a phrase already made from one stays, uncredited (`createdBy`
 * becomes null); deleting the admin who decided a suggestion keeps the decision with
 * `reviewedBy` null (ON DELETE SET NULL).
 */

/** Where a suggestion stands: the values `phrase_suggestions.status`'s CHECK allows (generated). */
export type SuggestionStatus = Selectable<PhraseSuggestions>['status'];

/** A suggestion as services see it (`phrase_text` is `text`). */
export type PhraseSuggestion = CamelCased<Omit<Selectable<PhraseSuggestions>, 'phrase_text'>> & { text: string };

/** A pending suggestion with who suggested it, for the admins' review queue. */
export type PendingSuggestion = PhraseSuggestion & { submitterDisplayName: string; submitterEmail: string };

export interface Decision {
  suggestionId: string;
  /** The deciding admin; `ForbiddenError` unless they hold the admin role. */
  adminId: string;
  /** Up to 500 characters, stored with the decision; shown to the submitter if the service wants. */
  reason?: string | null | undefined;
}

const suggestionColumns = [
  'phrase_suggestions.id',
  'phrase_suggestions.user_id as userId',
  'phrase_suggestions.phrase_text as text',
  'phrase_suggestions.status',
  'phrase_suggestions.reviewed_by as reviewedBy',
  'phrase_suggestions.reviewed_at as reviewedAt',
  'phrase_suggestions.review_reason as reviewReason',
  'phrase_suggestions.phrase_id as phraseId',
  'phrase_suggestions.created_at as createdAt',
  'phrase_suggestions.updated_at as updatedAt',
] as const;

/**
 * Records a pending suggestion by the user. An unknown user is `NotFoundError`.
 *
 * @example
 * const suggestion = await phraseSuggestions.submit(db, userId, 'Rest is part of the work.')
 */
export const submit = queryFunction(async function submit(db: Kysely<DB>, userId: string, text: string): Promise<PhraseSuggestion> {
  const row = { user_id: requireUuid('userId', userId), phrase_text: requireText('text', text, limits.phraseLength) };
  // Through the user's gate, as incidentTimers.create: its foreign key's check locks the user's row.
  return gatedByUserRow(db, row.user_id, () =>
    inLibrarySchema(db)
      .insertInto('phrase_suggestions')
      .values(row)
      .returning(suggestionColumns)
      .executeTakeFirstOrThrow(noRowReturned)
      .catch(notFoundOnMissingReference('user')),
    'FOR KEY SHARE',
  );
});

/**
 * One page of the user's own suggestions, newest first, with their review outcome, and their
 * number.
 *
 * @example
 * const { items, total } = await phraseSuggestions.listForUser(db, userId, { limit: 10 })
 */
export const listForUser = queryFunction(async function listForUser(
  db: Kysely<DB>,
  userId: string,
  options?: PageOptions,
): Promise<Page<PhraseSuggestion>> {
  const id = requireUuid('userId', userId);
  const { limit, offset } = requirePage(requireOptions('options', options));
  const own = inLibrarySchema(db).selectFrom('phrase_suggestions').where('phrase_suggestions.user_id', '=', id);
  const rows = await own
    .select([...suggestionColumns, sql<string>`count(*) over ()`.as('total')])
    .orderBy('phrase_suggestions.created_at', 'desc')
    .orderBy('phrase_suggestions.id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  return pageOf(rows, offset, async () => {
    const { n } = await own.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(noRowReturned);
    return Number(n);
  });
});

/**
 * One page of the review queue, oldest first, each with the submitter's display name and email,
 * and its length. Admin only (the rows carry users' email addresses): `ForbiddenError` otherwise,
 * checked in the same transaction.
 *
 * @example
 * const { items, total } = await phraseSuggestions.listPending(db, adminId, { limit: 50 })
 */
export const listPending = queryFunction(async function listPending(
  db: Kysely<DB>,
  adminId: string,
  options?: PageOptions,
): Promise<Page<PendingSuggestion>> {
  const id = requireUuid('adminId', adminId);
  const { limit, offset } = requirePage(requireOptions('options', options));
  return inTransaction(db, async (trx) => {
    await requireRole(trx, id, 'admin');
    const pending = inLibrarySchema(trx).selectFrom('phrase_suggestions').where('phrase_suggestions.status', '=', 'pending');
    const rows = await pending
      .innerJoin('users', 'users.id', 'phrase_suggestions.user_id')
      .select([
        ...suggestionColumns,
        'users.display_name as submitterDisplayName',
        'users.email as submitterEmail',
        sql<string>`count(*) over ()`.as('total'),
      ])
      .orderBy('phrase_suggestions.created_at')
      .orderBy('phrase_suggestions.id')
      .limit(limit)
      .offset(offset)
      .execute();
    return pageOf(rows, offset, async () => {
      const { n } = await pending.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(noRowReturned);
      return Number(n);
    });
  });
});

// A decision runs in one transaction of two statements, both built and compiled once (see
// prepareQuery). First the suggestion is locked FOR UPDATE, by the statement that also checks
// the admin's role (a non-admin locks nothing): of two admins deciding at once, the second
// waits for the first to commit, then reads the decided row and gets a Conflict.
// Before the suggestion, it takes the rows of the two users the decision will refer to (the
// suggesting user, whom the phrase credits, and the admin) FOR KEY SHARE, the lock their
// foreign-key checks would take later: in the order a user's deletion takes them (the user,
// then the suggestions its cascade removes). Taken after the suggestion, a decision and the
// deletion of the suggesting user each waited for the other's row until PostgreSQL broke the
// deadlock. Now the decision waits for the deletion, then finds no suggestion (NotFound) or no
// admin (Forbidden); and an admin deleted meanwhile cannot leave the decision pointing nowhere.
const lockSuggestion = prepareQuery((db, p: { suggestionId: string; adminId: string }) =>
  db
    .selectFrom('phrase_suggestions')
    .select(['user_id', 'phrase_text', 'status'])
    .where('id', '=', p.suggestionId)
    .where((eb) => eb.exists(eb.selectFrom('users').select('users.id').whereRef('users.id', '=', 'phrase_suggestions.user_id').forKeyShare()))
    .where((eb) => eb.exists(eb.selectFrom('users').select('users.id').where('users.id', '=', p.adminId).forKeyShare()))
    .where(holdsRole(p.adminId, 'admin'))
    .forUpdate(),
);

// Then one statement creates the phrase, credited to the suggesting user, and records the
// decision that links to it; the time is the database's (now(), the transaction's start).
const approveSuggestion = prepareQuery(
  (db, p: { suggestionId: string; adminId: string; reason: string | null; text: string; userId: string }) =>
    db
      .with('created', (qc) =>
        qc
          .insertInto('phrases')
          .values({ phrase_text: p.text, created_by: p.userId })
          .returning([
            'phrases.id',
            'phrases.phrase_text as text',
            'phrases.active',
            'phrases.created_by as createdBy',
            'phrases.created_at as createdAt',
            'phrases.updated_at as updatedAt',
          ]),
      )
      .updateTable('phrase_suggestions')
      .from('created')
      .set((eb) => ({
        status: 'approved',
        reviewed_by: p.adminId,
        reviewed_at: sql`now()`,
        review_reason: p.reason,
        phrase_id: eb.ref('created.id'),
      }))
      .where('phrase_suggestions.id', '=', p.suggestionId)
      .returning(['created.id', 'created.text', 'created.active', 'created.createdBy', 'created.createdAt', 'created.updatedAt']),
);

const rejectSuggestion = prepareQuery((db, p: { suggestionId: string; adminId: string; reason: string | null }) =>
  db
    .updateTable('phrase_suggestions')
    .set({ status: 'rejected', reviewed_by: p.adminId, reviewed_at: sql`now()`, review_reason: p.reason })
    .where('phrase_suggestions.id', '=', p.suggestionId)
    .returning(suggestionColumns),
);

// The call that lost a race for a suggestion reads it again once the winner commits, and finds
// it decided (ConflictError), where a database or role that defaults to REPEATABLE READ would
// fail it as SerializationError instead. A caller's transaction keeps the caller's level.
const decidingSuggestions = { ownReadCommitted: true } as const;

async function lockPending(trx: Transaction<DB>, suggestionId: string, adminId: string) {
  const suggestion = (await lockSuggestion.execute(trx, { suggestionId, adminId })).rows[0];
  if (!suggestion) {
    // Only a missing row costs a second look, to tell Forbidden from NotFound.
    await requireRole(trx, adminId, 'admin');
    throw new NotFoundError('suggestion');
  }
  if (suggestion.status !== 'pending') throw new ConflictError(`The suggestion was already ${suggestion.status}`);
  return suggestion;
}

/**
 * Approves a pending suggestion in one transaction of two statements: the suggestion is locked
 * (by the statement that checks the admin's role), then an active phrase is created, credited
 * to the suggesting user, and the decision (admin, reason, the database's now()) recorded with
 * the new phrase's id. Returns the phrase. Not admin: `ForbiddenError`; unknown suggestion:
 * `NotFoundError`; already approved or rejected, including by a concurrent call that won the
 * race: `ConflictError`.
 *
 * @example
 * const phrase = await phraseSuggestions.approve(db, { suggestionId, adminId, reason: 'Lovely' })
 */
export const approve = queryFunction(async function approve(db: Kysely<DB>, reviewed: Decision): Promise<Phrase> {
  const decision = requireInput('decision', reviewed);
  const suggestionId = requireUuid('suggestionId', decision.suggestionId);
  const adminId = requireUuid('adminId', decision.adminId);
  const reason = optionalText('reason', decision.reason, limits.reasonLength);
  return inTransaction(
    db,
    async (trx) => {
      const suggestion = await lockPending(trx, suggestionId, adminId);
      const { rows } = await approveSuggestion.execute(trx, {
        suggestionId,
        adminId,
        reason,
        text: suggestion.phrase_text,
        userId: suggestion.user_id,
      });
      return rows[0]!;
    },
    decidingSuggestions,
  );
});

/**
 * Rejects a pending suggestion, recording the admin, reason and time, in one transaction with
 * the same checks and errors as {@link approve}. Returns the decided suggestion.
 *
 * @example
 * await phraseSuggestions.reject(db, { suggestionId, adminId, reason: 'Already have this one' })
 */
export const reject = queryFunction(async function reject(db: Kysely<DB>, reviewed: Decision): Promise<PhraseSuggestion> {
  const decision = requireInput('decision', reviewed);
  const suggestionId = requireUuid('suggestionId', decision.suggestionId);
  const adminId = requireUuid('adminId', decision.adminId);
  const reason = optionalText('reason', decision.reason, limits.reasonLength);
  return inTransaction(
    db,
    async (trx) => {
      await lockPending(trx, suggestionId, adminId);
      return (await rejectSuggestion.execute(trx, { suggestionId, adminId, reason })).rows[0]!;
    },
    decidingSuggestions,
  );
});

/** How many suggestions await review (served by the partial index on pending rows). @example await phraseSuggestions.countPending(db) */
export const countPending = queryFunction(async function countPending(db: Kysely<DB>): Promise<number> {
  const { n } = await inLibrarySchema(db)
    .selectFrom('phrase_suggestions')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow(noRowReturned);
  return Number(n);
});
