import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as first from '../src/index.js';
import { useTestDatabase } from './support/test-database.js';

// The dual-package hazard (issue 18): a service that loads the package twice, its ES module
// build through `import` and its CommonJS build through `require()`, holds two copies of every
// module of the package, with one Kysely. Here the second copy is the same sources loaded again
// after vi.resetModules(): its classes, symbols' holders and module-level state are its own, as
// the other build's would be. Nothing may depend on which copy made what.
const testDb = useTestDatabase();
let second: typeof first;

beforeAll(async () => {
  vi.resetModules();
  second = await import('../src/index.js');
});

describe('two copies of the package in one process', () => {
  it('are two copies indeed: each has its own classes and functions', () => {
    expect(second.UniqueViolationError).not.toBe(first.UniqueViolationError);
    expect(second.users.findById).not.toBe(first.users.findById);
  });

  it('tell each other’s errors by instanceof, down to the class', async () => {
    const taken = await second.users.create(testDb.db, {
      email: `dual-${Date.now()}@example.org`,
      passwordHash: 'h',
      displayName: 'Dual',
      slug: `dual-${Date.now()}`,
    });
    const error = await second.users
      .create(testDb.db, { email: taken.email, passwordHash: 'h', displayName: 'Twin', slug: `twin-${Date.now()}` })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(first.UniqueViolationError);
    expect(error).toBeInstanceOf(first.IntegrityError);
    expect(error).toBeInstanceOf(first.DbError);
    expect(error).not.toBeInstanceOf(first.NotFoundError);
    expect(first.isRetryable(new second.DeadlockError())).toBe(true);
    expect(first.mapDatabaseError(error)).toBe(error);
  });

  it('share refreshTokens.configure’s defaults', () => {
    const before = first.refreshTokens.configure({});
    try {
      first.refreshTokens.configure({ reuseGraceSeconds: before.reuseGraceSeconds + 7 });
      expect(second.refreshTokens.configure({}).reuseGraceSeconds).toBe(before.reuseGraceSeconds + 7);
    } finally {
      first.refreshTokens.configure(before);
    }
  });

  describe('with a db made by one copy’s createDb', () => {
    let db: ReturnType<typeof first.createDb>;
    beforeAll(() => {
      db = first.createDb({ databaseUrl: testDb.directUrl, maxConnections: 1, minConnections: 0, preparedStatements: 'on' });
    });
    afterAll(async () => {
      await db?.destroy();
    });

    it('reach its pool through the other copy’s poolOf', () => {
      expect(second.poolOf(db)).toBe(first.poolOf(db));
    });

    it('send the other copy’s hot statements as named statements on it (one registry of statement names)', async () => {
      const user = await second.users.create(db, {
        email: `named-${Date.now()}@example.org`,
        passwordHash: 'h',
        displayName: 'Named',
        slug: `named-${Date.now()}`,
      });
      expect((await second.users.findBySlug(db, user.slug))?.id).toBe(user.id);
      const { rows } = await sql<{ statement: string }>`SELECT statement FROM pg_prepared_statements WHERE name LIKE 'kw\\_%'`.execute(db);
      expect(rows.map((row) => row.statement)).toContainEqual(expect.stringMatching(/from "public"."users" where "slug" = \$1/));
    });
  });
});
