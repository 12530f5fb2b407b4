import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import type { DbConfig } from '../../src/db/db-config.js';
import { withClient } from '../../src/db/with-client.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.js';
import { useTestDatabase } from '../support/test-database.js';
import { inject } from 'vitest';

const testDb = useTestDatabase();

const displayNameById = prepareQuery((db, p: { id: string }) =>
  db.selectFrom('users').select('display_name').where('id', '=', p.id).where('active', '=', true),
);

interface PreparedStatement {
  name: string;
  statement: string;
  executions: number;
}

/** The statements the connection of `db` holds prepared; `db` must have one connection. */
async function preparedOn(db: Kysely<DB>): Promise<PreparedStatement[]> {
  const { rows } = await sql<PreparedStatement>`
    SELECT name, statement, (generic_plans + custom_plans)::int AS executions
    FROM pg_prepared_statements ORDER BY prepare_time, name`.execute(db);
  return rows;
}

function singleConnectionDb(url: string, config: Partial<DbConfig> = {}, poolErrors: string[] = []): Kysely<DB> {
  return createDb(
    { databaseUrl: url, maxConnections: 1, minConnections: 0, ...config },
    { onPoolError: (message) => poolErrors.push(message) },
  );
}

describe('named statements on a direct connection', () => {
  it('runs a prepareQuery statement as a named statement, parsed once and bound on every call', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url);
    try {
      for (let call = 0; call < 3; call++) {
        expect((await displayNameById.execute(db, { id: user.id })).rows).toEqual([{ display_name: user.displayName }]);
      }
      const [prepared, ...others] = await preparedOn(db);
      expect(others).toEqual([]);
      expect(prepared).toMatchObject({ name: expect.stringMatching(/^kw_[0-9a-f]{24}$/), executions: 3 });
      expect(prepared!.statement).toBe('select "display_name" from "users" where "id" = $1 and "active" = true');
    } finally {
      await db.destroy();
    }
  });

  it('names the statements of a transaction too: approve’s lock and update', async () => {
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    const db = singleConnectionDb(testDb.url);
    try {
      for (let round = 0; round < 2; round++) {
        const suggestion = await phraseSuggestions.submit(testDb.db, user.id, `Named in a transaction ${round}`);
        await phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id });
      }
      const prepared = await preparedOn(db);
      expect(prepared.map((p) => p.executions)).toEqual([2, 2]);
      expect(prepared[0]!.statement).toMatch(/^select .* from "phrase_suggestions" .* for update$/);
      expect(prepared[1]!.statement).toMatch(/update "phrase_suggestions" set "status" = 'approved'/);
    } finally {
      await db.destroy();
    }
  });

  it('gives the same rows, types and counts as unnamed statements, on the first run and the later ones', async () => {
    const user = await newUser(testDb.db);
    const typed = prepareQuery((db, p: { id: string; bytes: Buffer; json: string }) =>
      db
        .selectFrom('users')
        .select([
          'id',
          'active',
          'created_at',
          sql<Buffer>`cast(${p.bytes} as bytea)`.as('bytes'),
          sql<unknown>`cast(${p.json} as jsonb)`.as('json'),
          sql<number | null>`null::int`.as('nothing'),
          sql<string>`count(*) over ()`.as('total'),
        ])
        .where('id', '=', p.id),
    );
    const rename = prepareQuery((db, p: { id: string; name: string }) =>
      db.updateTable('users').set({ display_name: p.name }).where('id', '=', p.id),
    );
    const params = { id: user.id, bytes: Buffer.from([0, 1, 254]), json: '{"a": [1, "x"]}' };
    const named = singleConnectionDb(testDb.url);
    const unnamed = singleConnectionDb(testDb.url, { preparedStatements: 'off' });
    try {
      for (let call = 0; call < 3; call++) {
        const [a, b] = [await typed.execute(named, params), await typed.execute(unnamed, params)];
        expect(a).toEqual(b);
        expect(a.rows[0]).toMatchObject({ active: true, bytes: params.bytes, json: { a: [1, 'x'] }, nothing: null, total: '1' });
        expect(a.rows[0]!.created_at).toBeInstanceOf(Date);
        expect(await rename.execute(named, { id: user.id, name: `Renamed ${call}` })).toEqual({ rows: [], numAffectedRows: 1n });
      }
      expect((await preparedOn(named)).map((p) => p.executions)).toEqual([3, 3]);
    } finally {
      await named.destroy();
      await unnamed.destroy();
    }
  });

  it('keeps the connection usable after a value pg cannot send', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    try {
      await expect(displayNameById.execute(db, { id: circular as unknown as string })).rejects.toThrow();
      expect((await displayNameById.execute(db, { id: user.id })).rows).toEqual([{ display_name: user.displayName }]);
    } finally {
      await db.destroy();
    }
  });

  it('sends nothing named with DB_PREPARED_STATEMENTS=off', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url, { preparedStatements: 'off' });
    try {
      expect((await displayNameById.execute(db, { id: user.id })).rows).toHaveLength(1);
      expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
      expect(await preparedOn(db)).toEqual([]);
    } finally {
      await db.destroy();
    }
  });
});

describe('named statements behind PgBouncer 1.18 in transaction mode', () => {
  let bouncer: PgBouncer;
  beforeAll(async () => {
    // One server connection: every client of the pooler shares it, so what one client
    // prepares is there for the others, and what a third deallocates is gone for all.
    bouncer = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 1 });
  });
  afterAll(async () => bouncer?.stop());

  const pooledUrl = () => bouncer.url(testDb.directUrl);

  it('with the default (auto) sees the pooler, names nothing, and every hot path works under concurrency', async () => {
    const wide = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 3 });
    const poolErrors: string[] = [];
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    const db = createDb({ databaseUrl: wide.url(testDb.directUrl), maxConnections: 6 }, { onPoolError: (m) => poolErrors.push(m) });
    try {
      await Promise.all(
        Array.from({ length: 6 }, async (_, worker) => {
          let token = (await refreshTokens.issue(db, { userId: user.id })).token;
          for (let round = 0; round < 15; round++) {
            expect(await users.findByEmail(db, user.email)).toMatchObject({ id: user.id });
            expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
            await phrases.randomForUser(db, user.id);
            token = (await refreshTokens.rotate(db, token)).token;
            const suggestion = await phraseSuggestions.submit(db, user.id, `Pooled ${worker}.${round}`);
            await phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id });
          }
        }),
      );
      expect(poolErrors).toEqual([]);
      // Three transactions at once hold all three server connections: none holds a statement.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let opened = 0;
      const counts = Array.from({ length: 3 }, () =>
        db.transaction().execute(async (trx) => {
          const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_prepared_statements`.execute(trx);
          if (++opened === 3) release();
          await held;
          return rows[0]!.n;
        }),
      );
      expect(await Promise.all(counts)).toEqual([0, 0, 0]);
    } finally {
      await db.destroy();
      await wide.stop();
    }
  });

  it('with DB_PREPARED_STATEMENTS=on retries unnamed when the server already holds the name (42P05) or lost it (26000), then stops naming', async () => {
    const user = await newUser(testDb.db);
    const expected = [{ display_name: user.displayName }];
    const errorsA: string[] = [];
    const errorsB: string[] = [];
    const a = singleConnectionDb(pooledUrl(), { preparedStatements: 'on' }, errorsA);
    const b = singleConnectionDb(pooledUrl(), { preparedStatements: 'on' }, errorsB);
    try {
      // a prepares the statement on the one server connection.
      expect((await displayNameById.execute(a, { id: user.id })).rows).toEqual(expected);
      expect(errorsA).toEqual([]);
      // b's client has not prepared it, so it sends Parse: the server already has the name.
      expect((await displayNameById.execute(b, { id: user.id })).rows).toEqual(expected);
      expect(errorsB).toEqual([expect.stringContaining('no longer named')]);

      // Another client of the pooler empties the server connection; a's client believes the
      // statement is still there and sends only Bind.
      await withClient(pooledUrl(), (client) => client.query('DEALLOCATE ALL'));
      expect((await displayNameById.execute(a, { id: user.id })).rows).toEqual(expected);
      expect(errorsA).toEqual([expect.stringContaining('no longer named')]);

      // From now on neither names anything, in a transaction as well.
      await a.transaction().execute(async (trx) => {
        expect((await displayNameById.execute(trx, { id: user.id })).rows).toEqual(expected);
      });
      expect((await displayNameById.execute(b, { id: user.id })).rows).toEqual(expected);
      expect(await preparedOn(a)).toEqual([]);
      expect([...errorsA, ...errorsB]).toHaveLength(2);
    } finally {
      await a.destroy();
      await b.destroy();
    }
  });
});
