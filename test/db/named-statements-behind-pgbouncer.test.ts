import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, poolOf, tunedPoolOf } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { type PgBouncer, type PgBouncerVersion, pgBouncerVersions, startPgBouncer } from '../support/pgbouncer.js';
import {
  codesOf,
  displayNameById,
  onEachConnection,
  preparedNames,
  preparedOn,
  singleConnectionDb,
  trafficAround,
} from '../support/prepared-statements.js';
import { toolsAvailable } from '../support/required-tools.js';
import { setTestRoleBounds } from '../support/role-bounds.js';
import { useTestDatabase } from '../support/test-database.js';

// The library at its defaults behind PgBouncer in transaction mode: Debian's 1.18, which loses
// a client's named statements when it hands the client another server connection, and 1.24
// (built by .ci/build-pgbouncer), which keeps them.
const testDb = useTestDatabase();

// As setup --admin gives the application role: behind the pooler the bounds are the role's
// defaults (without them the pool says, through onPoolError, that they are missing).
beforeAll(() => setTestRoleBounds(testDb.directUrl, { statementTimeoutMs: 5_000, lockTimeoutMs: 2_000, idleInTransactionTimeoutMs: 10_000 }));

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
        // The reason in the message: a failed match would otherwise leave it out.
        expect(report, report.reason).toMatchObject({ mode: 'auto', named: keeps, route: 'pooler' });
        expect(report.reason).toContain(keeps ? 'prepared the probe’s statement again' : 'SQLSTATE 26000');
        expect(poolErrors).toEqual([]);
        // Three transactions at once hold all three server connections: what they hold is
        // PgBouncer's own names for our statements (1.24), or none of ours (1.18).
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
      const report = await poolOf(db).statementNaming();
      expect(report, report.reason).toMatchObject({ named: keeps, route: 'pooler' });
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
        const client = await tunedPoolOf(db).connect();
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
