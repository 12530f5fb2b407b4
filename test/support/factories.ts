import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import * as users from '../../src/queries/users.js';

const unique = () => randomBytes(5).toString('hex');

/** A fresh active user with the `user` role; pass fields to override. */
export async function newUser(db: Kysely<DB>, overrides: Partial<users.NewUser> = {}): Promise<users.User> {
  const id = unique();
  return users.create(db, {
    email: `user-${id}@example.org`,
    passwordHash: '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA',
    displayName: `User ${id}`,
    slug: `user-${id}`,
    ...overrides,
  });
}

/** A fresh user holding the `admin` role. */
export async function newAdmin(db: Kysely<DB>): Promise<users.User> {
  const admin = await newUser(db);
  await users.grantRole(db, admin.id, 'admin');
  return admin;
}
