import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
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
  const migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
  await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
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
