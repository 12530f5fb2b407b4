import { type Kysely, type Selectable, sql, type Updateable } from 'kysely';
import type { DB, Users } from '../../generated/db.js';
import { inTransaction } from '../db/in-transaction.js';
import { inLibrarySchema } from '../db/library-schema.js';
import { prepareQuery } from '../db/prepared-query.js';
import { queryFunction } from '../db/query-function.js';
import { serializedStatement } from '../db/serialized-statement.js';
import { NotFoundError, ValidationError } from '../errors.js';
import {
  limits,
  requireBoolean,
  requireEmail,
  requireInput,
  requireOptions,
  requireSlug,
  requireText,
  requireUuid,
} from '../validation.js';
import type { CamelCased } from './camel-cased.js';
import { notFoundOnMissingReference } from './missing-reference.js';
import { noRowReturned } from './no-row-returned.js';
import { gatedByUserRow } from './user-row-gate.js';
import { revokeLiveTokens, revokingSessions, sessionCount } from './revoke-live-tokens.js';

/** A user as services see it; the password hash only comes with {@link findByEmail}. */
export type User = CamelCased<Omit<Selectable<Users>, 'password_hash'>>;

/** A user with the stored password hash, for verifying a login. */
export type UserWithPasswordHash = User & { passwordHash: string };

/** The roles the schema seeds. */
export type RoleName = 'user' | 'admin' | (string & {});

export interface NewUser {
  email: string;
  /** A hash from the service's password hasher (argon2, bcrypt, …); never a password. */
  passwordHash: string;
  displayName: string;
  slug: string;
}

const userColumns = [
  'users.id',
  'users.email',
  'users.display_name as displayName',
  'users.slug',
  'users.active',
  'users.created_at as createdAt',
  'users.updated_at as updatedAt',
] as const;

// Lookups run on every request: built and compiled once (see prepareQuery).
const byId = prepareQuery((db, p: { id: string }) => db.selectFrom('users').select(userColumns).where('id', '=', p.id));
const bySlug = prepareQuery((db, p: { slug: string }) =>
  db.selectFrom('users').select(userColumns).where('slug', '=', p.slug),
);
const byEmail = prepareQuery((db, p: { address: string }) =>
  db
    .selectFrom('users')
    .select([...userColumns, 'users.password_hash as passwordHash'])
    // lower() on both sides, as in the unique index users_email_key, which this lookup uses.
    .where(sql`lower(email)`, '=', sql<string>`lower(${p.address})`),
);

/**
 * Creates a user holding the `user` role, in one transaction. A taken email (in any case)
 * or slug fails with `UniqueViolationError` whose `field` says which. Given a caller's
 * transaction, that error leaves the transaction aborted (PostgreSQL's rule for any failed
 * statement): to catch it and carry on in the same transaction, call it under
 * `withSavepoint(trx, (sp) => users.create(sp, input))`.
 *
 * @example
 * const user = await users.create(db, { email: 'kenn@example.org', passwordHash, displayName: 'Kenn', slug: 'kenn' })
 */
export const create = queryFunction(async function create(db: Kysely<DB>, newUser: NewUser): Promise<User> {
  const input = requireInput('input', newUser);
  const row = {
    email: requireEmail(input.email),
    password_hash: requireText('passwordHash', input.passwordHash, limits.passwordHashLength),
    display_name: requireText('displayName', input.displayName, limits.displayNameLength),
    slug: requireSlug(input.slug),
  };
  return inTransaction(db, async (trx) => {
    const user = await inLibrarySchema(trx).insertInto('users').values(row).returning(userColumns).executeTakeFirstOrThrow(noRowReturned);
    await inLibrarySchema(trx)
      .insertInto('user_roles')
      .columns(['user_id', 'role_id'])
      .expression((eb) => eb.selectFrom('roles').select([eb.val(user.id).as('user_id'), 'id']).where('name', '=', 'user'))
      .execute();
    return user;
  });
});

/** The user with this id, or null. @example await users.findById(db, id) */
export const findById = queryFunction(async function findById(db: Kysely<DB>, userId: string): Promise<User | null> {
  const id = requireUuid('userId', userId);
  return (await byId.execute(db, { id })).rows[0] ?? null;
});

/**
 * The user with this email in any letter case, with the password hash, for a login; or null.
 *
 * @example
 * const user = await users.findByEmail(db, 'Kenn@Example.org')
 * if (!user || !user.active || !(await verify(user.passwordHash, password))) throw unauthorized()
 */
export const findByEmail = queryFunction(async function findByEmail(db: Kysely<DB>, email: string): Promise<UserWithPasswordHash | null> {
  const address = requireEmail(email);
  return (await byEmail.execute(db, { address })).rows[0] ?? null;
});

/** The user with this slug (their public page), or null. @example await users.findBySlug(db, 'kenn') */
export const findBySlug = queryFunction(async function findBySlug(db: Kysely<DB>, slug: string): Promise<User | null> {
  const value = requireSlug(slug);
  return (await bySlug.execute(db, { slug: value })).rows[0] ?? null;
});

/**
 * Changes the display name and/or slug; a taken slug fails with `UniqueViolationError`
 * (`field: 'slug'`), an unknown user with `NotFoundError`.
 *
 * @example await users.updateProfile(db, userId, { displayName: 'Kenn W.', slug: 'kenn-w' })
 */
export const updateProfile = queryFunction(async function updateProfile(
  db: Kysely<DB>,
  userId: string,
  profileChanges: { displayName?: string | undefined; slug?: string | undefined },
): Promise<User> {
  const id = requireUuid('userId', userId);
  const changes = requireInput('changes', profileChanges);
  const set: { display_name?: string; slug?: string } = {};
  if (changes.displayName !== undefined) {
    set.display_name = requireText('displayName', changes.displayName, limits.displayNameLength);
  }
  if (changes.slug !== undefined) set.slug = requireSlug(changes.slug);
  if (Object.keys(set).length === 0) throw new ValidationError('changes', 'name at least one of displayName, slug');
  // Run again where a change racing another failed for serialization (a REPEATABLE READ default).
  return gatedByUserRow(db, id, () => serializedStatement(db, () => updatedUser(db, id, set)), set.slug === undefined ? 'FOR NO KEY UPDATE' : 'FOR UPDATE');
});

// The user's row changed by `set`, as returned to callers; NotFoundError for an unknown user.
async function updatedUser(db: Kysely<DB>, id: string, set: Updateable<Users>): Promise<User> {
  const user = await inLibrarySchema(db).updateTable('users').set(set).where('id', '=', id).returning(userColumns).executeTakeFirst();
  if (!user) throw new NotFoundError('user');
  return user;
}

export interface UpdatePasswordOptions {
  /** A token family (`familyId` of the session the change was made from) that stays logged in. */
  keepFamilyId?: string | undefined;
}

/**
 * Stores a new password hash and, in the same transaction, revokes every live session of the
 * user (reason `password_changed`) except `keepFamilyId`'s, so that a stolen refresh token
 * dies with the old password. Returns the number of sessions revoked; an unknown user is
 * `NotFoundError`. The user row is updated first, which waits for every issue or rotation of
 * this user in flight (they hold it `FOR SHARE`), and the tokens are read by a later statement,
 * so a token such a rotation adds is revoked too (the lock order of refreshTokens). A revoked
 * token presented later fails as a logged-out one does: `TokenReusedError`. Joins the caller's
 * transaction, which must be READ COMMITTED (else `ValidationError`: a later statement's
 * snapshot is what sees those tokens); its own is READ COMMITTED whatever the database's default.
 *
 * @example
 * await users.updatePassword(db, userId, await hash(newPassword), { keepFamilyId: session.familyId })
 */
export const updatePassword = queryFunction(async function updatePassword(
  db: Kysely<DB>,
  userId: string,
  passwordHash: string,
  options?: UpdatePasswordOptions,
): Promise<number> {
  const id = requireUuid('userId', userId);
  const hash = requireText('passwordHash', passwordHash, limits.passwordHashLength);
  const { keepFamilyId } = requireOptions('options', options);
  const keep = keepFamilyId === undefined ? undefined : requireUuid('keepFamilyId', keepFamilyId);
  return gatedByUserRow(db, id, () =>
    inTransaction(
      db,
      async (trx) => {
        await updatedUser(trx, id, { password_hash: hash });
        const revoked = await revokeLiveTokens(trx, { userId: id, ...(keep === undefined ? {} : { exceptFamilyId: keep }) }, 'password_changed');
        return sessionCount(revoked);
      },
      revokingSessions,
    ),
  );
});

/**
 * Activates or deactivates a user. Deactivating revokes every live refresh token of the
 * user (reason `deactivated`) in the same transaction, so no session outlives it: in a
 * caller's transaction only at READ COMMITTED, as `updatePassword`.
 *
 * @example await users.setActive(db, userId, false)
 */
export const setActive = queryFunction(async function setActive(db: Kysely<DB>, userId: string, active: boolean): Promise<User> {
  const id = requireUuid('userId', userId);
  const value = requireBoolean('active', active);
  return gatedByUserRow(db, id, () =>
    inTransaction(
      db,
      async (trx) => {
        const user = await updatedUser(trx, id, { active: value });
        if (!value) await revokeLiveTokens(trx, { userId: id }, 'deactivated');
        return user;
      },
      // Activating revokes nothing, and may run at any level, but its own transaction is READ
      // COMMITTED too: at REPEATABLE READ, a toggle racing another failed for serialization.
      value ? { ownReadCommitted: true } : revokingSessions,
    ),
  );
});

/**
 * Whether nobody (other than `excludeUserId`, the user editing their own profile) has this slug.
 *
 * @example await users.isSlugAvailable(db, 'kenn', { excludeUserId: me.id })
 */
export const isSlugAvailable = queryFunction(async function isSlugAvailable(
  db: Kysely<DB>,
  slug: string,
  slugOptions?: { excludeUserId?: string | undefined },
): Promise<boolean> {
  const value = requireSlug(slug);
  const options = requireOptions('options', slugOptions);
  let query = inLibrarySchema(db).selectFrom('users').select('id').where('slug', '=', value);
  if (options.excludeUserId !== undefined) query = query.where('id', '<>', requireUuid('excludeUserId', options.excludeUserId));
  return (await query.executeTakeFirst()) === undefined;
});

/** The names of the user's roles, sorted. @example (await users.getRoles(db, id)).includes('admin') */
export const getRoles = queryFunction(async function getRoles(db: Kysely<DB>, userId: string): Promise<RoleName[]> {
  const id = requireUuid('userId', userId);
  const rows = await inLibrarySchema(db)
    .selectFrom('user_roles')
    .innerJoin('roles', 'roles.id', 'user_roles.role_id')
    .select('roles.name')
    .where('user_roles.user_id', '=', id)
    .orderBy('roles.name')
    .execute();
  return rows.map((row) => row.name);
});

/**
 * Grants a role (idempotent), recording who granted it. Authorising the grant is the
 * service's decision. An unknown role, user or granting user (`grantedBy`) is `NotFoundError`.
 *
 * @example await users.grantRole(db, userId, 'admin', { grantedBy: adminId })
 */
export const grantRole = queryFunction(async function grantRole(
  db: Kysely<DB>,
  userId: string,
  role: RoleName,
  grantOptions?: { grantedBy?: string | null | undefined },
): Promise<void> {
  const id = requireUuid('userId', userId);
  const name = requireText('role', role, 50);
  const options = requireOptions('options', grantOptions);
  const grantedBy = options.grantedBy == null ? null : requireUuid('grantedBy', options.grantedBy);
  await inTransaction(db, async (trx) => {
    const found = await inLibrarySchema(trx).selectFrom('roles').select('id').where('name', '=', name).executeTakeFirst();
    if (!found) throw new NotFoundError('role');
    // Already held: nothing to insert, and nothing to lock, so a call that changes nothing
    // never waits for a held user row.
    const held = await inLibrarySchema(trx).selectFrom('user_roles').select('user_id').where('user_id', '=', id).where('role_id', '=', found.id).executeTakeFirst();
    if (held) return;
    // Locked (FOR KEY SHARE, as the foreign-key checks would) before the grant is inserted, the
    // granting user's row too: on a held row every caller waits in that row's queue, twice at
    // most, and fails as LockNotAvailableError, instead of same-key callers waiting for each
    // other's insert with a new lock_timeout each until statement_timeout cancelled one.
    const locked = await inLibrarySchema(trx)
      .selectFrom('users')
      .select('id')
      .where('id', 'in', grantedBy === null ? [id] : [id, grantedBy])
      .orderBy('id')
      .forKeyShare()
      .execute();
    if (!locked.some((row) => row.id === id)) throw new NotFoundError('user');
    // The granting user is checked by its foreign key, as is a role deleted while the grant
    // waited for the user's row (read before the wait, and never locked: it is the role that
    // is missing then, not a user).
    await inLibrarySchema(trx)
      .insertInto('user_roles')
      .values({ user_id: id, role_id: found.id, granted_by: grantedBy })
      .onConflict((oc) => oc.columns(['user_id', 'role_id']).doNothing())
      .execute()
      .catch(notFoundOnMissingReference({ user_roles_user_id_fkey: 'user', user_roles_granted_by_fkey: 'user', user_roles_role_id_fkey: 'role' }));
    // Its own transaction READ COMMITTED whatever the database's default: at REPEATABLE READ,
    // 39 of 40 callers granting the same role at once failed for serialization.
  }, { ownReadCommitted: true });
});

/** Revokes a role; returns whether the user held it. @example await users.revokeRole(db, userId, 'admin') */
export const revokeRole = queryFunction(async function revokeRole(db: Kysely<DB>, userId: string, role: RoleName): Promise<boolean> {
  const id = requireUuid('userId', userId);
  const name = requireText('role', role, 50);
  const result = await serializedStatement(db, () =>
    inLibrarySchema(db)
      .deleteFrom('user_roles')
      .where('user_id', '=', id)
      .where('role_id', '=', (eb) => eb.selectFrom('roles').select('id').where('name', '=', name))
      .executeTakeFirst(),
  );
  return result.numDeletedRows > 0n;
});
