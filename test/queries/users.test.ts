import { sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { NotFoundError, UniqueViolationError, ValidationError } from '../../src/errors.js';
import * as users from '../../src/queries/users.js';
import { eventually } from '../support/eventually.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

describe('users.create', () => {
  it('creates an active user holding the user role, with camelCase fields and Date timestamps', async () => {
    const user = await users.create(testDb.db, {
      email: 'Ada@Example.org',
      passwordHash: 'hash',
      displayName: '  Ada Lovelace ',
      slug: 'ada',
    });
    expect(user).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      email: 'Ada@Example.org',
      displayName: 'Ada Lovelace',
      slug: 'ada',
      active: true,
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    expect(await users.getRoles(testDb.db, user.id)).toEqual(['user']);
  });

  it('rejects a duplicate email in another letter case with UniqueViolation naming the field', async () => {
    await newUser(testDb.db, { email: 'dup@example.org' });
    const error = await newUser(testDb.db, { email: 'DUP@example.ORG' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UniqueViolationError);
    expect(error).toMatchObject({ field: 'email', constraint: 'users_email_key', sqlState: '23505' });
  });

  it('rejects a duplicate slug with UniqueViolation naming the field, leaving no half-created user', async () => {
    await newUser(testDb.db, { slug: 'same-slug' });
    await expect(newUser(testDb.db, { slug: 'same-slug', email: 'other@example.org' })).rejects.toMatchObject({
      field: 'slug',
    });
    expect(await users.findByEmail(testDb.db, 'other@example.org')).toBeNull();
  });

  it.each([
    ['email', { email: 'not-an-email' }],
    ['email', { email: `${'a'.repeat(250)}@example.org` }],
    ['slug', { slug: 'Has Spaces' }],
    ['slug', { slug: 'a'.repeat(51) }],
    ['displayName', { displayName: '   ' }],
    ['displayName', { displayName: 'x'.repeat(101) }],
    ['passwordHash', { passwordHash: '' }],
  ])('rejects an invalid %s before any query', async (field, overrides) => {
    const error = await newUser(testDb.db, overrides).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
  });
});

describe('users.findBy…', () => {
  it('finds by id, by email in any case (with the password hash) and by slug', async () => {
    const user = await newUser(testDb.db, { email: 'Find.Me@Example.org', slug: 'find-me' });
    expect(await users.findById(testDb.db, user.id)).toEqual(user);
    expect(await users.findByEmail(testDb.db, 'find.me@EXAMPLE.org')).toEqual({ ...user, passwordHash: expect.any(String) });
    expect(await users.findBySlug(testDb.db, 'find-me')).toEqual(user);
  });

  it('returns null for unknown users and rejects a malformed id', async () => {
    expect(await users.findById(testDb.db, '01890000-0000-7000-8000-000000000000')).toBeNull();
    expect(await users.findByEmail(testDb.db, 'nobody@example.org')).toBeNull();
    expect(await users.findBySlug(testDb.db, 'nobody')).toBeNull();
    await expect(users.findById(testDb.db, 'not-a-uuid')).rejects.toMatchObject({ field: 'userId' });
  });
});

describe('users.updateProfile / updatePassword', () => {
  it('changes the display name and slug', async () => {
    const user = await newUser(testDb.db);
    const updated = await users.updateProfile(testDb.db, user.id, { displayName: 'New Name', slug: 'new-slug' });
    expect(updated).toMatchObject({ id: user.id, displayName: 'New Name', slug: 'new-slug' });
    // Compared in the database, at its microsecond precision: a Date has only milliseconds, and
    // both statements may fall in the same one. The update's transaction starts later, so its
    // now() is strictly later than the creation's.
    const { rows } = await sql<{ bumped: boolean; returned: boolean }>`
      SELECT updated_at > created_at AS bumped, date_trunc('milliseconds', updated_at) = ${updated.updatedAt} AS returned
      FROM users WHERE id = ${user.id}`.execute(testDb.db);
    expect(rows).toEqual([{ bumped: true, returned: true }]);
    expect(updated.createdAt).toEqual(user.createdAt);
  });

  it('refuses a taken slug and an unknown user', async () => {
    const a = await newUser(testDb.db);
    const b = await newUser(testDb.db);
    await expect(users.updateProfile(testDb.db, b.id, { slug: a.slug })).rejects.toMatchObject({ field: 'slug' });
    await expect(
      users.updateProfile(testDb.db, '01890000-0000-7000-8000-000000000000', { displayName: 'X' }),
    ).rejects.toBeInstanceOf(NotFoundError);
  });

  it('stores a new password hash', async () => {
    const user = await newUser(testDb.db);
    expect(await users.updatePassword(testDb.db, user.id, 'new-hash')).toBe(0);
    expect((await users.findByEmail(testDb.db, user.email))!.passwordHash).toBe('new-hash');
  });
});

describe('users.isSlugAvailable', () => {
  it('is false for a taken slug unless it is the excluded user’s own', async () => {
    const user = await newUser(testDb.db);
    expect(await users.isSlugAvailable(testDb.db, user.slug)).toBe(false);
    expect(await users.isSlugAvailable(testDb.db, user.slug, { excludeUserId: user.id })).toBe(true);
    expect(await users.isSlugAvailable(testDb.db, 'free-slug-123')).toBe(true);
  });
});

describe('users roles', () => {
  it('grants idempotently, recording the granting admin, and revokes', async () => {
    const admin = await newAdmin(testDb.db);
    const user = await newUser(testDb.db);
    await users.grantRole(testDb.db, user.id, 'admin', { grantedBy: admin.id });
    await users.grantRole(testDb.db, user.id, 'admin', { grantedBy: admin.id });
    expect(await users.getRoles(testDb.db, user.id)).toEqual(['admin', 'user']);
    const { rows } = await sql<{ granted_by: string }>`
      SELECT granted_by FROM user_roles JOIN roles ON roles.id = role_id
      WHERE user_id = ${user.id} AND name = 'admin'`.execute(testDb.db);
    expect(rows).toEqual([{ granted_by: admin.id }]);

    expect(await users.revokeRole(testDb.db, user.id, 'admin')).toBe(true);
    expect(await users.revokeRole(testDb.db, user.id, 'admin')).toBe(false);
    expect(await users.getRoles(testDb.db, user.id)).toEqual(['user']);
  });

  it('refuses an unknown role or user with NotFound', async () => {
    const user = await newUser(testDb.db);
    await expect(users.grantRole(testDb.db, user.id, 'wizard')).rejects.toMatchObject({ entity: 'role' });
    await expect(users.grantRole(testDb.db, '01890000-0000-7000-8000-000000000000', 'admin')).rejects.toMatchObject({
      entity: 'user',
    });
  });

  it('refuses an unknown granting user with NotFound, granting nothing', async () => {
    const user = await newUser(testDb.db);
    const error = await users.grantRole(testDb.db, user.id, 'admin', { grantedBy: '01890000-0000-7000-8000-000000000000' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ entity: 'user' });
    expect(await users.getRoles(testDb.db, user.id)).toEqual(['user']);
  });
  it('names the role when it is deleted while the grant waits for the user row', async () => {
    const user = await newUser(testDb.db);
    const role = 'auditor';
    await sql`INSERT INTO roles (name) VALUES (${role})`.execute(testDb.db);
    const other = new pg.Client({ connectionString: testDb.directUrl });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [user.id]);
      const grant = users.grantRole(testDb.db, user.id, role).catch((error: unknown) => error);
      await eventually(async () => {
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(testDb.db);
        return rows[0]!.n === 1;
      }, 'the grant waits for the user row');
      await other.query('DELETE FROM roles WHERE name = $1', [role]);
      await other.query('COMMIT');
      const error = await grant;
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error).toMatchObject({ entity: 'role' });
    } finally {
      await other.end();
    }
  });
});

describe('users.setActive', () => {
  it('deactivates and reactivates a user', async () => {
    const user = await newUser(testDb.db);
    expect(await users.setActive(testDb.db, user.id, false)).toMatchObject({ active: false });
    expect(await users.setActive(testDb.db, user.id, true)).toMatchObject({ active: true });
  });

  it('joins the caller’s transaction: a rollback undoes it', async () => {
    const user = await newUser(testDb.db);
    await testDb.db
      .transaction()
      .execute(async (trx) => {
        await users.setActive(trx, user.id, false);
        throw new Error('service failed later');
      })
      .catch(() => undefined);
    expect((await users.findById(testDb.db, user.id))!.active).toBe(true);
  });
});
