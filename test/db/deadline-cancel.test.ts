import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { ConnectionError } from '../../src/errors.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

// A call past its deadline has its statement cancelled before its connection closes (see
// test/db/pooler-bounds.test.ts, where that matters). Meanwhile the server's answer to the
// cancel comes back on that connection: the call must still end as the deadline it was, and the
// connection must go to no other caller, whose statement the pending close would cut off
// (reported as a retryable deadline after it had committed: a retry writes twice).
describe('a call given up at its deadline', () => {
  it('ends as that deadline, and the caller queued for its connection gets a fresh one', async () => {
    await sql`CREATE TABLE IF NOT EXISTS deadline_writes (id serial PRIMARY KEY, attempt int)`.execute(testDb.db);
    // Room for the second call on a loaded machine; the deadline still far short of the sleep.
    const db = createDb({ databaseUrl: testDb.url, maxConnections: 1, minConnections: 0, statementTimeoutMs: 500, lockTimeoutMs: 50, callDeadlineMs: 800 });
    try {
      // Whether the cancel's answer or its connection's close comes first is the machine's to
      // decide: a few rounds see both.
      for (let attempt = 1; attempt <= 5; attempt++) {
        // The one connection's bound lifted, beyond what the pool learned at its login.
        await sql`SET statement_timeout = 0`.execute(db);
        const first = sql`SELECT pg_sleep(30)`.execute(db).catch((e: unknown) => e);
        // Queued behind it for the one connection.
        const second = sql`INSERT INTO deadline_writes (attempt) SELECT ${attempt} FROM pg_sleep(0.01)`.execute(db).catch((e: unknown) => e);

        expect(await first).toBeInstanceOf(ConnectionError);
        expect(await first).toMatchObject({ reason: 'deadline' });
        expect(await second).toMatchObject({ numAffectedRows: 1n });
      }
      const { rows } = await sql<{ attempt: number }>`SELECT attempt FROM deadline_writes ORDER BY id`.execute(testDb.db);
      expect(rows.map((row) => row.attempt)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await db.destroy();
    }
  });
});
