import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { DatabaseError, DbError, LockNotAvailableError, MigrationLockLostError, MigrationLockTimeoutError, MigrationRecordLockedError } from '../../src/errors.js';
import { migrationLockApplicationName, migrationLockKey } from '../../src/migrations/migration-lock.js';
import { migrate, migrationStatus } from '../../src/migrations/migrator.js';
import { holdAdvisoryLock } from '../support/advisory-lock-holder.js';
import { eventually } from '../support/eventually.js';
import { holdTableLock } from '../support/table-lock-holder.js';
import { writeMigration as writeMigrationFiles, createMigrationSandbox } from '../support/migration-sandbox.js';
import type { TestDatabase } from '../support/test-database.js';

// Every error out of migrate() is a DbError, and its message says what really happened: above
// all when the session holding the migration lock ends mid-run (another run may start), which
// must never let a migration commit, nor record a no-transaction one.

let database: TestDatabase;
let migrationsDir: string;
let remove: () => Promise<void>;

beforeEach(async () => {
  ({ database, migrationsDir, remove } = await createMigrationSandbox());
  await migrate({ databaseUrl: database.url, migrationsDir });
});
afterEach(async () => {
  await remove();
});

async function writeMigration(name: string, up: string): Promise<void> {
  await writeMigrationFiles(migrationsDir, name, up, '');
}

async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withClient(database.url, async (client) => (await client.query<T>(sql, params)).rows);
}

const tableExists = async (table: string) => (await query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [table]))[0]!.found;
const recorded = async (name: string) => (await query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).length;

// The test's gate: a migration statement waits on it (pg_advisory_xact_lock) until the test
// has ended the lock holder's session, so the loss happens mid-migration, after its first
// statements ran and before the run commits or records anything.
const gateKey = 4_216_001;

async function endLockHolderWhileGated(): Promise<void> {
  await eventually(
    async () =>
      (
        await query(
          `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = $1 AND a.application_name = 'kennwilliamson-migrate'`,
          [gateKey],
        )
      ).length === 1,
    'the migration waits at the gate',
  );
  const ended = await query<{ ok: boolean }>(
    'SELECT pg_terminate_backend(pid, 10000) AS ok FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
    [migrationLockApplicationName],
  );
  expect(ended).toEqual([{ ok: true }]);
}

// Attempts long enough that the gate's wait never runs out of lock time.
const patient = { firstAttemptMs: 30_000, attemptMs: 30_000, totalMs: 60_000 };

describe('losing the migration lock mid-run', () => {
  it('in a transactional migration: nothing commits, and MigrationLockLostError says it was rolled back', async () => {
    const name = '20990101000000_gated';
    await writeMigration(name, `CREATE TABLE made_before_the_loss (id int);\nSELECT pg_advisory_xact_lock(${gateKey});\n`);
    const gate = await holdAdvisoryLock(database.url, gateKey);
    const run = migrate({ databaseUrl: database.url, migrationsDir, lockWait: patient }).catch((e: unknown) => e);
    try {
      await endLockHolderWhileGated();
    } finally {
      await gate.release();
    }
    const error = await run;

    // Without the lock check before COMMIT, the migration would have committed without its lock.
    expect(error).toBeInstanceOf(MigrationLockLostError);
    expect((error as Error).message).toBe(
      'The connection holding the migration lock was lost; the current migration was rolled back. Run the migrations again.',
    );
    expect(await tableExists('made_before_the_loss')).toBe(false);
    expect(await recorded(name)).toBe(0);
  });

  it('in a no-transaction migration: what ran stays, the rest does not run, nothing is recorded, and the message says so', async () => {
    const name = '20990101000000_gated_no_transaction';
    await writeMigration(
      name,
      [
        '-- migrate:no-transaction',
        'CREATE TABLE made_before_the_loss (id int);',
        `SELECT pg_advisory_xact_lock(${gateKey});`,
        'CREATE TABLE made_after_the_loss (id int);',
      ].join('\n'),
    );
    const gate = await holdAdvisoryLock(database.url, gateKey);
    const run = migrate({ databaseUrl: database.url, migrationsDir, lockWait: patient }).catch((e: unknown) => e);
    try {
      await endLockHolderWhileGated();
    } finally {
      await gate.release();
    }
    const error = await run;

    expect(error).toBeInstanceOf(MigrationLockLostError);
    expect((error as Error).message).toBe(
      `The connection holding the migration lock was lost; ${name}.up.sql runs without a transaction: 2 of its 3 statement(s) ` +
        'took effect and stay, the rest did not run, and it is not recorded. Run the migrations again.',
    );
    expect(await tableExists('made_before_the_loss')).toBe(true);
    expect(await tableExists('made_after_the_loss')).toBe(false);
    expect(await recorded(name)).toBe(0);
  });
});

describe('errors out of migrate()', () => {
  it('a statement_timeout of the role that cancels the wait for another run is a MigrationLockTimeoutError saying so', async () => {
    await writeMigration('20990101000000_waits', 'CREATE TABLE waits (id int);\n');
    // Scoped to this test's database: the role's own default there, as a DBA may set it.
    await query(`ALTER ROLE CURRENT_USER IN DATABASE ${database.name} SET statement_timeout = 300`);
    const holder = await holdAdvisoryLock(database.url, migrationLockKey, 'the-other-run');
    try {
      const error = await migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 60_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MigrationLockTimeoutError);
      expect(error).toMatchObject({ limit: 'statement_timeout', holder: { pid: holder.pid, applicationName: 'the-other-run' } });
      expect((error as Error).message).toContain('statement_timeout of the migrating role or database');
    } finally {
      await holder.release();
      await query(`ALTER ROLE CURRENT_USER IN DATABASE ${database.name} RESET statement_timeout`);
    }
  });

  it('a failure to record a migration is a DbError with the server’s own message, and the migration is rolled back', async () => {
    const name = '20990101000000_unrecordable';
    await writeMigration(name, 'CREATE TABLE never_recorded (id int);\n');
    await query(`
      CREATE FUNCTION refuse_records() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'schema_migrations is read-only today'; END $$;
      CREATE TRIGGER refuse_records BEFORE INSERT ON schema_migrations FOR EACH ROW EXECUTE FUNCTION refuse_records();`);

    const error = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ sqlState: 'P0001' });
    expect((error as Error).message).toContain('schema_migrations is read-only today');
    expect(await tableExists('never_recorded')).toBe(false);
  });

  it('a schema_migrations the migrator cannot read is a DbError, not pg’s own error', async () => {
    await query('ALTER TABLE schema_migrations RENAME COLUMN checksum TO sha');
    const error = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbError);
    expect(error).toMatchObject({ sqlState: '42703' });
  });
});

// A restore holds every table of public, the migrations record too, for its whole run.
describe('migrationStatus behind a session that holds the migrations record', () => {
  // PostgreSQL's bare "lock not available", minutes into a `migrate status`, said neither what
  // waited nor for whom.
  it('waits at most the lock timeout, then says the record was locked, naming who held it, and reads it once free', async () => {
    const holder = await holdTableLock(database.url, 'schema_migrations');
    let released = false;
    try {
      const warnings: string[] = [];
      const error = await migrationStatus({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 1_500, warn: (line) => warnings.push(line) }).catch((e: unknown) => e);
      // Said while it waits, once.
      expect(warnings).toEqual([
        expect.stringMatching(
          new RegExp(`^the read of the applied migrations waits for the migrations record's table, blocked by pid ${holder.pid} \\(.*\\); it waits up to 1500 ms \\(MIGRATION_LOCK_TIMEOUT\\)$`),
        ),
      ]);
      expect(error).toBeInstanceOf(MigrationRecordLockedError);
      expect(error).toBeInstanceOf(LockNotAvailableError);
      expect(error).toMatchObject({ code: 'LOCK_NOT_AVAILABLE', statement: 'the read of the applied migrations', blockers: [expect.objectContaining({ pid: holder.pid })] });
      expect((error as Error).message).toMatch(
        new RegExp(
          "^Timed out after \\d+ ms waiting for the migrations record's table \\(the read of the applied migrations\\), " +
            `blocked by pid ${holder.pid} \\(application '', idle in transaction, transaction since [^,]+, query 'LOCK TABLE "schema_migrations" IN ACCESS EXCLUSIVE MODE'\\): ` +
            'a restore holds it for its whole run',
        ),
      );
      await holder.release();
      released = true;
      expect((await migrationStatus({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 200 })).every((state) => state.state === 'applied')).toBe(true);
    } finally {
      if (!released) await holder.release();
    }
  });
});
