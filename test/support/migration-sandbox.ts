import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { onTestFinished } from 'vitest';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { createObservedDatabase } from './observed-database.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/** An empty database and a private copy of the migrations folder, for tests that change either. */
export interface MigrationSandbox {
  database: TestDatabase;
  migrationsDir: string;
  /** Closes the observer, if any, drops the database and removes the folder. */
  remove(): Promise<void>;
}

/** A {@link MigrationSandbox} whose database is observed (see createObservedDatabase). */
export interface ObservedMigrationSandbox extends MigrationSandbox {
  observer: pg.Client;
}

/**
 * Makes a {@link MigrationSandbox}: a migration test may add, edit or delete files in its
 * folder and migrate its database without touching another test's. With `observed`, it also
 * opens the {@link ObservedMigrationSandbox.observer}, for polls of the migrator's sessions.
 *
 * @example
 * beforeEach(async () => ({ database, migrationsDir, remove } = await createMigrationSandbox()));
 */
export async function createMigrationSandbox(): Promise<MigrationSandbox>;
export async function createMigrationSandbox(options: { observed: true }): Promise<ObservedMigrationSandbox>;
export async function createMigrationSandbox(options: { observed?: boolean } = {}): Promise<MigrationSandbox | ObservedMigrationSandbox> {
  const observed = options.observed ? await createObservedDatabase({ empty: true }) : undefined;
  const database = observed?.database ?? (await createTestDatabase({ empty: true }));
  const migrationsDir = await copyOfMigrations();
  const remove = async () => {
    try {
      await (observed ? observed.remove() : database.drop());
    } finally {
      await rm(migrationsDir, { recursive: true, force: true });
    }
  };
  return observed ? { database, migrationsDir, observer: observed.observer, remove } : { database, migrationsDir, remove };
}

/**
 * Writes the migration `name` into `migrationsDir`: its up and down files.
 *
 * @example await writeMigration(migrationsDir, '20990101000000_add_nickname', 'ALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n')
 */
export async function writeMigration(migrationsDir: string, name: string, up: string, down: string): Promise<void> {
  await writeFile(path.join(migrationsDir, `${name}.up.sql`), up);
  await writeFile(path.join(migrationsDir, `${name}.down.sql`), down);
}

/**
 * A copy of the package's migrations with one more, a service's own, that defines `functions`:
 * what a restore given the folder as `migrationsDir` accepts of a backup's functions, for a
 * test whose backup's code must run. Removed when the test ends, or made inside `within`, a
 * folder the caller removes (for a copy that tests share, or a concurrent test's).
 *
 * @example await restoreDatabase({ databaseUrl, backup, migrationsDir: await migrationsDefining(slowCheck) })
 */
export async function migrationsDefining(functions: string, within?: string): Promise<string> {
  const migrationsDir = await copyOfMigrations(within);
  if (within === undefined) onTestFinished(() => rm(migrationsDir, { recursive: true, force: true }));
  await writeMigration(migrationsDir, '29990101000000_service_functions', functions, '');
  return migrationsDir;
}

/**
 * A copy of the package's migrations folder, in a new folder inside `within` (default: the
 * system's temporary folder), for the caller to change and remove.
 *
 * @example const migrationsDir = await copyOfMigrations()
 */
export async function copyOfMigrations(within = os.tmpdir()): Promise<string> {
  const migrationsDir = await mkdtemp(path.join(within, 'kw-migrations-'));
  await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
  return migrationsDir;
}
