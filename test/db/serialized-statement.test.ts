import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { serializedStatement } from '../../src/db/serialized-statement.js';
import { mapDatabaseError, SerializationError } from '../../src/errors.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

// Under a REPEATABLE READ or SERIALIZABLE default, a rotation that met a row another
// transaction changed runs again; on a row that others keep changing, each run waited up to
// lock_timeout first, and twenty runs took 40-60 s. A statement that fails for serialization
// after a second, every time, as such a run would.
describe('serializedStatement', () => {
  it('begins no run 5 s after the first, and gives the caller the SerializationError', async () => {
    let runs = 0;
    const failsAfterASecond = () => {
      runs += 1;
      return sql`DO $$ BEGIN PERFORM pg_catalog.pg_sleep(1); RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$`.execute(testDb.db);
    };

    const error = await serializedStatement(testDb.db, failsAfterASecond).catch((e: unknown) => e);

    expect(mapDatabaseError(error)).toBeInstanceOf(SerializationError);
    expect(runs).toBeGreaterThanOrEqual(2);
    expect(runs).toBeLessThanOrEqual(6);
  }, 30_000);

  it('runs once more when a run fails for serialization, and returns what the next one gives', async () => {
    let runs = 0;
    const failsOnce = () => {
      runs += 1;
      return runs === 1
        ? sql`DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$`.execute(testDb.db)
        : sql<{ one: number }>`SELECT 1 AS one`.execute(testDb.db);
    };

    const result = await serializedStatement(testDb.db, failsOnce);

    expect(result.rows).toEqual([{ one: 1 }]);
    expect(runs).toBe(2);
  });
});
