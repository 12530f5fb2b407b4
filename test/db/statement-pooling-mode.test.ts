import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, poolOf } from '../../src/db/create-db.js';
import { ConfigError, isRetryable } from '../../src/errors.js';
import { users } from '../../src/index.js';
import { newUser } from '../support/factories.js';
import { type PgBouncer, type PgBouncerVersion, pgBouncerVersions, startPgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { setTestRoleBounds } from '../support/role-bounds.js';
import { useTestDatabase } from '../support/test-database.js';

// PgBouncer in pool_mode = statement closes a client at its first BEGIN (FATAL 08P01,
// "transaction blocks not allowed in statement pooling mode"), every time: a retry cannot
// succeed, so the error is a ConfigError, not the retryable ConnectionError of class 08, and
// the pool's probe of the pooler says so once.
const testDb = useTestDatabase();

// As setup --admin gives the application role, so that the pool has nothing else to report.
beforeAll(() => setTestRoleBounds(testDb.directUrl, { statementTimeoutMs: 5_000, lockTimeoutMs: 2_000, idleInTransactionTimeoutMs: 10_000 }));

const isStatementModeError = (error: unknown) => {
  expect(error).toBeInstanceOf(ConfigError);
  expect(error).toMatchObject({ variable: 'pool_mode', retryable: false, cause: { code: '08P01' } });
  expect(isRetryable(error)).toBe(false);
  expect((error as Error).message).toContain('statement pooling mode (PgBouncer pool_mode = statement)');
  expect((error as Error).message).toContain('Set pool_mode = transaction (or session)');
};

describe.each(Object.keys(pgBouncerVersions) as PgBouncerVersion[])('a pool behind PgBouncer %s in statement pooling mode', (version) => {
  const installed = toolsAvailable([pgBouncerVersions[version]], `the statement pooling mode tests (PgBouncer ${version}; .ci/build-pgbouncer builds 1.24)`);
  let bouncer: PgBouncer;
  beforeAll(async () => {
    if (installed) bouncer = await startPgBouncer({ serverUrl: inject('serverUrl'), poolMode: 'statement', poolSize: 2, version });
  });
  afterAll(async () => bouncer?.stop());

  it.skipIf(!installed)(
    'fails every call that opens a transaction with a ConfigError that is not retryable, the next one on the same connection too, and still serves single statements',
    async () => {
      const db = createDb({ databaseUrl: bouncer.url(testDb.directUrl), maxConnections: 1, minConnections: 0, preparedStatements: 'off' });
      try {
        isStatementModeError(await newUser(db).catch((error: unknown) => error));
        // The pool's one connection was closed by the pooler: the next call must not meet it
        // as a retryable `terminated`.
        isStatementModeError(await users.setActive(db, '00000000-0000-7000-8000-000000000000', false).catch((error: unknown) => error));
        isStatementModeError(await db.transaction().execute((trx) => sql`SELECT 1`.execute(trx)).catch((error: unknown) => error));
        expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(db)).rows).toEqual([{ one: 1 }]);
      } finally {
        await db.destroy();
      }
    },
  );

  it.skipIf(!installed)("is told once, through onPoolError, by the pooler probe, whose report names statement mode", async () => {
    const poolErrors: Array<[string, unknown]> = [];
    const db = createDb(
      { databaseUrl: bouncer.url(testDb.directUrl), maxConnections: 2, minConnections: 0 },
      { onPoolError: (message, error) => poolErrors.push([message, error]) },
    );
    try {
      await sql`SELECT 1`.execute(db);
      const report = await poolOf(db).statementNaming();
      expect(report, report.reason).toMatchObject({ mode: 'auto', named: false, route: 'pooler' });
      expect(report.reason).toContain('statement pooling mode (PgBouncer pool_mode = statement)');
      expect(poolErrors.map(([message]) => message)).toEqual([
        'the pooler refuses every transaction: it runs in statement pooling mode (PgBouncer pool_mode = statement), ' +
          'so every call that opens one fails with ConfigError (not retryable); set pool_mode = transaction (or session)',
      ]);
      isStatementModeError(poolErrors[0]![1]);
    } finally {
      await db.destroy();
    }
  });
});
