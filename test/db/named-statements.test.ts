import { type Kysely, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb, poolOf } from '../../src/db/create-db.js';
import type { DbConfig } from '../../src/db/db-config.js';
import { withClient } from '../../src/db/with-client.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { isRetryable, PreparedStatementError } from '../../src/errors.js';
import { phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { type PgBouncer, type PgBouncerVersion, pgBouncerVersions, startPgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { useTestDatabase } from '../support/test-database.js';

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

/**
 * Runs `work` once on each of the `count` connections of `db` (whose pool holds exactly that
 * many): `count` transactions at once, each kept open until all have run, so no two share one.
 */
async function onEachConnection<T>(db: Kysely<DB>, count: number, work: (trx: Transaction<DB>) => Promise<T>): Promise<T[]> {
  let arrived = 0;
  let allThere!: () => void;
  const barrier = new Promise<void>((resolve) => (allThere = resolve));
  return Promise.all(
    Array.from({ length: count }, () =>
      db.transaction().execute(async (trx) => {
        const result = await work(trx);
        if (++arrived === count) allThere();
        await barrier;
        return result;
      }),
    ),
  );
}

const preparedNames = async (trx: Kysely<DB>) =>
  (await sql<{ name: string }>`SELECT name FROM pg_prepared_statements ORDER BY name`.execute(trx)).rows.map((row) => row.name);

/**
 * `workers` callers run `work` in a loop; once each has done it `before` times, `change` runs
 * (from another session), and each caller goes on for `after` calls more. Returns every error
 * a call met, in order.
 */
async function trafficAround(
  work: () => Promise<unknown>,
  change: () => Promise<void>,
  { workers = 3, before = 3, after = 6 } = {},
): Promise<unknown[]> {
  const errors: unknown[] = [];
  let warm = 0;
  let changed = false;
  let allWarm!: () => void;
  const changing = new Promise<void>((resolve) => (allWarm = resolve)).then(change).then(() => {
    changed = true;
  });
  await Promise.all([
    changing,
    ...Array.from({ length: workers }, async () => {
      let calls = 0;
      let callsAfter = 0;
      while (callsAfter < after) {
        const afterChange = changed;
        await work().catch((error: unknown) => errors.push(error));
        if (++calls === before && ++warm === workers) allWarm();
        if (afterChange) callsAfter++;
      }
    }),
  ]);
  return errors;
}

const codesOf = (errors: unknown[]) =>
  errors.map((error) => (error as { cause?: { code?: string }; code?: string }).cause?.code ?? (error as { code?: string }).code);

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
  it('reports that it names statements because the connections reach PostgreSQL itself', async () => {
    const db = singleConnectionDb(testDb.url);
    try {
      expect(await poolOf(db).statementNaming()).toMatchObject({ mode: 'auto', named: true, route: 'direct' });
    } finally {
      await db.destroy();
    }
  });

  it.each([
    ['DISCARD ALL', 'auto'],
    ['DEALLOCATE ALL', 'auto'],
    ['DISCARD ALL', 'on'],
    ['DEALLOCATE ALL', 'on'],
  ] as const)(
    'after %s on one connection (%s), that connection prepares its statements again and the others keep theirs: nothing fails, naming goes on',
    async (command, mode) => {
      const user = await newUser(testDb.db);
      const poolErrors: string[] = [];
      const db = createDb(
        { databaseUrl: testDb.url, maxConnections: 2, minConnections: 0, preparedStatements: mode },
        { onPoolError: (m) => poolErrors.push(m) },
      );
      try {
        // Both connections prepare the statement (in transactions, so that they are two).
        await onEachConnection(db, 2, (trx) => displayNameById.execute(trx, { id: user.id }));
        const [name] = await preparedNames(db);
        // One of them loses every statement it prepared; pg still believes it holds them.
        await sql.raw(command).execute(db);

        // Calls on both connections at once: the emptied one meets 26000 and retries.
        for (let round = 0; round < 3; round++) {
          const results = await Promise.all([1, 2].map(() => displayNameById.execute(db, { id: user.id })));
          expect(results.map((result) => result.rows)).toEqual([[{ display_name: user.displayName }], [{ display_name: user.displayName }]]);
        }
        expect(poolErrors).toEqual([]);
        expect(await onEachConnection(db, 2, preparedNames)).toEqual([[name], [name]]);
      } finally {
        await db.destroy();
      }
    },
  );

  it('in a transaction, a statement the connection lost fails that transaction with a retryable PreparedStatementError, and the next one runs named', async () => {
    const user = await newUser(testDb.db);
    const poolErrors: string[] = [];
    const db = singleConnectionDb(testDb.url, {}, poolErrors);
    try {
      await displayNameById.execute(db, { id: user.id });
      await sql`DISCARD ALL`.execute(db);
      const failed = await db
        .transaction()
        .execute((trx) => displayNameById.execute(trx, { id: user.id }))
        .catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(PreparedStatementError);
      expect(failed).toMatchObject({ sqlState: '26000' });
      expect(isRetryable(failed)).toBe(true);

      const retried = await db.transaction().execute((trx) => displayNameById.execute(trx, { id: user.id }));
      expect(retried.rows).toEqual([{ display_name: user.displayName }]);
      expect((await preparedOn(db)).map((p) => p.name)).toEqual([expect.stringMatching(/^kw_[0-9a-f]{24}$/)]);
      expect(poolErrors).toEqual([]);
    } finally {
      await db.destroy();
    }
  });

  it('a migration that changes a column’s type while traffic runs fails no call: the statement is prepared again under a new name', async () => {
    const user = await newUser(testDb.db);
    const poolErrors: string[] = [];
    const db = createDb({ databaseUrl: testDb.url, maxConnections: 3, minConnections: 0 }, { onPoolError: (m) => poolErrors.push(m) });
    try {
      const errors = await trafficAround(
        async () => expect(await users.findById(db, user.id)).toMatchObject({ displayName: user.displayName }),
        () => withClient(testDb.directUrl, async (client) => void (await client.query('ALTER TABLE users ALTER COLUMN display_name TYPE varchar(200)'))),
      );
      expect(codesOf(errors)).toEqual([]);
      expect(poolErrors).toEqual([]);
      // The connections that ran it since hold the new name, and closed the outdated one.
      const held = await onEachConnection(db, 3, preparedNames);
      const renewed = held.filter((names) => names.some((name) => /^kw_[0-9a-f]{24}_1$/.test(name)));
      expect(renewed.length).toBeGreaterThan(0);
      for (const names of renewed) expect(names).toEqual([expect.stringMatching(/^kw_[0-9a-f]{24}_1$/)]);
      // In a transaction, a connection that meets an outdated statement fails once, retryably,
      // and the whole pool switched already.
      const lone = singleConnectionDb(testDb.url);
      try {
        await users.findById(lone, user.id);
        await withClient(testDb.directUrl, (client) => client.query('ALTER TABLE users ALTER COLUMN display_name TYPE text'));
        const failed = await lone.transaction().execute((trx) => users.findById(trx, user.id)).catch((error: unknown) => error);
        expect(failed).toBeInstanceOf(PreparedStatementError);
        expect(failed).toMatchObject({ sqlState: '0A000' });
        expect(await lone.transaction().execute((trx) => users.findById(trx, user.id))).toMatchObject({ id: user.id });
      } finally {
        await lone.destroy();
      }
    } finally {
      await db.destroy();
      await withClient(testDb.directUrl, (client) => client.query('ALTER TABLE users ALTER COLUMN display_name TYPE text'));
    }
  });
});

const poolers = Object.keys(pgBouncerVersions) as PgBouncerVersion[];

describe.each(poolers)('named statements behind PgBouncer %s in transaction mode', (version) => {
  const installed = toolsAvailable([pgBouncerVersions[version]], `the PgBouncer ${version} tests (.ci/build-pgbouncer builds 1.24)`);
  const keeps = version !== '1.18';
  let bouncer: PgBouncer;
  beforeAll(async () => {
    // One server connection: every client of the pooler shares it, so what one client
    // prepares is there for the others, and what a third deallocates is gone for all.
    if (installed) bouncer = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 1, version });
  });
  afterAll(async () => bouncer?.stop());

  const pooledUrl = () => bouncer.url(testDb.directUrl);

  it.skipIf(!installed)(
    `with the default (auto) ${keeps ? 'finds that the pooler keeps named statements and names them' : 'finds that the pooler loses named statements and names nothing'}; every hot path works under concurrency`,
    async () => {
      const wide = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 3, version });
      const poolErrors: string[] = [];
      const user = await newUser(testDb.db);
      const admin = await newAdmin(testDb.db);
      const db = createDb({ databaseUrl: wide.url(testDb.directUrl), maxConnections: 6 }, { onPoolError: (m) => poolErrors.push(m) });
      try {
        // The hot paths run while the pool decides, and after.
        const [report] = await Promise.all([
          poolOf(db).statementNaming(),
          ...Array.from({ length: 6 }, async (_, worker) => {
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
        ]);
        expect(report).toMatchObject({ mode: 'auto', named: keeps, route: 'pooler' });
        expect(report.reason).toContain(keeps ? 'prepared the probe’s statement again' : 'SQLSTATE 26000');
        expect(poolErrors).toEqual([]);
        // Three transactions at once hold all three server connections: what they hold is
        // PgBouncer's own names for our statements (1.24), or nothing at all (1.18).
        await users.findByEmail(db, user.email);
        const held = await onEachConnection(db, 3, preparedNames);
        if (keeps) expect(held.flat()).toContainEqual(expect.stringMatching(/^PGBOUNCER_\d+$/));
        else expect(held).toEqual([[], [], []]);
      } finally {
        await db.destroy();
        await wide.stop();
      }
    },
  );

  it.skipIf(!installed)('probes with connections of its own, so a pool of one connection decides too', async () => {
    const poolErrors: string[] = [];
    const wide = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 3, version });
    const db = singleConnectionDb(wide.url(testDb.directUrl), {}, poolErrors);
    try {
      expect(await poolOf(db).statementNaming()).toMatchObject({ named: keeps, route: 'pooler' });
      expect(poolErrors).toEqual([]);
    } finally {
      await db.destroy();
      await wide.stop();
    }
  });

  it.skipIf(!installed)(
    'with one server connection the probe cannot move its client: auto names nothing, fails no call, and says why once',
    async () => {
      const user = await newUser(testDb.db);
      const poolErrors: string[] = [];
      const db = createDb({ databaseUrl: pooledUrl(), maxConnections: 3 }, { onPoolError: (m) => poolErrors.push(m) });
      try {
        const [report] = await Promise.all([
          poolOf(db).statementNaming(),
          ...Array.from({ length: 3 }, async () => {
            for (let round = 0; round < 10; round++) expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
          }),
        ]);
        expect(report).toMatchObject({ mode: 'auto', named: false, route: 'pooler' });
        expect(report.reason).toContain('ran out of time');
        expect(poolErrors).toEqual([expect.stringContaining('could not tell whether the pooler keeps named statements')]);
        // Nothing of ours on the server connection; the probe closed its statement (1.18), or
        // left it to PgBouncer's cache (1.24), where it stays under PgBouncer's name.
        const held = await preparedOn(db);
        if (keeps) expect(held.filter((statement) => !statement.statement.includes('statement probe'))).toEqual([]);
        else expect(held).toEqual([]);
      } finally {
        await db.destroy();
      }
    },
  );

  it.skipIf(!installed)(
    'a new connection behind a saturated pooler is handed out after a bounded check, not after the pooler’s query_wait_timeout',
    async () => {
      // The check waits for a server connection the holder keeps; PgBouncer would fail it
      // after 8 s, which would fail the checkout as well.
      const saturated = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 1, version, queryWaitTimeoutSeconds: 8 });
      const holder = new pg.Client({ connectionString: saturated.url(testDb.directUrl) });
      const db = createDb({ databaseUrl: saturated.url(testDb.directUrl), maxConnections: 1, minConnections: 0 }, { onPoolError: () => undefined });
      try {
        await holder.connect();
        await holder.query('BEGIN; SELECT 1');
        const client = await poolOf(db).connect();
        // Handed out while the pooler's only server connection is still held.
        const answered = client.query('SELECT 1 AS one');
        await holder.query('ROLLBACK');
        expect((await answered).rows).toEqual([{ one: 1 }]);
        client.release();
      } finally {
        await holder.end();
        await db.destroy();
        await saturated.stop();
      }
    },
  );

  if (keeps) {
    it.skipIf(!installed)('with max_prepared_statements = 0 the probe sees the pooler lose them: auto names nothing, no call fails', async () => {
      const user = await newUser(testDb.db);
      const poolErrors: string[] = [];
      const off = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 3, version, maxPreparedStatements: 0 });
      const db = createDb({ databaseUrl: off.url(testDb.directUrl), maxConnections: 3 }, { onPoolError: (m) => poolErrors.push(m) });
      try {
        const [report] = await Promise.all([
          poolOf(db).statementNaming(),
          ...Array.from({ length: 3 }, async () => {
            for (let round = 0; round < 10; round++) expect(await users.findByEmail(db, user.email)).toMatchObject({ id: user.id });
          }),
        ]);
        expect(report).toMatchObject({ mode: 'auto', named: false, route: 'pooler' });
        expect(report.reason).toContain('SQLSTATE 26000');
        expect(poolErrors).toEqual([]);
        expect(await onEachConnection(db, 3, preparedNames)).toEqual([[], [], []]);
      } finally {
        await db.destroy();
        await off.stop();
      }
    });

    it.skipIf(!installed)(
      'a migration that changes a column’s type while traffic runs fails no call through the pooler either: its shared statement is not reused',
      async () => {
        const user = await newUser(testDb.db);
        const poolErrors: string[] = [];
        const wide = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 3, version });
        const db = createDb({ databaseUrl: wide.url(testDb.directUrl), maxConnections: 3 }, { onPoolError: (m) => poolErrors.push(m) });
        try {
          expect(await poolOf(db).statementNaming()).toMatchObject({ named: true });
          const errors = await trafficAround(
            async () => expect(await users.findById(db, user.id)).toMatchObject({ displayName: user.displayName }),
            () => withClient(testDb.directUrl, async (client) => void (await client.query('ALTER TABLE users ALTER COLUMN display_name TYPE varchar(200)'))),
          );
          expect(codesOf(errors)).toEqual([]);
          expect(poolErrors).toEqual([]);
          expect(await poolOf(db).statementNaming()).toMatchObject({ named: true });
        } finally {
          await db.destroy();
          await wide.stop();
          await withClient(testDb.directUrl, (client) => client.query('ALTER TABLE users ALTER COLUMN display_name TYPE text'));
        }
      },
    );
  } else {
    it.skipIf(!installed)('with DB_PREPARED_STATEMENTS=on retries unnamed when the server already holds the name (42P05) or lost it (26000), then stops naming', async () => {
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
  }
});
