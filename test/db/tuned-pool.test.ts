import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDb, poolOf } from '../../src/db/create-db.js';
import { eventually } from '../support/eventually.js';
import { createObservedDatabase } from '../support/observed-database.js';
import type { TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
let observer: pg.Client;
let remove: () => Promise<void>;

beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
afterAll(() => remove());

async function lockWaiters(applicationName: string): Promise<number[]> {
  const { rows } = await observer.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' ORDER BY pid",
    [applicationName],
  );
  return rows.map((row) => row.pid);
}

it('refills a min = max pool under load by opening only the missing connection, not by queueing behind busy ones', async () => {
  const applicationName = `refill-${randomBytes(4).toString('hex')}`;
  const poolErrors: string[] = [];
  const db = createDb(
    { databaseUrl: database.url, minConnections: 3, maxConnections: 3, acquireTimeoutMs: 1_000, applicationName },
    { onPoolError: (message) => poolErrors.push(message) },
  );
  const tuned = poolOf(db);
  const lock = 4_242_001;
  try {
    await tuned.ready();
    // The load: three callers hold every connection of the pool, each waiting on a lock the test holds.
    await observer.query('SELECT pg_advisory_lock($1)', [lock]);
    const callers = Array.from({ length: 3 }, () =>
      sql`SELECT pg_advisory_lock_shared(${lock})`.execute(db).then(
        () => 'done',
        (error: unknown) => error,
      ),
    );
    await eventually(async () => (await lockWaiters(applicationName)).length === 3, 'three callers wait on the lock');

    // One busy connection is lost; the pool must open exactly one, while two stay busy.
    const [victim] = await lockWaiters(applicationName);
    const removed = once(tuned.pool, 'remove');
    await observer.query('SELECT pg_terminate_backend($1)', [victim]);
    expect(await Promise.race(callers)).toBeInstanceOf(Error);
    await removed;

    // The old refill checked out `min` connections: one opened, the other two queued behind
    // the busy ones until the acquire timeout, and ready() failed with a PoolTimeoutError.
    await expect(tuned.ready()).resolves.toBeUndefined();
    expect(tuned.pool.totalCount).toBe(3);
    expect(tuned.pool.waitingCount).toBe(0);
    const { rows } = await observer.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    );
    expect(rows[0]!.n).toBe(3);

    await observer.query('SELECT pg_advisory_unlock($1)', [lock]);
    const outcomes = await Promise.all(callers);
    expect(outcomes.filter((outcome) => outcome === 'done')).toHaveLength(2);
    expect(poolErrors.filter((message) => message.includes('refill'))).toEqual([]);
  } finally {
    await observer.query('SELECT pg_advisory_unlock_all()');
    await db.destroy();
  }
});
