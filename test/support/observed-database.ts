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
 * Makes an {@link ObservedDatabase}, for tests that wait on what other sessions are doing
 * rather than sleeping: one connection for all of a test's polls, where a login per poll cost
 * the server a backend every 10 ms. `empty`: a database of no migration, as
 * {@link createTestDatabase} makes it.
 *
 * @example
 * beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
 */
export async function createObservedDatabase(options: { empty?: boolean } = {}): Promise<ObservedDatabase> {
  const database = await createTestDatabase(options);
  const observer = new pg.Client({ connectionString: database.url, application_name: 'kw-test-observer' });
  await observer.connect();
  return {
    database,
    observer,
    remove: async () => {
      try {
        await observer.end();
      } finally {
        await database.drop();
      }
    },
  };
}
