import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { withSavepoint } from '../../src/db/with-savepoint.js';
import { withTimeouts } from '../../src/db/with-timeouts.js';
import { ConnectionError, DbError, TransactionAbortedError, UniqueViolationError } from '../../src/errors.js';
import * as incidentTimers from '../../src/queries/incident-timers.js';
import * as users from '../../src/queries/users.js';
import { newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

const input = (email: string, slug: string): users.NewUser => ({ email, passwordHash: 'h', displayName: 'Someone', slug });

describe('a UniqueViolationError caught inside the caller’s transaction', () => {
  it('leaves that transaction aborted without a savepoint: the next statement is a TransactionAbortedError', async () => {
    const taken = await newUser(testDb.db);
    const error = await testDb.db
      .transaction()
      .execute(async (trx) => {
        const duplicate = await users.create(trx, input(taken.email, 'abort-slug')).catch((e: unknown) => e);
        expect(duplicate).toBeInstanceOf(UniqueViolationError);
        await users.findByEmail(trx, taken.email);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionAbortedError);
  });

  it('leaves it usable under withSavepoint: the failed step is undone, the rest commits', async () => {
    const taken = await newUser(testDb.db);
    const result = await testDb.db.transaction().execute(async (trx) => {
      const created = await withSavepoint(trx, (sp) => users.create(sp, input(taken.email, 'savepoint-slug'))).catch(
        (error: unknown) => {
          if (error instanceof UniqueViolationError) return users.findByEmail(trx, taken.email);
          throw error;
        },
      );
      const timer = await incidentTimers.create(trx, { userId: created!.id, notes: 'after the caught violation' });
      return { created: created!, timer };
    });
    expect(result.created.id).toBe(taken.id);
    expect(await users.findBySlug(testDb.db, 'savepoint-slug')).toBeNull();
    expect((await incidentTimers.listForUser(testDb.db, taken.id)).items).toEqual([result.timer]);
  });

  it('keeps the work of a successful step, and nests', async () => {
    const user = await testDb.db.transaction().execute(async (trx) =>
      withSavepoint(trx, async (outer) => {
        const created = await users.create(outer, input('nested@example.org', 'nested'));
        await withSavepoint(outer, (inner) => users.create(inner, input('NESTED@example.org', 'nested-two'))).catch(() => undefined);
        return created;
      }),
    );
    expect(await users.findById(testDb.db, user.id)).toMatchObject({ slug: 'nested' });
    expect(await users.findBySlug(testDb.db, 'nested-two')).toBeNull();
  });

  it('runs in a transaction of its own given the root db, so the step is all or nothing', async () => {
    const failed = await withSavepoint(testDb.db, async (trx) => {
      await sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('half@example.org', 'h', 'Half', 'half')`.execute(trx);
      throw new Error('the step failed after its first statement');
    }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(await users.findByEmail(testDb.db, 'half@example.org')).toBeNull();
  });
});

// The helpers' own statements (SAVEPOINT, ROLLBACK TO, SET LOCAL, the transaction they open)
// fail with typed errors on a service's own Kysely too, as the query functions do; what the
// caller's work throws comes back as it was thrown.
describe("withSavepoint and withTimeouts on a service's own Kysely", () => {
  const serviceDb = (url: string) => new Kysely<DB>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) });
  const helpers = {
    withSavepoint: (db: Kysely<DB>) => withSavepoint(db, async () => 'done'),
    withTimeouts: (db: Kysely<DB>) => withTimeouts(db, { lockTimeout: '1s' }, async () => 'done'),
  };

  it.each(Object.keys(helpers) as Array<keyof typeof helpers>)('%s in an aborted transaction throws TransactionAbortedError', async (helper) => {
    const db = serviceDb(testDb.url);
    try {
      const error = await db
        .transaction()
        .execute(async (trx) => {
          await sql`SELECT 1 / 0`.execute(trx).catch(() => undefined);
          await helpers[helper](trx);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransactionAbortedError);
    } finally {
      await db.destroy();
    }
  });

  it.each(Object.keys(helpers) as Array<keyof typeof helpers>)('%s given a server that refuses the connection throws ConnectionError', async (helper) => {
    const unreachable = new URL(testDb.url);
    unreachable.port = '1';
    const db = serviceDb(unreachable.toString());
    try {
      const error = await helpers[helper](db).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
    } finally {
      await db.destroy();
    }
  });

  it("rethrows the caller's own error as it was thrown", async () => {
    const db = serviceDb(testDb.url);
    const own = new Error('the caller gave up');
    try {
      await expect(withSavepoint(db, async () => Promise.reject(own))).rejects.toBe(own);
      await expect(withTimeouts(db, { lockTimeout: '1s' }, async () => Promise.reject(own))).rejects.toBe(own);
      const error = await db.transaction().execute((trx) => withSavepoint(trx, async () => Promise.reject(own))).catch((e: unknown) => e);
      expect(error).toBe(own);
      expect(error).not.toBeInstanceOf(DbError);
    } finally {
      await db.destroy();
    }
  });
});
