import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationBlockedError, MigrationError, MigrationPartiallyAppliedError, MigrationScriptError } from '../../src/errors.js';
import { migrate, migrateDown } from '../../src/migrations/migrator.js';
import { withClient } from '../../src/db/with-client.js';
import { eventually } from '../support/eventually.js';
import { writeMigration as writeMigrationFiles } from '../support/migration-sandbox.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
let migrationsDir: string;

beforeEach(async () => {
  database = await createTestDatabase({ empty: true });
  migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
});

afterEach(async () => {
  await database.drop();
  await rm(migrationsDir, { recursive: true, force: true });
});

async function writeMigration(name: string, up: string[], down: string[] = ['SELECT 1;']): Promise<void> {
  await writeMigrationFiles(migrationsDir, name, up.join('\n'), down.join('\n'));
}

async function rows<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withClient(database.url, async (client) => (await client.query<T>(sql, params)).rows);
}

const recorded = async () => (await rows<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name')).map((r) => r.name);
const index = async (name: string) =>
  (
    await rows<{ valid: boolean; ready: boolean }>(
      'SELECT indisvalid AS valid, indisready AS ready FROM pg_index WHERE indexrelid = to_regclass($1)',
      [name],
    )
  )[0];

const table = '20990101000000_events';
const createEvents = async (rowCount: number) =>
  writeMigration(table, [
    'CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int NOT NULL, body text NOT NULL);',
    `INSERT INTO events (account, body) SELECT n % 1000, md5(n::text) FROM generate_series(1, ${rowCount}) AS n;`,
  ], ['DROP TABLE events;']);

describe('a -- migrate:no-transaction migration', () => {
  // Its first transaction commits before it waits for the partitioned table's readers: an
  // attempt that ran out of lock time there left the detach pending, and every attempt after it,
  // and every later run, failed with "partition … already pending detach".
  // One that failed left its INVALID index where the migrator looks only by name, and the re-run
  // built another beside it (t_x_idx1), the INVALID one staying, written to on every write.
  it('says, before anything is applied, that a CREATE INDEX CONCURRENTLY has no name of its own', async () => {
    await createEvents(10);
    await migrate({ databaseUrl: database.url, migrationsDir });
    await writeMigration('20990101000001_index', ['-- migrate:no-transaction', 'CREATE INDEX CONCURRENTLY events_body ON events (body);', 'CREATE INDEX CONCURRENTLY ON events (account);']);
    const warnings: string[] = [];

    await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, warn: (line) => warnings.push(line) });

    expect(warnings).toEqual([
      expect.stringMatching(/^20990101000001_index\.up\.sql:3: CREATE INDEX CONCURRENTLY without a name: if it fails, its INVALID index stays where the migrator cannot find it.*Name the index$/),
    ]);
  });

  it('completes a DETACH PARTITION … CONCURRENTLY whose attempt ran out behind a reader, with FINALIZE', async () => {
    await writeMigration('20990101000000_events', [
      'CREATE TABLE ev (n int NOT NULL) PARTITION BY RANGE (n);',
      'CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (10);',
      'INSERT INTO ev SELECT generate_series(0, 9);',
    ], ['DROP TABLE ev;']);
    await migrate({ databaseUrl: database.url, migrationsDir });
    await writeMigration('20990101000001_detach', ['-- migrate:no-transaction', 'ALTER TABLE ev DETACH PARTITION ev_1 CONCURRENTLY;']);
    const reader = new pg.Client({ connectionString: database.url });
    await reader.connect();
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM ev');
    const warnings: string[] = [];
    let released = false;
    const run = migrate({
      databaseUrl: database.url,
      migrationsDir,
      warn: (line) => {
        warnings.push(line);
        // Once an attempt has run out behind the reader, the reader ends.
        if (!released) void reader.end().then(() => undefined);
        released = true;
      },
    });
    try {
      expect(await run).toEqual([expect.objectContaining({ name: '20990101000001_detach' })]);
    } finally {
      if (!released) await reader.end();
    }
    expect(warnings.length).toBeGreaterThan(0);
    expect(await rows("SELECT inhrelid::regclass::text AS partition FROM pg_inherits WHERE inhparent = 'ev'::regclass")).toEqual([]);
  });

  it('builds an index CONCURRENTLY while other sessions keep writing, holding the migration lock, and the index is valid', async () => {
    await createEvents(20_000);
    await migrate({ databaseUrl: database.url, migrationsDir });
    await writeMigration(
      '20990101000001_index_events_by_account',
      ['-- migrate:no-transaction', '-- Logins must not wait for this build.', 'CREATE INDEX CONCURRENTLY events_account ON events (account);'],
      ['-- migrate:no-transaction', 'DROP INDEX CONCURRENTLY events_account;'],
    );

    // A writer with an open transaction on the table: CREATE INDEX CONCURRENTLY waits for it
    // before its build, which gives the test a moment that is surely in the middle of the build.
    const openWriter = new pg.Client({ connectionString: database.url });
    await openWriter.connect();
    await openWriter.query('BEGIN');
    await openWriter.query("INSERT INTO events (account, body) VALUES (7, 'open writer')");
    let settled = false;
    const run = migrate({ databaseUrl: database.url, migrationsDir }).finally(() => (settled = true));
    try {
      await eventually(
        async () =>
          (
            await rows(
              "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kennwilliamson-migrate' AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
            )
          ).length === 1,
        'CREATE INDEX CONCURRENTLY waits for the open writer',
        { timeoutMs: 20_000 },
      );
      // Meanwhile other sessions write and commit (a plain CREATE INDEX would block them all),
      const writers = await Promise.all(
        Array.from({ length: 4 }, (_, w) =>
          withClient(database.url, async (client) => {
            for (let i = 0; i < 25; i++) {
              await client.query("INSERT INTO events (account, body) VALUES ($1, 'during the build')", [w]);
              await client.query("UPDATE events SET body = 'updated during the build' WHERE id = $1", [w * 100 + i + 1]);
            }
            return 25;
          }),
        ),
      );
      expect(writers.reduce((a, b) => a + b, 0)).toBe(100);
      expect(settled).toBe(false);
      // the migration lock stays held by the run, and its holder, idle in its transaction,
      // has neither a transaction id nor a snapshot, so the build never waits for it.
      const [holder] = await rows<{ xid: string | null; xmin: string | null; state: string }>(
        `SELECT a.backend_xid AS xid, a.backend_xmin AS xmin, a.state FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
          WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'kennwilliamson-migrate-lock'
            AND a.datname = current_database()`,
      );
      expect(holder).toEqual({ xid: null, xmin: null, state: 'idle in transaction' });
    } finally {
      await openWriter.query('COMMIT');
      await openWriter.end();
    }
    const runs = await run;

    expect(runs.map((r) => r.name)).toEqual(['20990101000001_index_events_by_account']);
    expect(await index('events_account')).toEqual({ valid: true, ready: true });
    // The index holds the rows written during its build.
    const [count] = await withClient(database.url, async (client) => {
      await client.query('SET enable_seqscan = off');
      return (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE account = 7 AND body = 'open writer'")).rows;
    });
    expect(count!.n).toBe(1);

    const reverted = await migrateDown({ databaseUrl: database.url, migrationsDir });
    expect(reverted.map((r) => r.name)).toEqual(['20990101000001_index_events_by_account']);
    expect(await index('events_account')).toBeUndefined();
  });

  it('builds its index while another migrator waits for the lock: the build never waits for that wait', async () => {
    await createEvents(2_000);
    await migrate({ databaseUrl: database.url, migrationsDir });
    const name = '20990101000001_index_events_by_account';
    await writeMigration(name, ['-- migrate:no-transaction', 'CREATE INDEX CONCURRENTLY events_account ON events (account);']);
    const waiting = async (application: string, query: string) =>
      (
        await rows(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2 AND wait_event_type = 'Lock' AND datname = current_database()",
          [application, query],
        )
      ).length === 1;

    // An open writer holds the build at its start until the second release job waits for the
    // lock; then the build goes on to wait for every older snapshot. A wait for the lock that
    // held one until the lock came free would hold the build until the waiter gave up (here
    // after two minutes, far past the test's time).
    const openWriter = new pg.Client({ connectionString: database.url });
    await openWriter.connect();
    await openWriter.query('BEGIN');
    await openWriter.query("INSERT INTO events (account, body) VALUES (7, 'open writer')");
    let first: Promise<Array<{ name: string }>>;
    let second: Promise<Array<{ name: string }>>;
    try {
      first = migrate({ databaseUrl: database.url, migrationsDir });
      first.catch(() => undefined);
      await eventually(() => waiting('kennwilliamson-migrate', 'CREATE INDEX CONCURRENTLY%'), 'the build waits for the open writer', { timeoutMs: 20_000 });
      second = migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 120_000 });
      second.catch(() => undefined);
      await eventually(() => waiting('kennwilliamson-migrate-lock', '%pg_advisory_xact_lock%'), 'the second migrator waits for the lock', { timeoutMs: 20_000 });
    } finally {
      await openWriter.query('COMMIT');
      await openWriter.end();
    }

    expect((await first).map((run) => run.name)).toEqual([name]);
    expect(await second).toEqual([]);
    expect(await index('events_account')).toEqual({ valid: true, ready: true });
  });

  it('failing half-way keeps what ran, records nothing, names file and line, and says how to find the INVALID index', async () => {
    await createEvents(2_000);
    await migrate({ databaseUrl: database.url, migrationsDir });
    const name = '20990101000001_unique_bodies';
    await writeMigration(name, [
      '-- migrate:no-transaction',
      'ALTER TABLE events ADD COLUMN note text;',
      '',
      '-- fails: the same body appears for several accounts',
      'CREATE UNIQUE INDEX CONCURRENTLY events_account_unique',
      '  ON events (account);',
      'CREATE INDEX CONCURRENTLY events_note ON events (note);',
    ]);

    const error = (await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e)) as MigrationPartiallyAppliedError;

    expect(error).toBeInstanceOf(MigrationPartiallyAppliedError);
    expect(error).toBeInstanceOf(MigrationError);
    expect(error.file).toBe(`${name}.up.sql`);
    expect(error.line).toBe(5);
    expect(error.statementsApplied).toBe(1);
    expect((error.cause as { code?: string }).code).toBe('23505');
    expect(error.message).toContain(`${name}.up.sql failed at line 5`);
    expect(error.message).toContain('INVALID');
    expect(error.message).toContain('SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid');
    expect(error.message).toContain('events_account_unique');
    // The statement before the failure took effect; the failed build left an INVALID index; the one after never ran.
    expect(await rows("SELECT 1 FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'note'")).toHaveLength(1);
    expect(await index('events_account_unique')).toMatchObject({ valid: false });
    expect(await rows('SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid')).toEqual([
      { name: 'events_account_unique' },
    ]);
    expect(await index('events_note')).toBeUndefined();
    expect(await recorded()).toEqual([table]);
    // The lock was released: the next run takes it and stops at the same place.
    await expect(migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 2_000 })).rejects.toThrow(
      /already exists/,
    );
  });

  it('that runs out of time after its CREATE INDEX CONCURRENTLY made the index names the INVALID index it left, and the next run refuses to skip it', async () => {
    await createEvents(2_000);
    await migrate({ databaseUrl: database.url, migrationsDir });
    const name = '20990101000001_index_events_by_account';
    await writeMigration(name, [
      '-- migrate:no-transaction',
      '-- migrate:lock-wait total=1s',
      'CREATE INDEX CONCURRENTLY IF NOT EXISTS events_account ON events (account);',
    ]);

    // A transaction with a snapshot (a backup's, say): the build makes its index, builds it,
    // then waits for every older snapshot, and runs out of time there.
    const reader = new pg.Client({ connectionString: database.url });
    await reader.connect();
    let error: unknown;
    try {
      await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await reader.query('SELECT count(*) FROM events');
      error = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);
    } finally {
      await reader.end();
    }

    expect(error).toBeInstanceOf(MigrationBlockedError);
    expect(error).toMatchObject({ file: `${name}.up.sql`, line: 3, statementsApplied: 0, invalidIndex: '"events_account"' });
    expect((error as Error).message).not.toContain('Nothing of this migration was applied');
    expect((error as Error).message).toContain('left its index "events_account" behind, INVALID');
    expect((error as Error).message).toContain('DROP INDEX CONCURRENTLY "events_account";');
    expect(await index('events_account')).toMatchObject({ valid: false });

    // With the reader gone, IF NOT EXISTS would find the index and skip the build: the run
    // refuses, rather than record the migration without a usable index.
    const again = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(MigrationPartiallyAppliedError);
    expect(again).toMatchObject({ file: `${name}.up.sql`, line: 3, statementsApplied: 0 });
    expect((again as Error).message).toContain('the index "events_account" exists and is INVALID');
    expect(await recorded()).toEqual([table]);

    // Dropped as the message says, the next run builds it.
    await withClient(database.url, (client) => client.query('DROP INDEX CONCURRENTLY events_account'));
    expect((await migrate({ databaseUrl: database.url, migrationsDir })).map((r) => r.name)).toEqual([name]);
    expect(await index('events_account')).toEqual({ valid: true, ready: true });
  });

  it("builds its index whatever the database's default isolation level: the lock's holder keeps no snapshot", async () => {
    await createEvents(2_000);
    await migrate({ databaseUrl: database.url, migrationsDir });
    await withClient(database.url, (client) =>
      client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET default_transaction_isolation = 'serializable'`),
    );
    await writeMigration('20990101000001_index_events_by_account', [
      '-- migrate:no-transaction',
      '-- migrate:lock-wait total=5s',
      'CREATE INDEX CONCURRENTLY events_account ON events (account);',
    ]);

    // A holder with a snapshot would have the build wait for it until the 5 s ran out.
    expect((await migrate({ databaseUrl: database.url, migrationsDir })).map((r) => r.name)).toEqual(['20990101000001_index_events_by_account']);
    expect(await index('events_account')).toEqual({ valid: true, ready: true });
  });

  it('is refused on a database that turns standard_conforming_strings off, before any statement runs', async () => {
    await withClient(database.url, (client) => client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET standard_conforming_strings = off`));
    await writeMigration('20990101000000_first', ['CREATE TABLE first (id int);']);
    await writeMigration('20990101000001_vacuum', ['-- migrate:no-transaction', 'CREATE TABLE t (id int);', 'VACUUM t;']);

    const error = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ file: '20990101000001_vacuum.up.sql' });
    expect((error as Error).message).toContain('standard_conforming_strings');
    expect(await rows("SELECT to_regclass('first') AS f, to_regclass('t') AS t")).toEqual([{ f: null, t: null }]);
  });
});

describe('a transactional migration', () => {
  it('runs as one query whatever the database’s standard_conforming_strings, storing backslashes as written', async () => {
    await withClient(database.url, (client) => client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET standard_conforming_strings = off`));
    await writeMigration('20990101000000_paths', [
      'CREATE TABLE paths (p text, d date);',
      "INSERT INTO paths VALUES ('C:\\temp\\', DATE'2025-01-01');",
      'CREATE FUNCTION path_count() RETURNS bigint LANGUAGE sql',
      'BEGIN ATOMIC',
      '  SELECT count(*) FROM paths;',
      'END;',
    ]);

    await migrate({ databaseUrl: database.url, migrationsDir });

    expect(await rows('SELECT p, path_count()::int AS n FROM paths')).toEqual([{ p: 'C:\\temp\\', n: 1 }]);
  });

  it('with COMMIT inside is refused before anything runs, also the pending migrations before it', async () => {
    await writeMigration('20990101000000_first', ['CREATE TABLE first (id int);']);
    await writeMigration('20990101000001_commits', ['CREATE TABLE a (id int);', 'COMMIT;', 'CREATE TABLE b (id int);']);

    const error = (await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e)) as MigrationScriptError;

    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ file: '20990101000001_commits.up.sql', line: 2 });
    expect(error.message).toContain('-- migrate:no-transaction');
    expect(await rows("SELECT to_regclass('first') AS f, to_regclass('a') AS a")).toEqual([{ f: null, a: null }]);
    expect(await recorded()).toEqual([]);
  });

  it('down file with COMMIT inside is refused before any migration is reverted', async () => {
    await writeMigration('20990101000000_first', ['CREATE TABLE first (id int);'], ['DROP TABLE first;', 'COMMIT;']);
    await writeMigration('20990101000001_second', ['CREATE TABLE second (id int);'], ['DROP TABLE second;']);
    await migrate({ databaseUrl: database.url, migrationsDir });

    const error = await migrateDown({ databaseUrl: database.url, migrationsDir, to: 0 }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ file: '20990101000000_first.down.sql', line: 2 });
    expect(await recorded()).toEqual(['20990101000000_first', '20990101000001_second']);
    expect(await rows("SELECT to_regclass('second')::text AS s")).toEqual([{ s: 'second' }]);
  });

  it('that needs to run outside a transaction fails pointing at the no-transaction header', async () => {
    await writeMigration('20990101000000_index', ['CREATE TABLE t (id int);', 'CREATE INDEX CONCURRENTLY t_id ON t (id);']);

    const error = (await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e)) as MigrationError;

    expect(error).toBeInstanceOf(MigrationError);
    expect(error.line).toBe(2);
    expect(error.message).toContain("put '-- migrate:no-transaction' on the file's first line");
    expect(await rows("SELECT to_regclass('t') AS t")).toEqual([{ t: null }]);
  });
});
