import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { ConnectionError, isRetryable, MigrationBlockedError } from '../../src/errors.js';
import type { LockWaitPolicy } from '../../src/migrations/lock-retries.js';
import { migrate } from '../../src/migrations/migrator.js';
import * as users from '../../src/queries/users.js';
import { eventually } from '../support/eventually.js';
import { startStallingProxy } from '../support/stalling-proxy.js';
import { newUser } from '../support/factories.js';
import { writeMigration as writeMigrationFiles, createMigrationSandbox } from '../support/migration-sandbox.js';
import { runCli } from '../support/run-cli.js';
import type { TestDatabase } from '../support/test-database.js';

// A long reader (pg_dump, a report) holds ACCESS SHARE on users while a migration alters it:
// the ALTER's ACCESS EXCLUSIVE request must never queue the traffic behind it for long, so it
// waits in short attempts, rolls back, reports who blocks, and retries until its budget ends.

let database: TestDatabase;
let migrationsDir: string;
let remove: () => Promise<void>;
let observer: pg.Client;

const readerName = 'kw-test-long-reader';

beforeEach(async () => {
  ({ database, migrationsDir, observer, remove } = await createMigrationSandbox({ observed: true }));
  // As the owner, as the commands migrate (they refuse a superuser): its tables are the owner's.
  await migrate({ databaseUrl: database.ownerUrl, migrationsDir });
});
afterEach(async () => {
  await remove();
});

async function writeMigration(name: string, up: string, down: string): Promise<void> {
  await writeMigrationFiles(migrationsDir, name, up, down);
}

/** A session inside a transaction that has read `users`: it holds ACCESS SHARE until it ends. */
async function longReader(): Promise<{ pid: number; client: pg.Client }> {
  const client = new pg.Client({ connectionString: database.url, application_name: readerName });
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT count(*) FROM users');
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { pid: rows[0]!.pid, client };
}

async function columnExists(table: string, column: string): Promise<boolean> {
  return withClient(database.url, async (client) => {
    const { rows } = await client.query('SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2', [table, column]);
    return rows.length === 1;
  });
}

async function recorded(name: string): Promise<number> {
  return withClient(database.url, async (client) => (await client.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).rowCount ?? 0);
}

async function migratorWaitsForALock(): Promise<boolean> {
  const { rows } = await observer.query(
    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate' AND wait_event_type = 'Lock' AND datname = current_database()",
  );
  return rows.length > 0;
}

const quick: Partial<LockWaitPolicy> = { firstAttemptMs: 100, attemptMs: 300, firstPauseMs: 50, maxPauseMs: 200 };

describe('a transactional migration behind a long reader', () => {
  const name = '20990101000000_add_users_nickname';
  beforeEach(() => writeMigration(name, 'ALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n'));

  it('gives up when its budget is spent, naming the blocking session, with nothing applied and every attempt reported', async () => {
    const reader = await longReader();
    const warnings: string[] = [];
    try {
      const error = await migrate({
        databaseUrl: database.url,
        migrationsDir,
        lockWait: { ...quick, totalMs: 1_500 },
        warn: (line) => warnings.push(line),
      }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(MigrationBlockedError);
      const blocked = error as MigrationBlockedError;
      expect(blocked.file).toBe(`${name}.up.sql`);
      expect(blocked.attempts).toBeGreaterThan(1);
      expect(blocked.statementsApplied).toBe(0);
      expect(blocked.blockers).toEqual([
        { pid: reader.pid, applicationName: readerName, state: 'idle in transaction', xactStart: expect.any(Date), query: 'SELECT pg_backend_pid() AS pid' },
      ]);
      expect(blocked.message).toContain(`pid ${reader.pid} (application '${readerName}', idle in transaction, transaction since`);
      expect(blocked.message).toContain('Nothing of this migration was applied');
      expect(warnings).toHaveLength(blocked.attempts);
      expect(warnings[0]).toMatch(new RegExp(`^${name}\\.up\\.sql: attempt 1 waited 100ms for its locks, `));
      expect(warnings.at(-1)).toContain(`blocked by pid ${reader.pid} (application '${readerName}', idle in transaction, transaction since`);
    } finally {
      await reader.client.end();
    }
    expect(await columnExists('users', 'nickname')).toBe(false);
    expect(await recorded(name)).toBe(0);
  });

  // A prepared transaction is no session (pg_blocking_pids says 0): it was reported as "no
  // blocking session seen (it ended …)", to be waited for again, though it never ends by itself.
  it('names a prepared transaction that holds the table by its gid, and says it never ends by itself', async () => {
    const gid = `kw_prepared_${Date.now()}`;
    await withClient(database.url, (client) => client.query(`BEGIN; SELECT count(*) FROM users; PREPARE TRANSACTION '${gid}'`));
    try {
      const error = await migrate({ databaseUrl: database.url, migrationsDir, lockWait: { ...quick, totalMs: 1_500 }, warn: () => undefined }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(MigrationBlockedError);
      expect((error as MigrationBlockedError).blockers).toEqual([
        { pid: 0, applicationName: '', state: `prepared transaction '${gid}' of role ${new URL(database.url).username}`, xactStart: expect.any(Date), query: '' },
      ]);
      expect((error as Error).message).toContain(
        `blocked by a prepared transaction '${gid}' of role ${new URL(database.url).username} (prepared at `,
      );
      expect((error as Error).message).toContain('which never ends by itself: COMMIT PREPARED or ROLLBACK PREPARED it');
    } finally {
      await withClient(database.url, (client) => client.query(`ROLLBACK PREPARED '${gid}'`));
    }
    expect(await columnExists('users', 'nickname')).toBe(false);
  });

  it('lets the traffic of the table through between its attempts, and applies once the reader is gone, exactly once', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    const user = await newUser(db);
    const reader = await longReader();
    const warnings: string[] = [];
    let readerEnded = false;
    try {
      const migrating = migrate({ databaseUrl: database.url, migrationsDir, lockWait: { ...quick, totalMs: 60_000 }, warn: (line) => warnings.push(line) });
      await eventually(migratorWaitsForALock, 'the migration waits for its lock on users');
      // Queued behind the waiting ALTER, the read goes on when the attempt gives up: without
      // the retries it would wait for the reader (15 s in the scenario).
      await expect(users.findById(db, user.id)).resolves.toMatchObject({ id: user.id });
      // The reader stays until a watched attempt has named it: a monitor that never sees the
      // blocker fails here rather than passing with "no blocking session seen" every time.
      await eventually(() => warnings.some((line) => line.includes(`blocked by pid ${reader.pid} `)), 'an attempt named the reader');
      // The watching connection says whose it is to an operator who looks.
      const watching = await observer.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'kennwilliamson-migrate-monitor' AND datname = current_database()");
      expect(watching.rowCount).toBe(1);
      await reader.client.query('COMMIT');
      readerEnded = true;
      await expect(migrating).resolves.toEqual([{ name, durationMs: expect.any(Number) }]);
    } finally {
      if (!readerEnded) await reader.client.query('ROLLBACK');
      await reader.client.end();
      await db.destroy();
    }
    // The first attempt opens no watching connection; from the second on, the reader is named.
    expect(warnings[0]).toContain('blocking sessions are watched from the next attempt on');
    expect(warnings.length).toBeGreaterThan(1);
    expect(warnings.slice(1).filter((line) => line.includes(`blocked by pid ${reader.pid} (application '${readerName}', idle in transaction`))).not.toEqual([]);
    expect(warnings.slice(1).every((line) => line.includes(`blocked by pid ${reader.pid} `) || line.includes('no blocking session seen'))).toBe(true);
    expect(await columnExists('users', 'nickname')).toBe(true);
    expect(await recorded(name)).toBe(1);
  });
});

// Every connection of a run through a proxy that stalls while the statement waits for its
// locks: the statement's answer never comes, and no TCP timer tells (the proxy's kernel
// acknowledges, and answers keepalive), as with a hung pooler. The monitor that names the
// blockers gets no answer within its deadline either, and closes the statement's connection.
describe('a migration whose path to the server stalls while it waits for its locks', () => {
  const name = '20990101000000_add_users_nickname';
  beforeEach(() => writeMigration(name, 'ALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n'));

  // Whether `error`, or what it was caused by, is a ConnectionError.
  const connectionErrorIn = (error: unknown): ConnectionError | undefined =>
    error instanceof ConnectionError ? error : error instanceof Error && error.cause !== undefined ? connectionErrorIn(error.cause) : undefined;

  it("fails with a retryable ConnectionError at the monitor's deadline, rather than waiting for ever", async () => {
    const proxy = await startStallingProxy(Number(new URL(database.url).port));
    const throughProxy = proxy.through(database.url);
    const reader = await longReader();
    const warnings: string[] = [];
    try {
      // Attempts of 100 ms, doubling: by the fifth (1.6 s) the statement, watched, waits for
      // its lock nearly all the time, and the stall cuts it off there.
      const lockWait = { firstAttemptMs: 100, attemptMs: 60_000, firstPauseMs: 20, maxPauseMs: 20, totalMs: 120_000 };
      const migrating = migrate({ databaseUrl: throughProxy, migrationsDir, lockWait, warn: (line) => warnings.push(line) });
      migrating.catch(() => undefined);
      await eventually(() => warnings.length >= 4, 'four attempts ran out of lock time');
      await eventually(migratorWaitsForALock, 'the fifth attempt waits for its lock on users');
      proxy.stall();

      const cause = connectionErrorIn(await migrating.catch((e: unknown) => e));
      expect(cause?.reason).toBe('deadline');
      expect(cause?.message).toContain('no answer to a look at who blocks the statement within 10000 ms');
      expect(isRetryable(cause)).toBe(true);
    } finally {
      await proxy.close();
      await reader.client.query('ROLLBACK');
      await reader.client.end();
    }
    expect(await columnExists('users', 'nickname')).toBe(false);
    expect(await recorded(name)).toBe(0);
  });
});

describe('a migration behind an admin holding a row', () => {
  // The session that blocks a migration is often an admin's hand-written UPDATE: its query
  // text holds a password hash and an email, which must reach neither the error nor stderr.
  it('names the blocker by the shape of its query, never its data', async () => {
    const name = '20990101000000_add_users_nickname';
    await writeMigration(name, 'ALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n');
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    const user = await newUser(db);
    await db.destroy();
    const secretHash = '$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$do-not-log-this-hash';
    const admin = new pg.Client({ connectionString: database.url, application_name: 'psql' });
    await admin.connect();
    const warnings: string[] = [];
    try {
      await admin.query('BEGIN');
      // Literals written in the text, as a person types them: no parameters to keep them out.
      await admin.query(`UPDATE users SET password_hash = '${secretHash}' WHERE email = '${user.email}'`);
      const error = await migrate({ databaseUrl: database.url, migrationsDir, lockWait: { ...quick, totalMs: 3_000 }, warn: (line) => warnings.push(line) }).catch(
        (e: unknown) => e,
      );

      expect(error).toBeInstanceOf(MigrationBlockedError);
      const blocked = error as MigrationBlockedError;
      expect(blocked.blockers).toEqual([expect.objectContaining({ applicationName: 'psql', query: 'UPDATE users SET password_hash = $1 WHERE email = $2' })]);
      expect(blocked.message).toContain("query 'UPDATE users SET password_hash = $1 WHERE email = $2'");
      expect(warnings.some((line) => line.includes("query 'UPDATE users SET password_hash = $1 WHERE email = $2'"))).toBe(true);
      for (const text of [blocked.message, ...warnings]) {
        expect(text).not.toContain('do-not-log-this-hash');
        expect(text).not.toContain(user.email);
      }
    } finally {
      await admin.end();
    }
  });
});

describe('a no-transaction migration behind a long reader', () => {
  it('reruns only the statement that ran out of lock time, then records the migration', async () => {
    const name = '20990101000000_no_transaction_alter';
    await writeMigration(
      name,
      '-- migrate:no-transaction\nCREATE TABLE before_the_alter (id int);\nALTER TABLE users ADD COLUMN nickname text;\n',
      '-- migrate:no-transaction\nALTER TABLE users DROP COLUMN nickname;\nDROP TABLE before_the_alter;\n',
    );
    const reader = await longReader();
    const warnings: string[] = [];
    let readerEnded = false;
    try {
      const migrating = migrate({ databaseUrl: database.url, migrationsDir, lockWait: { ...quick, totalMs: 60_000 }, warn: (line) => warnings.push(line) });
      await eventually(() => warnings.length > 0, 'an attempt of the ALTER was reported');
      expect(warnings[0]).toMatch(new RegExp(`^${name}\\.up\\.sql line 3: attempt 1 `));
      await reader.client.query('COMMIT');
      readerEnded = true;
      await expect(migrating).resolves.toHaveLength(1);
    } finally {
      if (!readerEnded) await reader.client.query('ROLLBACK');
      await reader.client.end();
    }
    expect(await columnExists('users', 'nickname')).toBe(true);
    expect(await recorded(name)).toBe(1);
  });
});

describe('VACUUM FULL behind a long reader', () => {
  // It rewrites the table under ACCESS EXCLUSIVE, as ALTER TABLE does: one attempt of the whole
  // budget would queue every query of the table behind it until the reader ends.
  it('waits in short attempts, letting the traffic of the table through between them', async () => {
    const name = '20990101000000_vacuum_full';
    await writeMigration(name, '-- migrate:no-transaction\nVACUUM FULL users;\n', '-- migrate:no-transaction\nVACUUM users;\n');
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    const user = await newUser(db);
    const reader = await longReader();
    const warnings: string[] = [];
    let readerEnded = false;
    try {
      const migrating = migrate({ databaseUrl: database.url, migrationsDir, lockWait: { ...quick, totalMs: 60_000 }, warn: (line) => warnings.push(line) });
      await eventually(migratorWaitsForALock, 'VACUUM FULL waits for its lock on users');
      await expect(users.findById(db, user.id)).resolves.toMatchObject({ id: user.id });
      await eventually(() => warnings.length > 0, 'an attempt of VACUUM FULL was reported');
      expect(warnings[0]).toMatch(new RegExp(`^${name}\\.up\\.sql line 2: attempt 1 waited 100ms for its locks`));
      await reader.client.query('COMMIT');
      readerEnded = true;
      await expect(migrating).resolves.toHaveLength(1);
    } finally {
      if (!readerEnded) await reader.client.query('ROLLBACK');
      await reader.client.end();
      await db.destroy();
    }
    expect(await recorded(name)).toBe(1);
  });
});

describe("a migration whose attempts may outwait the services' lock_timeout", () => {
  it('is said before anything is applied, and by a dry run, naming the role and its bound; one whose attempts are shorter is not', async () => {
    const role = `kw_test_services_${Math.random().toString(36).slice(2, 8)}`;
    // As setup --admin leaves the application role: its sessions here start with DB_LOCK_TIMEOUT.
    await observer.query(`CREATE ROLE ${role}; ALTER ROLE ${role} IN DATABASE ${observer.escapeIdentifier(database.name)} SET lock_timeout = '2s'`);
    try {
      await writeMigration('20990101000000_long_attempts', '-- migrate:lock-wait attempt=5s\nALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n');
      await writeMigration('20990101000001_short_attempts', 'ALTER TABLE users ADD COLUMN motto text;\n', 'ALTER TABLE users DROP COLUMN motto;\n');
      const said: string[] = [];

      await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, warn: (line) => said.push(line) });
      await migrate({ databaseUrl: database.url, migrationsDir, warn: (line) => said.push(line) });

      const warning =
        "20990101000000_long_attempts.up.sql: each attempt may wait up to 5s for its locks (its -- migrate:lock-wait header), longer than the lock_timeout " +
        `of role '${role}' in this database (2s): while one waits, that role's queries of the tables it locks fail. Keep attempt below it, ` +
        'or apply it with the services stopped or expecting it';
      expect(said).toEqual([warning, warning]);
      expect(await recorded('20990101000000_long_attempts')).toBe(1);
    } finally {
      await observer.query(`ALTER ROLE ${role} IN DATABASE ${observer.escapeIdentifier(database.name)} RESET ALL; DROP ROLE ${role}`);
    }
  });
});

describe('npm run migrate behind a long reader', () => {
  it("uses the file's own lock-wait header, reports each attempt on stderr and fails naming the blocker", async () => {
    const name = '20990101000000_header_budget';
    await writeMigration(name, '-- migrate:lock-wait attempt=200ms total=1s\nALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n');
    const reader = await longReader();
    try {
      const result = await runCli('migrate', ['--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: database.ownerUrl });
      expect(result.code).toBe(1);
      const attempts = result.stderr.split('\n').filter((line) => line.startsWith(`${name}.up.sql: attempt `));
      expect(attempts.length).toBeGreaterThan(1);
      expect(attempts.at(-1)).toContain('the lock budget (attempt=200ms total=1s) is spent');
      expect(result.stderr).toContain(`gave up waiting for its locks after ${attempts.length} attempt(s)`);
      expect(result.stderr).toContain(`pid ${reader.pid} (application '${readerName}'`);
    } finally {
      await reader.client.end();
    }
    expect(await recorded(name)).toBe(0);
  });
});
