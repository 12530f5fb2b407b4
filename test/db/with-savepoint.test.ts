import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { withSavepoint } from '../../src/db/with-savepoint.js';
import { TransactionAbortedError, UniqueViolationError } from '../../src/errors.js';
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
