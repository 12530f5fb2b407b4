import { CamelCasePlugin, type Kysely, sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb, directQueryRunner, poolOf } from '../../src/db/create-db.js';
import { PoolTimeoutError, UniqueViolationError } from '../../src/errors.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';
import { eventually } from '../support/eventually.js';

const testDb = useTestDatabase();

function loggingDb(statements: string[]): Kysely<DB> {
  return createDb(
    { databaseUrl: testDb.url, minConnections: 0 },
    { log: (event) => void (event.level === 'query' && statements.push(event.query.sql)) },
  );
}

describe('prepareQuery', () => {
  it('compiles once and runs the same SQL with each call’s values', async () => {
    const byEmail = prepareQuery((db, p: { email: string; limit: number }) =>
      db.selectFrom('users').select(['id', 'email']).where('email', '=', p.email).limit(p.limit),
    );
    const a = await newUser(testDb.db);
    const b = await newUser(testDb.db);
    const statements: string[] = [];
    const db = loggingDb(statements);
    try {
      expect((await byEmail.execute(db, { email: a.email, limit: 1 })).rows).toEqual([{ id: a.id, email: a.email }]);
      expect((await byEmail.execute(db, { email: b.email, limit: 1 })).rows).toEqual([{ id: b.id, email: b.email }]);
      expect((await byEmail.execute(db, { email: 'nobody@example.org', limit: 1 })).rows).toEqual([]);
    } finally {
      await db.destroy();
    }
    expect(new Set(statements)).toEqual(new Set(['select "id", "email" from "public"."users" where "email" = $1 limit $2']));
  });

  it('keeps constant values of the builder as they were', async () => {
    const active = prepareQuery((db, p: { id: string }) =>
      db.selectFrom('users').select('id').where('id', '=', p.id).where('active', '=', true),
    );
    const user = await newUser(testDb.db);
    expect((await active.execute(testDb.db, { id: user.id })).rows).toEqual([{ id: user.id }]);
  });

  it('runs inside a caller’s transaction', async () => {
    const byId = prepareQuery((db, p: { id: string }) => db.selectFrom('users').select('display_name').where('id', '=', p.id));
    const user = await newUser(testDb.db);
    await testDb.db.transaction().execute(async (trx) => {
      await trx.updateTable('users').set({ display_name: 'Inside' }).where('id', '=', user.id).execute();
      expect((await byId.execute(trx, { id: user.id })).rows).toEqual([{ display_name: 'Inside' }]);
    });
  });

  it('runs straight on the tuned pool with the same rows, mapped errors and acquire timeout', async () => {
    const insertRole = prepareQuery((db, p: { name: string }) => db.insertInto('roles').values({ name: p.name }).returning('name'));
    const db = createDb({ databaseUrl: testDb.url, maxConnections: 1, minConnections: 0, acquireTimeoutMs: 300 });
    try {
      expect(directQueryRunner(db)).toBeDefined();
      const inserted = await insertRole.execute(db, { name: 'direct' });
      expect(inserted).toEqual({ rows: [{ name: 'direct' }], numAffectedRows: 1n });
      await expect(insertRole.execute(db, { name: 'direct' })).rejects.toBeInstanceOf(UniqueViolationError);

      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const holder = db.transaction().execute(async (trx) => {
        await sql`SELECT 1`.execute(trx);
        await held;
      });
      await eventually(() => poolOf(db).pool.totalCount === 1 && poolOf(db).pool.idleCount === 0, 'the transaction holds the only connection');
      await expect(insertRole.execute(db, { name: 'waits' })).rejects.toBeInstanceOf(PoolTimeoutError);
      release();
      await holder;
    } finally {
      await db.destroy();
    }
  });

  it('goes through Kysely for a transaction and when the query log is on', async () => {
    const statements: string[] = [];
    const logging = loggingDb(statements);
    try {
      expect(directQueryRunner(logging)).toBeUndefined();
      await testDb.db.transaction().execute(async (trx) => expect(directQueryRunner(trx)).toBeUndefined());
    } finally {
      await logging.destroy();
    }
  });

  it('refuses a builder that uses a parameter for the query’s shape rather than as a value', async () => {
    const misuse = prepareQuery((db, p: { column: string }) =>
      db.selectFrom('users').select('id').where(p.column === 'email' ? 'email' : 'slug', '=', 'x'),
    );
    await expect(misuse.execute(testDb.db, { column: 'email' })).rejects.toThrow(
      "prepareQuery: parameter 'column' was not used as a value",
    );
  });
});

describe('prepareQuery with plugins or a schema', () => {
  // A table of the same name in another schema, holding a different row for the same email:
  // which row comes back shows which SQL ran.
  const shadowName = 'In the shadow schema';
  let email: string;
  beforeAll(async () => {
    const user = await newUser(testDb.db);
    email = user.email;
    await sql`CREATE SCHEMA shadow`.execute(testDb.db);
    await sql`CREATE TABLE shadow.users (LIKE public.users INCLUDING DEFAULTS)`.execute(testDb.db);
    await sql`INSERT INTO shadow.users SELECT * FROM public.users WHERE id = ${user.id}`.execute(testDb.db);
    await sql`UPDATE shadow.users SET display_name = ${shadowName}`.execute(testDb.db);
  });

  const byEmail = () =>
    prepareQuery((db, p: { email: string }) => db.selectFrom('users').select(['display_name']).where('email', '=', p.email));

  // The library's statements name their schema (public), before any plugin of the caller runs:
  // a caller's withSchema cannot redirect them, while its other plugins still apply.
  it('reads the library\'s schema whatever schema the caller sets, and applies its plugins: the plain instance first', async () => {
    const query = byEmail();
    const plain = (await query.execute(testDb.db, { email })).rows;
    const shadowed = (await query.execute(testDb.db.withSchema('shadow'), { email })).rows;
    const camel = (await query.execute(testDb.db.withPlugin(new CamelCasePlugin()), { email })).rows;
    expect(plain).toEqual([{ display_name: expect.not.stringMatching(shadowName) }]);
    expect(shadowed).toEqual(plain);
    expect(camel).toEqual([{ displayName: plain[0]!.display_name }]);
  });

  it('reads the library\'s schema whatever schema the caller sets, and applies its plugins: the schema and the plugin first', async () => {
    const query = byEmail();
    const shadowed = (await query.execute(testDb.db.withSchema('shadow'), { email })).rows;
    const camel = (await query.execute(testDb.db.withPlugin(new CamelCasePlugin()), { email })).rows;
    const plain = (await query.execute(testDb.db, { email })).rows;
    expect(plain).toEqual([{ display_name: expect.not.stringMatching(shadowName) }]);
    expect(shadowed).toEqual(plain);
    expect(camel).toEqual([{ displayName: plain[0]!.display_name }]);
    // …and in a transaction of an instance with a schema.
    await testDb.db
      .withSchema('shadow')
      .transaction()
      .execute(async (trx) => expect((await query.execute(trx, { email })).rows).toEqual(plain));
});
});
