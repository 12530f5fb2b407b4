import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../../src/errors.js';
import * as incidentTimers from '../../src/queries/incident-timers.js';
import * as users from '../../src/queries/users.js';
import { newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();
const unknownId = '01890000-0000-7000-8000-000000000000';

describe('incidentTimers.create', () => {
  it('starts a timer now by default, or from a given reset time, with notes', async () => {
    const user = await newUser(testDb.db);
    const before = Date.now();
    const now = await incidentTimers.create(testDb.db, { userId: user.id });
    expect(now).toEqual({
      id: expect.any(String),
      userId: user.id,
      resetAt: expect.any(Date),
      notes: null,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    expect(Math.abs(now.resetAt.getTime() - before)).toBeLessThan(5_000);

    const past = new Date('2025-01-01T00:00:00Z');
    expect(await incidentTimers.create(testDb.db, { userId: user.id, resetAt: past, notes: ' Fixed it ' })).toMatchObject({
      resetAt: past,
      notes: 'Fixed it',
    });
  });

  it('refuses an unknown user with NotFound and bad input with Validation naming the field', async () => {
    await expect(incidentTimers.create(testDb.db, { userId: unknownId })).rejects.toMatchObject({ entity: 'user' });
    await expect(incidentTimers.create(testDb.db, { userId: 'nope' })).rejects.toMatchObject({ field: 'userId' });
    const user = await newUser(testDb.db);
    await expect(
      incidentTimers.create(testDb.db, { userId: user.id, notes: 'x'.repeat(2001) }),
    ).rejects.toMatchObject({ field: 'notes' });
    await expect(
      incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('invalid') }),
    ).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('incidentTimers dates at the edges', () => {
  it('stores the first instant of timestamptz and JavaScript’s last date exactly, and refuses a millisecond earlier', async () => {
    const user = await newUser(testDb.db);
    const earliest = new Date(Date.UTC(-4713, 10, 24));
    const latest = new Date(8.64e15);
    expect((await incidentTimers.create(testDb.db, { userId: user.id, resetAt: earliest })).resetAt).toEqual(earliest);
    expect((await incidentTimers.create(testDb.db, { userId: user.id, resetAt: latest })).resetAt).toEqual(latest);
    await expect(
      incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date(earliest.getTime() - 1) }),
    ).rejects.toMatchObject({ field: 'resetAt' });
  });
});

// pg writes a Date in the process's local time, its zone's offset cut to whole minutes: New
// York's local mean time (-4:56:02) stored 1800-01-01 2 s early, and refused 4714-11-24 BC.
describe("incidentTimers dates in a service whose TZ once had offsets of seconds", () => {
  it.each([
    ['America/New_York', '1800-01-01T00:00:00.000Z'],
    ['Africa/Monrovia', '1970-01-01T00:00:00.000Z'],
    ['America/New_York', new Date(Date.UTC(-4713, 10, 24)).toISOString()],
  ])('%s: %s is stored as that instant, on create and update', async (zone, instant) => {
    const before = process.env.TZ;
    process.env.TZ = zone;
    try {
      const resetAt = new Date(instant);
      // The zone is in force: its offset then had seconds.
      expect(resetAt.getSeconds()).not.toBe(resetAt.getUTCSeconds());
      const user = await newUser(testDb.db);
      const created = await incidentTimers.create(testDb.db, { userId: user.id, resetAt });
      const updated = await incidentTimers.update(testDb.db, { id: (await incidentTimers.create(testDb.db, { userId: user.id })).id, userId: user.id }, { resetAt });
      const { rows } = await sql<{ ms: number }>`
        SELECT (extract(epoch FROM reset_at) * 1000)::float8 AS ms FROM incident_timers WHERE id IN (${created.id}, ${updated.id})`.execute(testDb.db);
      expect(rows).toEqual([{ ms: resetAt.getTime() }, { ms: resetAt.getTime() }]);
      expect([created.resetAt, updated.resetAt]).toEqual([resetAt, resetAt]);
    } finally {
      if (before === undefined) delete process.env.TZ;
      else process.env.TZ = before;
    }
  });
});

describe('incidentTimers.listForUser', () => {
  it('lists only the user’s timers, most recently reset first', async () => {
    const user = await newUser(testDb.db);
    const other = await newUser(testDb.db);
    await incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('2025-01-01T00:00:00Z') });
    await incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('2025-03-01T00:00:00Z') });
    await incidentTimers.create(testDb.db, { userId: other.id });
    const { items, total } = await incidentTimers.listForUser(testDb.db, user.id);
    expect(items.map((t) => t.resetAt.toISOString())).toEqual(['2025-03-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z']);
    expect(total).toBe(2);
    const second = await incidentTimers.listForUser(testDb.db, user.id, { limit: 1, offset: 1 });
    expect(second).toEqual({ items: [items[1]], total: 2 });
    await expect(incidentTimers.listForUser(testDb.db, user.id, { limit: 0 })).rejects.toMatchObject({ field: 'limit' });
    await expect(incidentTimers.listForUser(testDb.db, user.id, { offset: -1 })).rejects.toMatchObject({ field: 'offset' });
  });

  it('returns a page of 20 by default with the total of all the user’s timers, like every other list', async () => {
    const user = await newUser(testDb.db);
    await sql`INSERT INTO incident_timers (user_id, reset_at)
              SELECT ${user.id}, timestamptz '2025-01-01' + make_interval(days => i) FROM generate_series(1, 25) AS i`.execute(
      testDb.db,
    );
    const first = await incidentTimers.listForUser(testDb.db, user.id);
    expect(first.items).toHaveLength(20);
    expect(first.total).toBe(25);
    expect(first.items[0]!.resetAt).toEqual(new Date('2025-01-26T00:00:00Z'));
    expect(await incidentTimers.listForUser(testDb.db, user.id, { offset: 20 })).toMatchObject({ total: 25 });
    expect((await incidentTimers.listForUser(testDb.db, user.id, { offset: 20 })).items).toHaveLength(5);
    expect(await incidentTimers.listForUser(testDb.db, user.id, { offset: 40 })).toEqual({ items: [], total: 25 });
  });
});

describe('incidentTimers.latestPublicBySlug', () => {
  it('returns the latest timer by reset time with the owner’s display name', async () => {
    const user = await newUser(testDb.db, { displayName: 'Public Person' });
    await incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('2025-05-01T00:00:00Z') });
    const latest = await incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('2025-06-01T00:00:00Z') });
    await incidentTimers.create(testDb.db, { userId: user.id, resetAt: new Date('2025-02-01T00:00:00Z') });
    expect(await incidentTimers.latestPublicBySlug(testDb.db, user.slug)).toEqual({
      timer: latest,
      displayName: 'Public Person',
    });
  });

  it('returns null for an unknown slug, a user without timers, and an inactive user', async () => {
    expect(await incidentTimers.latestPublicBySlug(testDb.db, 'no-such-slug')).toBeNull();
    const idle = await newUser(testDb.db);
    expect(await incidentTimers.latestPublicBySlug(testDb.db, idle.slug)).toBeNull();
    const gone = await newUser(testDb.db);
    await incidentTimers.create(testDb.db, { userId: gone.id });
    await users.setActive(testDb.db, gone.id, false);
    expect(await incidentTimers.latestPublicBySlug(testDb.db, gone.slug)).toBeNull();
  });
});

describe('incidentTimers.update / remove', () => {
  it('changes the owner’s timer and clears notes with null', async () => {
    const user = await newUser(testDb.db);
    const timer = await incidentTimers.create(testDb.db, { userId: user.id, notes: 'first' });
    const resetAt = new Date('2025-07-01T00:00:00Z');
    const updated = await incidentTimers.update(testDb.db, { id: timer.id, userId: user.id }, { resetAt, notes: null });
    expect(updated).toMatchObject({ id: timer.id, resetAt, notes: null });
  });

  it('treats another user’s timer as NotFound and changes nothing', async () => {
    const owner = await newUser(testDb.db);
    const intruder = await newUser(testDb.db);
    const timer = await incidentTimers.create(testDb.db, { userId: owner.id, notes: 'mine' });

    await expect(
      incidentTimers.update(testDb.db, { id: timer.id, userId: intruder.id }, { notes: 'hijacked' }),
    ).rejects.toBeInstanceOf(NotFoundError);
    await expect(incidentTimers.remove(testDb.db, { id: timer.id, userId: intruder.id })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await incidentTimers.listForUser(testDb.db, owner.id)).toEqual({ items: [timer], total: 1 });
  });

  it('removes the owner’s timer', async () => {
    const user = await newUser(testDb.db);
    const timer = await incidentTimers.create(testDb.db, { userId: user.id });
    await incidentTimers.remove(testDb.db, { id: timer.id, userId: user.id });
    expect(await incidentTimers.listForUser(testDb.db, user.id)).toEqual({ items: [], total: 0 });
    await expect(incidentTimers.remove(testDb.db, { id: timer.id, userId: user.id })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses an update that changes nothing', async () => {
    const user = await newUser(testDb.db);
    const timer = await incidentTimers.create(testDb.db, { userId: user.id });
    await expect(incidentTimers.update(testDb.db, { id: timer.id, userId: user.id }, {})).rejects.toMatchObject({
      field: 'changes',
    });
  });
});
