import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { withSavepoint } from '../../src/db/with-savepoint.js';
import { DbError, TransactionAbortedError, ValidationError } from '../../src/errors.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

const newEmail = () => `caller-${randomBytes(5).toString('hex')}@example.org`;

// PostgreSQL answers a BEGIN inside a transaction with a warning and goes on, so the COMMIT of a
// query function's own transaction ended the caller's: half its work committed, and its
// ROLLBACK then undid nothing.
describe('a transaction the caller began by hand (BEGIN on db.connection())', () => {
  it("is not ended by a query function that opens one of its own: the call is refused, and the caller's ROLLBACK undoes all", async () => {
    const { db } = testDb;
    const user = await newUser(db);
    const email = newEmail();
    const refusal = await db.connection().execute(async (connection) => {
      await sql`BEGIN`.execute(connection);
      try {
        await users.updateProfile(connection, user.id, { displayName: 'Changed in the caller transaction' });
        return await newUser(connection, { email }).catch((error: unknown) => error);
      } finally {
        await sql`ROLLBACK`.execute(connection);
      }
    });
    expect(refusal).toBeInstanceOf(ValidationError);
    expect((refusal as Error).message).toMatch(/already open on this connection/);
    expect(await users.findByEmail(db, email)).toBeNull();
    expect((await users.findById(db, user.id))!.displayName).toBe(user.displayName);
  });

  // rotate commits a reuse revocation itself before it throws TokenReusedError: inside such a
  // transaction its rotation joined the caller's (undone by the caller's ROLLBACK), and its
  // reuse path was refused instead of revoking the family and reporting the reuse.
  it("refuses refreshTokens.rotate there before it sends anything, as it refuses a Transaction", async () => {
    const { db } = testDb;
    const user = await newUser(db);
    const { token } = await refreshTokens.issue(db, { userId: user.id });
    const refusal = await db.connection().execute(async (connection) => {
      await sql`BEGIN`.execute(connection);
      try {
        return await refreshTokens.rotate(connection, token).catch((error: unknown) => error);
      } finally {
        await sql`ROLLBACK`.execute(connection);
      }
    });
    expect(refusal).toBeInstanceOf(ValidationError);
    expect((refusal as Error).message).toMatch(/^db: rotate needs the root database, not a transaction: a transaction is open on this connection/);
    // The token was not rotated: it still rotates, once.
    expect(await refreshTokens.rotate(db, token)).toMatchObject({ userId: user.id });
  });

  it('is rolled back, not handed to the next caller, when the callback returns without ending it', async () => {
    const db = createDb({ databaseUrl: testDb.url, minConnections: 0, maxConnections: 1 });
    try {
      const email = newEmail();
      await db.connection().execute(async (connection) => {
        await sql`BEGIN`.execute(connection);
        await newUser(connection, { email }).catch(() => undefined);
        await sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES (${email}, 'h', 'Left open', ${`left-${randomBytes(5).toString('hex')}`})`.execute(connection);
      });
      // The one connection of the pool: the next caller must not find itself in that transaction.
      const { rows } = await sql<{ open: boolean }>`SELECT pg_catalog.txid_current_if_assigned() IS NOT NULL AS open`.execute(db);
      expect(rows[0]!.open).toBe(false);
      expect(await users.findByEmail(testDb.db, email)).toBeNull();
      expect(await newUser(db)).toMatchObject({ active: true });
    } finally {
      await db.destroy();
    }
  });

  it('refuses a Kysely transaction begun on that connection too, leaving the caller in its own', async () => {
    const { db } = testDb;
    const user = await newUser(db);
    await db.connection().execute(async (connection) => {
      await sql`BEGIN`.execute(connection);
      try {
        await users.updateProfile(connection, user.id, { displayName: 'Changed in the caller transaction' });
        await expect(connection.transaction().execute(() => Promise.resolve())).rejects.toBeInstanceOf(ValidationError);
        const { rows } = await sql<{ open: boolean }>`SELECT pg_catalog.txid_current_if_assigned() IS NOT NULL AS open`.execute(connection);
        expect(rows[0]!.open).toBe(true);
      } finally {
        await sql`ROLLBACK`.execute(connection);
      }
    });
    expect((await users.findById(db, user.id))!.displayName).toBe(user.displayName);
  });
});

// The work caught a failed statement's error and went on: PostgreSQL completes the COMMIT as a
// ROLLBACK. Kysely before 0.28.19 reported that as committed; later ones throw an error of
// their own, which is no DbError.
describe('a transaction whose COMMIT rolled back', () => {
  it('fails as TransactionAbortedError, and nothing of it is committed', async () => {
    const { db } = testDb;
    const email = newEmail();
    const error = await db
      .transaction()
      .execute(async (trx) => {
        await newUser(trx, { email });
        await sql`SELECT 1/0`.execute(trx).catch(() => undefined);
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect(await users.findByEmail(db, email)).toBeNull();
  });

  it('fails as TransactionAbortedError from withSavepoint on the root db too', async () => {
    const { db } = testDb;
    const email = newEmail();
    const error = await withSavepoint(db, async (trx) => {
      await newUser(trx, { email });
      await sql`SELECT 1/0`.execute(trx).catch(() => undefined);
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect(error).toBeInstanceOf(DbError);
    expect(await users.findByEmail(db, email)).toBeNull();
  });
});
