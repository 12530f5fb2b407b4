import { randomBytes } from 'node:crypto';
import { CamelCasePlugin, type Kysely, Kysely as KyselyClass, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import * as api from '../../src/index.js';
import { incidentTimers, users } from '../../src/index.js';
import { newUser } from '../support/factories.js';
import { caseTable, exportedQueryFunctions, pluginCases, recordRun } from '../support/plugin-cases.js';
import { useTestDatabase } from '../support/test-database.js';

// Plugins never change what a function does (issue 18): every public query function, given a
// Kysely that carries CamelCasePlugin (the service's own, or `db.withPlugin(…)`), returns what
// it returns on the plain `db` and leaves the database as it leaves it. Each case (in
// test/support/plugin-cases.ts, shared with the consumer check) makes fresh rows with the plain
// `db`, runs the function on one executor, and records its result (or typed error) and, where
// the function writes, what it wrote; the records of every executor must equal the plain
// one's, with the values that differ between two runs (ids, tokens, times, the fresh names)
// replaced by where they came from.
const testDb = useTestDatabase();
const camel = () => new CamelCasePlugin();
const hash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA';
const unique = () => randomBytes(5).toString('hex');

/**
 * A service's own pg pool, with the 'error' listener every service needs: pg-pool emits an idle
 * connection's error on the pool, and throws it when nobody listens. Here that is the file's
 * last step: `end()` resolves before its connections have closed, and dropping the database
 * (WITH FORCE) ends the ones still closing.
 */
function servicePool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: testDb.url, max: 2 });
  pool.on('error', () => undefined);
  return pool;
}

describe('plugins on the caller’s Kysely', () => {
  let ownKysely: Kysely<DB>;
  beforeAll(() => {
    // A service's own Kysely, not made by createDb, with the most common plugin.
    ownKysely = new KyselyClass<DB>({ dialect: new PostgresDialect({ pool: servicePool() }), plugins: [camel()] });
  });
  afterAll(async () => {
    await ownKysely?.destroy();
  });

  const executors: Array<[string, () => api.Executor]> = [
    ['db.withPlugin(new CamelCasePlugin())', () => testDb.db.withPlugin(camel())],
    ['a service’s own Kysely with CamelCasePlugin', () => ownKysely],
    ['a transaction of a service’s own Kysely with CamelCasePlugin', () => ownKysely],
  ];

  const table = caseTable(pluginCases(api));

  it('has a case for every query function the package exports', () => {
    expect(table.map(([name]) => name).sort()).toEqual(exportedQueryFunctions(api).sort());
  });

  describe.each(executors)('through %s', (executorName, executor) => {
    const inTransaction = executorName.startsWith('a transaction');
    it.each(table)('%s returns and writes what it does on the plain db', async (_name, testCase) => {
      const plain = await recordRun(testCase, testDb.db, testDb.db, inTransaction);
      const plugged = await recordRun(testCase, testDb.db, executor(), inTransaction);
      expect(plugged).toEqual(plain);
    });
  });
});

describe('errors on a Kysely that createDb did not make', () => {
  let ownPool: pg.Pool;
  let ownKysely: Kysely<DB>;
  beforeAll(() => {
    ownPool = servicePool();
    ownKysely = new KyselyClass<DB>({ dialect: new PostgresDialect({ pool: ownPool }) });
  });
  afterAll(async () => {
    await ownKysely?.destroy();
  });

  it('are typed and scrubbed: a taken email is a UniqueViolationError whose cause withholds the value', async () => {
    const user = await newUser(testDb.db);
    const error = await users
      .create(ownKysely, { email: user.email.toUpperCase(), passwordHash: hash, displayName: 'Twin', slug: `twin-${unique()}` })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(api.UniqueViolationError);
    expect((error as api.UniqueViolationError).field).toBe('email');
    const detail = ((error as api.UniqueViolationError).cause as { detail?: string }).detail;
    expect(detail).not.toContain(user.email.split('@')[0]);
    expect(detail).toContain('values withheld');
  });

  it('are typed inside the service’s own transaction: an unknown user is NotFoundError', async () => {
    const error = await ownKysely
      .transaction()
      .execute((trx) => incidentTimers.create(trx, { userId: '01890000-0000-7000-8000-00000000dead' }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(api.NotFoundError);
    expect((error as api.NotFoundError).entity).toBe('user');
  });

  // withSavepoint and withTimeouts too: given null they threw a TypeError, given a pg.Pool a
  // DatabaseError ("db.transaction is not a function"), as if the database had failed.
  it.for<{ what: string; call: (db: never) => Promise<unknown> }>([
    { what: 'a query function', call: (db: never) => users.findById(db, '01890000-0000-7000-8000-000000000001') },
    { what: 'withSavepoint', call: (db: never) => api.withSavepoint(db, async () => 'ran') },
    { what: 'withTimeouts', call: (db: never) => api.withTimeouts(db, { statementTimeout: '1s' }, async () => 'ran') },
  ])('$what refuses what is not a Kysely with a ValidationError naming db, before any query', async ({ call }) => {
    for (const notKysely of [ownPool, null, undefined, {}]) {
      const error = await Promise.resolve()
        .then((): Promise<unknown> => call(notKysely as never))
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(api.ValidationError);
      expect((error as api.ValidationError).field).toBe('db');
    }
  });
});
