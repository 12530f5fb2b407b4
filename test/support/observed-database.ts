import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './test-database.js';

/** A test database with a connection of its own that watches the others (pg_stat_activity, pg_locks). */
export interface ObservedDatabase {
  database: TestDatabase;
  observer: pg.Client;
  /** Closes the observer and drops the database. */
  remove(): Promise<void>;
}

/**
 * Makes an {@link ObservedDatabase}, for pool and connection tests that wait on what other
 * sessions are doing rather than sleeping.
 *
 * @example
 * beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
 */
export async function createObservedDatabase(): Promise<ObservedDatabase> {
  const database = await createTestDatabase();
  const observer = new pg.Client({ connectionString: database.url });
  await observer.connect();
  return {
    database,
    observer,
    remove: async () => {
      await observer.end();
      await database.drop();
    },
  };
}
