import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/** An empty database and a private copy of the migrations folder, for tests that change either. */
export interface MigrationSandbox {
  database: TestDatabase;
  migrationsDir: string;
  /** Closes the observer, if any, drops the database and removes the folder. */
  remove(): Promise<void>;
}

/**
 * A {@link MigrationSandbox} with a connection of its own to the database, for polls of what
 * the migrator's sessions are doing: one connection for all of a test's polls, where a login
 * per poll cost the server a backend every 10 ms while the watched command started.
 */
export interface ObservedMigrationSandbox extends MigrationSandbox {
  observer: pg.Client;
}

/**
 * Makes a {@link MigrationSandbox}: a migration test may add, edit or delete files in its
 * folder and migrate its database without touching another test's. With `observed`, it also
 * opens the {@link ObservedMigrationSandbox.observer}.
 *
 * @example
 * beforeEach(async () => ({ database, migrationsDir, remove } = await createMigrationSandbox()));
 */
export async function createMigrationSandbox(): Promise<MigrationSandbox>;
export async function createMigrationSandbox(options: { observed: true }): Promise<ObservedMigrationSandbox>;
export async function createMigrationSandbox(options: { observed?: boolean } = {}): Promise<MigrationSandbox | ObservedMigrationSandbox> {
  const database = await createTestDatabase({ empty: true });
  const migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
  await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
  const observer = options.observed ? new pg.Client({ connectionString: database.url, application_name: 'kw-test-observer' }) : undefined;
  await observer?.connect();
  const remove = async () => {
    try {
      await observer?.end();
    } finally {
      await database.drop();
      await rm(migrationsDir, { recursive: true, force: true });
    }
  };
  return observer ? { database, migrationsDir, observer, remove } : { database, migrationsDir, remove };
}
