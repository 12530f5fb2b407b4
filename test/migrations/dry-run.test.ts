import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationChecksumError, MigrationLockTimeoutError } from '../../src/errors.js';
import { checksumOf, listMigrationFiles } from '../../src/migrations/migration-files.js';
import { migrationLockKey } from '../../src/migrations/migration-lock.js';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { migrate, migrateDown } from '../../src/migrations/migrator.js';
import { withClient } from '../../src/db/with-client.js';
import { runCli } from '../support/run-cli.js';
import { holdAdvisoryLock } from '../support/advisory-lock-holder.js';
import { createMigrationSandbox } from '../support/migration-sandbox.js';
import type { TestDatabase } from '../support/test-database.js';

// The shipped migrations, oldest first, whatever their number.
const names = (await listMigrationFiles(defaultMigrationsDir())).map((file) => file.name);
const last = names.at(-1)!;
const indexMigration = '20990101000000_index_users_by_created_at';
// Those that run statement by statement, by their header.
const noTransaction = new Set([
  indexMigration,
  ...(
    await Promise.all(
      names.map(async (name) => ((await readFile(path.join(defaultMigrationsDir(), `${name}.up.sql`), 'utf8')).startsWith('-- migrate:no-transaction\n') ? [name] : [])),
    )
  ).flat(),
]);

let database: TestDatabase;
let migrationsDir: string;
let remove: () => Promise<void>;

beforeEach(async () => {
  ({ database, migrationsDir, remove } = await createMigrationSandbox());
  await writeFile(
    path.join(migrationsDir, `${indexMigration}.up.sql`),
    '-- migrate:no-transaction\n-- migrate:lock-wait total=1h\nCREATE INDEX CONCURRENTLY users_created_at ON users (created_at);\n',
  );
  await writeFile(path.join(migrationsDir, `${indexMigration}.down.sql`), '-- migrate:no-transaction\nDROP INDEX CONCURRENTLY users_created_at;\n');
});

afterEach(async () => {
  await remove();
});

const relations = () =>
  withClient(database.url, async (client) =>
    (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace")).rows[0]!.n,
  );

const checksumOfFile = async (name: string) => checksumOf(await readFile(path.join(migrationsDir, `${name}.up.sql`)));

describe('migrate({ dryRun: true })', () => {
  it('lists in order what would run, with checksum, transactional or not and lock budget, and changes nothing, not even schema_migrations', async () => {
    const plan = await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true });

    expect(plan).toEqual(
      await Promise.all(
        [...names, indexMigration].map(async (name) => ({
          name,
          file: `${name}.up.sql`,
          checksum: await checksumOfFile(name),
          transactional: !noTransaction.has(name),
          // The run's budget, or the file's own header.
          lockWait:
            name === indexMigration
              ? { attemptMs: 1_000, totalMs: 3_600_000, fromHeader: true }
              : { attemptMs: 1_000, totalMs: 600_000, fromHeader: false },
        })),
      ),
    );
    expect(await relations()).toBe(0);
  });

  it('lists only what is pending, up to `to`', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir, to: names[0]! });

    const plan = await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, to: names[1] });

    expect(plan.map((step) => step.name)).toEqual([names[1]]);
    expect(await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true })).toHaveLength(names.length);
  });

  // A service's own release script decides at run time (`process.argv.includes('--dry-run')`).
  it('takes dryRun as a boolean read at run time, planning or applying as it says', async () => {
    const fromArgv = (argv: string[]): boolean => argv.includes('--dry-run');
    const planned = await migrate({ databaseUrl: database.url, migrationsDir, dryRun: fromArgv(['--dry-run']) });
    expect(planned.map((entry) => entry.name)).toEqual([...names, indexMigration]);
    expect(await relations()).toBe(0);
    const applied = await migrate({ databaseUrl: database.url, migrationsDir, dryRun: fromArgv([]) });
    expect(applied.map((entry) => entry.name)).toEqual([...names, indexMigration]);
    expect(await relations()).toBeGreaterThan(0);
  });

  it('refuses a changed applied file as the real run would', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    await migrateDown({ databaseUrl: database.url, migrationsDir });
    await appendFile(path.join(migrationsDir, `${names[0]}.up.sql`), '\n-- edited after it was applied\n');

    await expect(migrate({ databaseUrl: database.url, migrationsDir, dryRun: true })).rejects.toBeInstanceOf(MigrationChecksumError);
  });

  it('refuses a pending file the real run would refuse, naming it', async () => {
    await writeFile(path.join(migrationsDir, '20990101000001_commits.up.sql'), 'CREATE TABLE a (id int);\nCOMMIT;\n');
    await writeFile(path.join(migrationsDir, '20990101000001_commits.down.sql'), 'DROP TABLE a;\n');

    await expect(migrate({ databaseUrl: database.url, migrationsDir, dryRun: true })).rejects.toMatchObject({
      name: 'MigrationScriptError',
      file: '20990101000001_commits.up.sql',
      line: 2,
    });
  });

  it('waits for the migration lock, so it reads a settled state', async () => {
    const holder = await holdAdvisoryLock(database.url, migrationLockKey);
    try {
      await expect(migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, lockTimeoutMs: 200 })).rejects.toBeInstanceOf(
        MigrationLockTimeoutError,
      );
    } finally {
      await holder.release();
    }
  });
});

describe('migrate up --dry-run', () => {
  it('prints each file with its checksum, mode and lock budget, exits 0, and leaves the database as it was', async () => {
    // As the owner, as the commands migrate (they refuse a superuser).
    await migrate({ databaseUrl: database.ownerUrl, migrationsDir, to: names.at(-2)! });
    const env = { MIGRATION_DATABASE_URL: database.ownerUrl };

    const result = await runCli('migrate', ['up', '--dry-run', '--migrations-dir', migrationsDir], env);

    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stdout.split('\n').filter((line) => line.startsWith('would apply'))).toEqual([
      `would apply ${last}.up.sql  sha256 ${await checksumOfFile(last)}  ${noTransaction.has(last) ? 'no-transaction' : 'transactional'}  lock-wait attempt=1s total=10min`,
      `would apply ${indexMigration}.up.sql  sha256 ${await checksumOfFile(indexMigration)}  no-transaction  lock-wait attempt=1s total=1h (its header)`,
    ]);
    const recorded = await withClient(database.url, async (client) => (await client.query('SELECT name FROM schema_migrations')).rowCount);
    expect(recorded).toBe(names.length - 1);
  });

  it('exits 1 when an applied file was changed', async () => {
    await migrate({ databaseUrl: database.ownerUrl, migrationsDir, to: names[0]! });
    await appendFile(path.join(migrationsDir, `${names[0]}.up.sql`), '\n-- changed\n');

    const result = await runCli('migrate', ['up', '--dry-run', '--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: database.ownerUrl });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Checksum mismatch');
  });
});
