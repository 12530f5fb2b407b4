import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, inject, onTestFinished, vi } from 'vitest';
import { ConfigError, MigrationLockLostError, MigrationLockTimeoutError, MigrationPermissionError } from '../../src/errors.js';
import { checksumOf } from '../../src/migrations/migration-files.js';
import { migrationLockKey } from '../../src/migrations/migration-lock.js';
import { migrate, migrationStatus } from '../../src/migrations/migrator.js';
import { withClient } from '../../src/db/with-client.js';
import { databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { eventually } from '../support/eventually.js';
import { holdAdvisoryLock } from '../support/advisory-lock-holder.js';
import { createMigrationSandbox } from '../support/migration-sandbox.js';
import { healAllPartitions, packetFilterAvailable, silenceConnections } from '../support/packet-filter.js';
import { cliOutcome, startCli } from '../support/run-cli.js';
import type { TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
let migrationsDir: string;
let remove: () => Promise<void>;
let observer: pg.Client;

beforeEach(async () => {
  ({ database, migrationsDir, observer, remove } = await createMigrationSandbox({ observed: true }));
});

const packetFilter = packetFilterAvailable("the migration lock's silent-partition test");

afterEach(async () => {
  vi.useRealTimers();
  // A test that timed out never reached its own heal.
  if (packetFilter) healAllPartitions();
  await remove();
});

/** Another session holding the migration lock, as a running migrator would, until `release`. */
const holdMigrationLock = (applicationName: string) => holdAdvisoryLock(database.url, migrationLockKey, applicationName);

async function one<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T | undefined> {
  return withClient(database.url, async (client) => (await client.query<T>(sql, params)).rows[0]);
}

/** How many sessions `sql` counts (as `count`), asked on the sandbox's observing connection. */
const sessions = async (sql: string) => (await observer.query<{ count: number }>(sql)).rows[0]!.count;

const lockWaiters = () =>
  sessions(
    "SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate-lock' AND wait_event_type = 'Lock' " +
      'AND datname = current_database()',
  );

describe('the migration lock', () => {
  it('gives up after the lock timeout, naming the pid, the application and since when the holder has held it', async () => {
    const holder = await holdMigrationLock('release-step-on-host-a');
    try {
      const error = (await migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 300 }).catch((e: unknown) => e)) as MigrationLockTimeoutError;

      expect(error).toBeInstanceOf(MigrationLockTimeoutError);
      expect(error.holder).toMatchObject({ pid: holder.pid, applicationName: 'release-step-on-host-a' });
      expect(error.holder?.since).toBeInstanceOf(Date);
      expect(error.message).toContain(`pid ${holder.pid} (application 'release-step-on-host-a') since `);
      expect((error.cause as { code?: string }).code).toBe('55P03');
      expect(await one("SELECT to_regclass('users') AS users")).toEqual({ users: null });
    } finally {
      await holder.release();
    }
  });

  // As the commands ask: refused before the lock, so a refused run never waits for another.
  it('refuses a superuser with refuseSuperuser before it asks for the lock another run holds, and creates nothing', async () => {
    const holder = await holdMigrationLock('release-step-on-host-a');
    try {
      // Were it to wait, the lock timeout would outlast the test's.
      const error = await migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 120_000, refuseSuperuser: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ variable: 'databaseUrl' });
      expect((error as Error).message).toMatch(/^databaseUrl logs in as '[^']+', a superuser: .*; nothing was applied$/);
      expect(await lockWaiters()).toBe(0);
      expect(await one("SELECT to_regclass('schema_migrations') AS record")).toEqual({ record: null });
    } finally {
      await holder.release();
    }
    // The owner, with the same option, migrates.
    expect(await migrate({ databaseUrl: database.ownerUrl, migrationsDir, refuseSuperuser: true })).not.toEqual([]);
  });

  it("refuses, with refuseOtherOwner, a login other than the migrations record's owner before it asks for the lock, and creates nothing", async () => {
    await migrate({ databaseUrl: database.ownerUrl, migrationsDir });
    // A member of the owner role may create in public and write the record, as itself.
    const other = `kw_member_${randomBytes(4).toString('hex')}`;
    await withClient(database.url, async (client) => {
      await client.query(`CREATE ROLE ${other} LOGIN PASSWORD 'member-password'; GRANT ${inject('ownerUser')} TO ${other}`);
    });
    // After afterEach has dropped the database and what the role owned in it.
    onTestFinished(async () => {
      await withMaintenanceClient(inject('serverUrl'), (client) => client.query(`DROP ROLE ${other}`));
    });
    const url = new URL(database.url);
    url.username = other;
    url.password = 'member-password';
    await writeFile(path.join(migrationsDir, '29990101000000_add_themes.up.sql'), 'CREATE TABLE themes (name text PRIMARY KEY);\n');
    await writeFile(path.join(migrationsDir, '29990101000000_add_themes.down.sql'), 'DROP TABLE themes;\n');
    const holder = await holdMigrationLock('release-step-on-host-a');
    try {
      const error = await migrate({ databaseUrl: url.toString(), migrationsDir, lockTimeoutMs: 120_000, refuseOtherOwner: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(
        new RegExp(`^databaseUrl logs in as '${other}', but the migrations record \\(public\\.schema_migrations\\) belongs to '${inject('ownerUser')}', .*; nothing was applied$`),
      );
      expect(await lockWaiters()).toBe(0);
      expect(await one("SELECT to_regclass('themes') AS themes")).toEqual({ themes: null });
    } finally {
      await holder.release();
    }
  });

  it('waits for a running migrator, says who it waits for, then applies what is left', async () => {
    const holder = await holdMigrationLock('first-migrator');
    const lines: string[] = [];
    const run = migrate({ databaseUrl: database.url, migrationsDir, log: (line) => lines.push(line) });
    await eventually(async () => (await lockWaiters()) === 1, 'the migrator waits for the lock');
    expect(lines).toEqual([`waiting for another migration run to finish (pid ${holder.pid}, first-migrator)…`]);

    await holder.release();

    expect((await run).length).toBeGreaterThan(0);
    expect(await one("SELECT to_regclass('users') IS NOT NULL AS users")).toEqual({ users: true });
  });

  it("is held for a whole run longer than the database's transaction_timeout (PostgreSQL 17), each migration being shorter", async ({ skip }) => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    // Before 17 there is no transaction_timeout to outlast.
    const server = await one<{ known: boolean; seventeen: boolean }>(
      "SELECT current_setting('transaction_timeout', true) IS NOT NULL AS known, current_setting('server_version_num')::int >= 170000 AS seventeen",
    );
    expect(server!.known).toBe(server!.seventeen);
    // Reported as skipped, not passed: only a server of one's own (TEST_DATABASE_URL) may be older.
    if (!server!.known) skip('the server is older than PostgreSQL 17: no transaction_timeout to outlast');
    await withClient(database.url, (client) => client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET transaction_timeout = '2s'`));
    const names = [1, 2, 3, 4, 5].map((n) => `2099010100000${n}_half_a_second`);
    for (const name of names) {
      await writeFile(path.join(migrationsDir, `${name}.up.sql`), 'SELECT pg_sleep(0.5);\n');
      await writeFile(path.join(migrationsDir, `${name}.down.sql`), '');
    }

    // The run lasts 2.5 s or more, each migration 0.5 s: a holder under the database's timeout
    // would be ended after the fourth, and the run would fail with MigrationLockLostError.
    expect((await migrate({ databaseUrl: database.url, migrationsDir })).map((run) => run.name)).toEqual(names);
  });

  // Real packet loss, as in test/db/silent-partition.test.ts: the holder's host is gone without a word.
  it.skipIf(!packetFilter)("is released within seconds when the holder's host goes silent: the server's keepalive ends its session", { timeout: 60_000 }, async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    // The first run's work waits at a gate the test holds, while its holder sits idle.
    const firstDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
    onTestFinished(() => rm(firstDir, { recursive: true, force: true }));
    await cp(migrationsDir, firstDir, { recursive: true });
    const gateKey = 73_100_077;
    await writeFile(path.join(firstDir, '20990101000000_gated.up.sql'), `SELECT pg_advisory_xact_lock(${gateKey});\n`);
    await writeFile(path.join(firstDir, '20990101000000_gated.down.sql'), '');
    const gate = await holdAdvisoryLock(database.url, gateKey, 'gate');
    const first = migrate({ databaseUrl: database.url, migrationsDir: firstDir });
    first.catch(() => undefined);
    try {
      await eventually(
        async () => (await sessions("SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate' AND wait_event = 'advisory' AND datname = current_database()")) === 1,
        'the first run waits at the gate',
      );
      const { rows } = await observer.query<{ client: number; server: number }>(
        "SELECT client_port AS client, inet_server_port() AS server FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate-lock' AND datname = current_database()",
      );
      expect(rows).toHaveLength(1);
      const partition = silenceConnections(rows[0]!.server, [rows[0]!.client]);
      try {
        // A second run waits for the lock, which the silent holder's session would keep for the
        // system's two hours of keepalive; its own keepalive gives it up in about 10 s.
        expect(await migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 50_000 })).toEqual([]);
      } finally {
        partition.heal();
      }
    } finally {
      await gate.release();
    }
    // The first run, whose lock is gone, rolls its migration back rather than record it.
    await expect(first).rejects.toBeInstanceOf(MigrationLockLostError);
    expect((await migrationStatus({ databaseUrl: database.url, migrationsDir: firstDir })).find((m) => m.name === '20990101000000_gated')?.state).toBe('pending');
  });

  // A file in a transaction holds users (ACCESS EXCLUSIVE) while it runs a long statement; a
  // file without one runs its statements in the session, as a CREATE INDEX CONCURRENTLY does,
  // whose lock and snapshot would hold back vacuum and other DDL on its table. (Not a lock
  // wait: the migration's lock_timeout would end that, and an aborted transaction holds no locks.)
  it.skipIf(!packetFilter).for<[string, string]>([
    ['in a transaction', 'ALTER TABLE users ADD COLUMN gated integer;\nSELECT pg_sleep(45);\n'],
    ['without one (-- migrate:no-transaction)', '-- migrate:no-transaction\nSELECT pg_sleep(45);\n'],
  ])(
    "frees what a migration %s locked within seconds when the migrator's host goes silent: the server's keepalive ends the migration's session",
    { timeout: 60_000 },
    async ([, sql]) => {
      await migrate({ databaseUrl: database.url, migrationsDir });
      const gatedDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
      onTestFinished(() => rm(gatedDir, { recursive: true, force: true }));
      await cp(migrationsDir, gatedDir, { recursive: true });
      await writeFile(path.join(gatedDir, '20990101000000_gated.up.sql'), sql);
      await writeFile(path.join(gatedDir, '20990101000000_gated.down.sql'), '');
      const run = migrate({ databaseUrl: database.url, migrationsDir: gatedDir }).then(
        () => undefined,
        (error: unknown) => error,
      );
      const migrationSession = () =>
        observer.query<{ client: number; server: number }>(
          "SELECT client_port AS client, inet_server_port() AS server FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate' AND datname = current_database()",
        );
      await eventually(
        async () => (await sessions("SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate' AND wait_event = 'PgSleep' AND datname = current_database()")) === 1,
        'the migration runs its long statement',
        { timeoutMs: 20_000 },
      );
      const { rows } = await migrationSession();
      expect(rows).toHaveLength(1);
      const partition = silenceConnections(rows[0]!.server, [rows[0]!.client]);
      try {
        // With the system's keepalive the session would finish its statement for nobody, then
        // keep users (its answer unacknowledged) for the kernel's quarter of an hour, every
        // query on users queued behind it; its own keepalive ends it in about 10 s.
        await eventually(async () => (await migrationSession()).rows.length === 0, "the server ends the migration's session", { timeoutMs: 25_000 });
        // users is free again: a reader gets it at once, not after a queue.
        await withClient(database.url, async (client) => {
          await client.query("SET lock_timeout = '2s'");
          expect((await client.query('SELECT count(*)::int AS count FROM users')).rows).toHaveLength(1);
        });
      } finally {
        partition.heal();
      }
      // The migrator's own keepalive ends its side; the migration is not recorded.
      expect(await run).toBeInstanceOf(Error);
      expect((await migrationStatus({ databaseUrl: database.url, migrationsDir: gatedDir })).find((m) => m.name === '20990101000000_gated')?.state).toBe('pending');
    },
  );

  // Ctrl-C ended the command with no word, and an operator could not tell what was applied.
  it('says, on Ctrl-C in the middle of a file, that the server rolls it back and it is not recorded', async () => {
    const slow = '20990101000000_slow_ctrl_c';
    await writeFile(path.join(migrationsDir, `${slow}.up.sql`), 'CREATE TABLE ctrl_c (id int);\nSELECT pg_sleep(61);\n');
    await writeFile(path.join(migrationsDir, `${slow}.down.sql`), 'DROP TABLE ctrl_c;\n');
    const child = startCli('migrate', ['--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: database.ownerUrl });
    const outcome = cliOutcome(child);
    const sleeping = () =>
      sessions(
        "SELECT count(*)::int AS count FROM pg_stat_activity WHERE query LIKE '%pg_sleep(61)%' AND state = 'active' AND datname = current_database() AND pid <> pg_backend_pid()",
      );
    await eventually(async () => (await sleeping()) === 1, 'the migrator runs the long statement', { timeoutMs: 20_000 });

    child.kill('SIGINT');
    const { code, stderr } = await outcome;

    expect(code).toBe(130);
    expect(stderr).toContain('SIGINT: stopped; the server rolls back the migration in progress as the connection closes, and it is not recorded');
    await eventually(async () => (await sleeping()) === 0, 'the server abandons the statement', { timeoutMs: 10_000 });
    expect((await migrationStatus({ databaseUrl: database.url, migrationsDir })).find((m) => m.name === slow)?.state).toBe('pending');
    await rm(path.join(migrationsDir, `${slow}.up.sql`));
    await rm(path.join(migrationsDir, `${slow}.down.sql`));
  });

  it('is released within seconds when a migrator is killed in the middle of a long statement', async () => {
    const slow = '20990101000000_slow';
    await writeFile(path.join(migrationsDir, `${slow}.up.sql`), 'SELECT pg_sleep(60);\n');
    await writeFile(path.join(migrationsDir, `${slow}.down.sql`), '');
    // As the owner, as the commands migrate (they refuse a superuser).
    const child = startCli('migrate', ['--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: database.ownerUrl });
    const sleeping = () =>
      sessions(
        "SELECT count(*)::int AS count FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active' AND datname = current_database()",
      );
    await eventually(async () => (await sleeping()) === 1, 'the migrator runs the long statement', { timeoutMs: 20_000 });

    child.kill('SIGKILL');

    // Without client_connection_check_interval the server would finish the 60 s sleep for
    // nobody, holding the migration's locks (and, with a session lock, the migration lock).
    await eventually(async () => (await sleeping()) === 0, 'the server abandons the statement', { timeoutMs: 10_000 });
    await eventually(
      async () => (await one<{ free: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS free', [migrationLockKey]))!.free,
      'the migration lock is free',
      { timeoutMs: 5_000 },
    );
    await rm(path.join(migrationsDir, `${slow}.up.sql`));
    await rm(path.join(migrationsDir, `${slow}.down.sql`));
    expect((await migrationStatus({ databaseUrl: database.url, migrationsDir })).every((m) => m.state === 'applied')).toBe(true);
  });
});

// Ctrl-Z in the terminal (or a paused VM) stops the migrator while its host and connection stay
// up: keepalive is answered, and the file's ACCESS EXCLUSIVE stayed held for as long as it was
// stopped, failing every read of the table (38 s and counting, in a review's run).
describe('a migrator that is stopped mid-file', () => {
  it("has its transaction ended by the server once idle past the limit: the table's locks go, and nothing is applied", async () => {
    await migrate({ databaseUrl: database.ownerUrl, migrationsDir });
    const name = '20990101000000_add_nick';
    await writeFile(path.join(migrationsDir, `${name}.up.sql`), 'ALTER TABLE users ADD COLUMN nick text;\nSELECT pg_sleep(2);\n');
    await writeFile(path.join(migrationsDir, `${name}.down.sql`), 'ALTER TABLE users DROP COLUMN nick;\n');
    const child = startCli('migrate', ['--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: database.ownerUrl });
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const migrating = (state: string) =>
      sessions(
        `SELECT count(*)::int AS count FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate' AND state = '${state}' ` +
          "AND query LIKE 'ALTER TABLE users ADD COLUMN nick%' AND datname = current_database()",
      );
    try {
      await eventually(async () => (await migrating('active')) === 1, 'the migrator runs the file', { timeoutMs: 20_000 });
      child.kill('SIGSTOP');
      // The file's last statement ends; its answer waits for a migrator that does not read it.
      await eventually(async () => (await migrating('idle in transaction')) === 1, 'the file waits for the stopped migrator');

      await eventually(async () => (await migrating('idle in transaction')) === 0, 'the server ends the idle transaction', { timeoutMs: 30_000 });
      const read = await withClient(database.url, async (client) => {
        await client.query("SET lock_timeout = '1s'");
        return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n;
      });
      expect(read).toEqual(expect.any(Number));
    } finally {
      child.kill('SIGCONT');
    }
    expect(await exited).toBe(1);
    expect(await one("SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'nick'")).toEqual({ n: 0 });
    expect((await migrationStatus({ databaseUrl: database.url, migrationsDir })).find((m) => m.name === name)?.state).toBe('pending');
  });
});

describe('a migration run', () => {
  it('starts each file as the role it logged in as, whatever role a file before it SET', async ({ onTestFinished }) => {
    await migrate({ databaseUrl: database.ownerUrl, migrationsDir });
    const other = `kw_set_role_${randomBytes(4).toString('hex')}`;
    await withClient(database.url, async (client) => {
      await client.query(`CREATE ROLE ${other}; GRANT ${other} TO ${inject('ownerUser')}; GRANT CREATE ON SCHEMA public TO ${other}; GRANT ALL ON schema_migrations TO ${other}`);
    });
    onTestFinished(async () => {
      await withMaintenanceClient(inject('serverUrl'), (client) => client.query(`DROP ROLE ${other}`));
    });
    await writeFile(path.join(migrationsDir, '20990101000000_as_other.up.sql'), `SET ROLE ${other};\nCREATE TABLE theirs (id int);\n`);
    await writeFile(path.join(migrationsDir, '20990101000000_as_other.down.sql'), 'DROP TABLE theirs;\n');
    await writeFile(path.join(migrationsDir, '20990102000000_ours.up.sql'), 'CREATE TABLE ours (id int);\n');
    await writeFile(path.join(migrationsDir, '20990102000000_ours.down.sql'), 'DROP TABLE ours;\n');

    await migrate({ databaseUrl: database.ownerUrl, migrationsDir });

    expect(await one("SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'ours'::regclass")).toEqual({ owner: inject('ownerUser') });
  });

  // Applied in one run, a file's session-level SET reached the files after it: the second file's
  // table went into the first file's schema, and into public when a release applied them apart.
  it("starts each file from the session's defaults, whatever a file before it SET, as if applied one run each", async () => {
    await writeFile(path.join(migrationsDir, '20990101000000_reporting.up.sql'), 'CREATE SCHEMA reporting;\nSET search_path = reporting, public;\nCREATE TABLE daily (d date);\n');
    await writeFile(path.join(migrationsDir, '20990101000000_reporting.down.sql'), 'DROP SCHEMA reporting CASCADE;\n');
    await writeFile(path.join(migrationsDir, '20990102000000_notes.up.sql'), 'CREATE TABLE notes (id int);\n');
    await writeFile(path.join(migrationsDir, '20990102000000_notes.down.sql'), 'DROP TABLE notes;\n');

    await migrate({ databaseUrl: database.ownerUrl, migrationsDir, lockTimeoutMs: 300_000 });

    expect(await one("SELECT to_regclass('reporting.daily') IS NOT NULL AS daily, to_regclass('public.notes') IS NOT NULL AS notes, to_regclass('reporting.notes') AS misplaced")).toEqual({
      daily: true,
      notes: true,
      misplaced: null,
    });
  });

  it('runs and records the SQL it read once, even if the file changes while it waits for the lock', async () => {
    const name = '20990101000000_edited_while_waiting';
    const file = path.join(migrationsDir, `${name}.up.sql`);
    const original = 'CREATE TABLE before_edit (id int);\n';
    await writeFile(file, original);
    await writeFile(path.join(migrationsDir, `${name}.down.sql`), 'DROP TABLE before_edit;\n');
    const holder = await holdMigrationLock('first-migrator');
    const run = migrate({ databaseUrl: database.url, migrationsDir });
    await eventually(async () => (await lockWaiters()) === 1, 'the migrator waits for the lock');

    await writeFile(file, 'CREATE TABLE after_edit (id int);\n');
    await holder.release();
    await run;

    expect(await one("SELECT to_regclass('before_edit') IS NOT NULL AS before, to_regclass('after_edit') IS NOT NULL AS after")).toEqual({
      before: true,
      after: false,
    });
    expect(await one('SELECT checksum FROM schema_migrations WHERE name = $1', [name])).toEqual({ checksum: checksumOf(original) });
    expect((await migrationStatus({ databaseUrl: database.url, migrationsDir })).find((m) => m.name === name)?.state).toBe('changed');
  });

  it('records a non-negative duration when the wall clock steps backwards during a migration', async () => {
    const name = '20990101000000_clock_step';
    // The migration runs until the test has stepped the clock (at most 30 s), then 0.3 s more:
    // a fixed sleep alone was a window a loaded machine's poll could miss.
    await one('CREATE TABLE clock_stepped (at timestamptz)');
    await writeFile(
      path.join(migrationsDir, `${name}.up.sql`),
      'DO $$ BEGIN FOR i IN 1..3000 LOOP EXIT WHEN EXISTS (SELECT FROM clock_stepped); PERFORM pg_sleep(0.01); END LOOP; END $$;\n' +
        'SELECT pg_sleep(0.3);\n',
    );
    await writeFile(path.join(migrationsDir, `${name}.down.sql`), '');
    await migrate({ databaseUrl: database.url, migrationsDir, to: (await migrationStatus({ databaseUrl: database.url, migrationsDir }))[0]!.name });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const run = migrate({ databaseUrl: database.url, migrationsDir });
    run.catch(() => undefined); // awaited below; if the wait fails first, the run's end is no second error
    try {
      await eventually(
        async () =>
          (await sessions(
            "SELECT count(*)::int AS count FROM pg_stat_activity WHERE query LIKE 'DO $$ BEGIN FOR i IN 1..3000%' AND datname = current_database()",
          )) === 1,
        'the migration runs',
      );

      vi.setSystemTime(Date.now() - 3_600_000); // an NTP step an hour back
    } finally {
      await one('INSERT INTO clock_stepped VALUES (now())');
    }

    await run;
    const row = await one<{ duration_ms: number }>('SELECT duration_ms FROM schema_migrations WHERE name = $1', [name]);
    expect(row!.duration_ms).toBeGreaterThanOrEqual(250);
  });
});

describe('the migration URL', () => {
  it('refuses a role that cannot create tables, saying that migrations need the owner’s URL', async () => {
    const role = `kw_app_${randomBytes(4).toString('hex')}`;
    await withClient(database.url, async (client) => {
      await client.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app-password'`);
      await client.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
    });
    try {
      const url = new URL(database.url);
      url.username = role;
      url.password = 'app-password';

      const error = await migrate({ databaseUrl: url.toString(), migrationsDir }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(MigrationPermissionError);
      expect((error as Error).message).toContain(`Role '${role}' cannot create objects`);
      expect((error as Error).message).toContain('MIGRATION_DATABASE_URL');
    } finally {
      await withMaintenanceClient(inject('serverUrl'), (client) => client.query(`DROP ROLE ${role}`));
    }
  });

  it('defaults to MIGRATION_DATABASE_URL over DATABASE_URL', async () => {
    vi.stubEnv('MIGRATION_DATABASE_URL', database.url);
    vi.stubEnv('DATABASE_URL', databaseUrlWith(database.url, 'no_such_database'));
    try {
      const runs = await migrate({ migrationsDir });
      expect(runs.length).toBeGreaterThan(0);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
