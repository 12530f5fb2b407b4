import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/** An empty database and a private copy of the migrations folder, for tests that change either. */
export interface MigrationSandbox {
  database: TestDatabase;
  migrationsDir: string;
  /** Drops the database and removes the folder. */
  remove(): Promise<void>;
}

/**
 * Makes a {@link MigrationSandbox}: a migration test may add, edit or delete files in its
 * folder and migrate its database without touching another test's.
 *
 * @example
 * beforeEach(async () => ({ database, migrationsDir, remove } = await createMigrationSandbox()));
 */
export async function createMigrationSandbox(): Promise<MigrationSandbox> {
  const database = await createTestDatabase({ empty: true });
  const migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-migrations-'));
  await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
  return {
    database,
    migrationsDir,
    remove: async () => {
      await database.drop();
      await rm(migrationsDir, { recursive: true, force: true });
    },
  };
}
