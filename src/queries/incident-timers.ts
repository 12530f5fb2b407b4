import { type Kysely, type Selectable, sql } from 'kysely';
import type { DB, IncidentTimers } from '../../generated/db.js';
import { gatedByUserRow } from './user-row-gate.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { prepareQuery } from '../db/prepared-query.js';
import { queryFunction } from '../db/query-function.js';
import { serializedStatement } from '../db/serialized-statement.js';
import { timestamptzText } from '../db/timestamptz-text.js';
import { NotFoundError, ValidationError } from '../errors.js';
import {
  limits,
  requireDate,
  requireInput,
  requireOptions,
  requirePage,
  requireSlug,
  textOrNull,
  requireUuid,
} from '../validation.js';
import type { CamelCased } from './camel-cased.js';
import { notFoundOnMissingReference } from './missing-reference.js';
import { noRowReturned } from './no-row-returned.js';
import { type Page, type PageOptions, pageOf } from './page.js';

export type { Page, PageOptions } from './page.js';

/** A "days since the last incident" timer: counting from `resetAt`. */
export type IncidentTimer = CamelCased<Selectable<IncidentTimers>>;

/** The public page's timer and whose it is. */
export interface PublicTimer {
  timer: IncidentTimer;
  displayName: string;
}

/** Names one timer of one user: every change is scoped to the owner. */
export interface TimerRef {
  id: string;
  userId: string;
}

const timerColumns = [
  'incident_timers.id',
  'incident_timers.user_id as userId',
  'incident_timers.reset_at as resetAt',
  'incident_timers.notes',
  'incident_timers.created_at as createdAt',
  'incident_timers.updated_at as updatedAt',
] as const;

// Notes come from a text area: blank means "no notes".
function normaliseNotes(value: unknown): string | null {
  return textOrNull('notes', value, limits.notesLength);
}

/**
 * Starts a timer for a user, from `resetAt` (default: now, by the database clock).
 * An unknown user is `NotFoundError`.
 *
 * @example const timer = await incidentTimers.create(db, { userId, notes: 'Deploy went fine' })
 */
export const create = queryFunction(async function create(
  db: Kysely<DB>,
  newTimer: { userId: string; resetAt?: Date | undefined; notes?: string | null | undefined },
): Promise<IncidentTimer> {
  const input = requireInput('input', newTimer);
  const row = {
    user_id: requireUuid('userId', input.userId),
    notes: normaliseNotes(input.notes),
    ...(input.resetAt === undefined ? {} : { reset_at: timestamptzText(requireDate('resetAt', input.resetAt)) }),
  };
  // Its foreign key's check locks the user's row (FOR KEY SHARE), which a transaction that
  // deletes the user or changes the slug holds: through the user's gate, a burst for that row
  // takes one connection, not the pool.
  return gatedByUserRow(db, row.user_id, () =>
    inLibrarySchema(db)
      .insertInto('incident_timers')
      .values(row)
      .returning(timerColumns)
      .executeTakeFirstOrThrow(noRowReturned)
      .catch(notFoundOnMissingReference('user')),
    'FOR KEY SHARE',
  );
});

/**
 * One page of the user's timers, most recently reset first, and their number (`limit` 1 to
 * 100, default 20, as every list).
 *
 * @example const { items, total } = await incidentTimers.listForUser(db, userId, { limit: 10 })
 */
export const listForUser = queryFunction(async function listForUser(
  db: Kysely<DB>,
  userId: string,
  options?: PageOptions,
): Promise<Page<IncidentTimer>> {
  const id = requireUuid('userId', userId);
  const { limit, offset } = requirePage(requireOptions('options', options));
  const own = inLibrarySchema(db).selectFrom('incident_timers').where('user_id', '=', id);
  const rows = await own
    .select([...timerColumns, sql<string>`count(*) over ()`.as('total')])
    .orderBy('reset_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .offset(offset)
    .execute();
  return pageOf(rows, offset, async () => {
    const { n } = await own.select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(noRowReturned);
    return Number(n);
  });
});

// The public page is the most visited query: built and compiled once (see prepareQuery).
const latestPublic = prepareQuery((db, p: { slug: string }) =>
  db
    .selectFrom('users')
    .innerJoin('incident_timers', 'incident_timers.user_id', 'users.id')
    .select([...timerColumns, 'users.display_name as displayName'])
    .where('users.slug', '=', p.slug)
    // Constants as literals: fewer parameters to bind, and the planner sees them.
    .where('users.active', '=', sql.lit(true))
    .orderBy('incident_timers.reset_at', 'desc')
    .orderBy('incident_timers.id', 'desc')
    .limit(sql.lit(1)),
);

/**
 * The public page of the user with this slug: their most recently reset timer and their
 * display name; null when the slug is unknown, the user is inactive, or has no timer.
 *
 * @example
 * const page = await incidentTimers.latestPublicBySlug(db, 'kenn')
 * // { timer: { resetAt, notes, … }, displayName: 'Kenn' } | null
 */
export const latestPublicBySlug = queryFunction(async function latestPublicBySlug(db: Kysely<DB>, slug: string): Promise<PublicTimer | null> {
  const value = requireSlug(slug);
  const row = (await latestPublic.execute(db, { slug: value })).rows[0];
  if (!row) return null;
  const { displayName, ...timer } = row;
  return { timer, displayName };
});

/**
 * Changes the reset time and/or notes of the caller's own timer (`notes: null` clears them).
 * Another user's timer is `NotFoundError`, and nothing changes.
 *
 * @example await incidentTimers.update(db, { id: timerId, userId: me.id }, { resetAt: new Date() })
 */
export const update = queryFunction(async function update(
  db: Kysely<DB>,
  timer: TimerRef,
  timerChanges: { resetAt?: Date | undefined; notes?: string | null | undefined },
): Promise<IncidentTimer> {
  const ref = requireInput('ref', timer);
  const changes = requireInput('changes', timerChanges);
  const id = requireUuid('id', ref.id);
  const userId = requireUuid('userId', ref.userId);
  const set: { reset_at?: string; notes?: string | null } = {};
  if (changes.resetAt !== undefined) set.reset_at = timestamptzText(requireDate('resetAt', changes.resetAt));
  if (changes.notes !== undefined) set.notes = normaliseNotes(changes.notes);
  if (Object.keys(set).length === 0) throw new ValidationError('changes', 'name at least one of resetAt, notes');
  // Where the database defaults to REPEATABLE READ, an update racing another failed for
  // serialization: it runs again, and applies over it, as at READ COMMITTED.
  const updated = await serializedStatement(db, () =>
    inLibrarySchema(db).updateTable('incident_timers').set(set).where('id', '=', id).where('user_id', '=', userId).returning(timerColumns).executeTakeFirst(),
  );
  if (!updated) throw new NotFoundError('incident timer');
  return updated;
});

/**
 * Deletes the caller's own timer; another user's timer is `NotFoundError`, and stays.
 *
 * @example await incidentTimers.remove(db, { id: timerId, userId: me.id })
 */
export const remove = queryFunction(async function remove(db: Kysely<DB>, timer: TimerRef): Promise<void> {
  const ref = requireInput('ref', timer);
  const id = requireUuid('id', ref.id);
  const userId = requireUuid('userId', ref.userId);
  const result = await serializedStatement(db, () =>
    inLibrarySchema(db).deleteFrom('incident_timers').where('id', '=', id).where('user_id', '=', userId).executeTakeFirst(),
  );
  if (result.numDeletedRows === 0n) throw new NotFoundError('incident timer');
});
