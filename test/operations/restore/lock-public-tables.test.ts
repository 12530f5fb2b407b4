import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lockPublicTables } from '../../../src/operations/restore/lock-public-tables.js';
import { eventually } from '../../support/eventually.js';
import { holdTableLock, type TableLockHolder } from '../../support/table-lock-holder.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// What a restore takes first, in its transaction, before it empties public.
describe('lockPublicTables', () => {
  let database: TestDatabase;
  let restoring: pg.Client;
  const holders: TableLockHolder[] = [];
  beforeEach(async () => {
    database = await createTestDatabase({ empty: true });
    restoring = new pg.Client({ connectionString: database.url });
    await restoring.connect();
  });
  afterEach(async () => {
    await Promise.all(holders.splice(0).map((holder) => holder.release()));
    await restoring.end();
    await database.drop();
  });

  it('takes the tables and partitioned tables, and leaves a foreign table, which PostgreSQL locks not, to its drop', async () => {
    await restoring.query(`
      CREATE TABLE public.plain (id int);
      CREATE TABLE public.split (id int) PARTITION BY RANGE (id);
      CREATE TABLE public.split_low PARTITION OF public.split FOR VALUES FROM (0) TO (10);
      CREATE FOREIGN DATA WRAPPER kw_test_fdw; CREATE SERVER kw_test_server FOREIGN DATA WRAPPER kw_test_fdw;
      CREATE FOREIGN TABLE public.remote (id int) SERVER kw_test_server`);
    await restoring.query('BEGIN');
    await lockPublicTables(restoring, 1_000, 30_000, 1_800_000);
    const { rows } = await restoring.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
        WHERE l.pid = pg_catalog.pg_backend_pid() AND l.mode = 'AccessExclusiveLock' AND c.relnamespace = 'public'::regnamespace ORDER BY 1`,
    );
    expect(rows.map((row) => row.name)).toEqual(['plain', 'split', 'split_low']);
    await restoring.query('ROLLBACK');
  });

  it('waits at most its time for the tables together, not that long for each, and says so as a lock timeout', async () => {
    await restoring.query('CREATE TABLE public.first_table (id int); CREATE TABLE public.second_table (id int)');
    holders.push(await holdTableLock(database.url, 'first_table', 'ACCESS SHARE'), await holdTableLock(database.url, 'second_table', 'ACCESS SHARE'));
    const [first, second] = holders;
    await restoring.query('BEGIN');
    const taking = lockPublicTables(restoring, 600, 30_000, 1_800_000).then(
      () => 'taken',
      (error: unknown) => error,
    );
    // Each table comes free within the 600 ms, but not both: 400 ms each, one after the other.
    await eventually(async () => (await waitingFor(database.url)) === 'first_table', 'the LOCK waits for the first table');
    await sleep(400);
    await first!.release();
    await sleep(400);
    await second!.release();

    const outcome = await taking;
    expect(outcome).toMatchObject({ code: '55P03', message: 'the tables of public were not all free within 600 ms' });
    await restoring.query('ROLLBACK');
  });
});

async function waitingFor(url: string): Promise<string | undefined> {
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  try {
    const { rows } = await observer.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
        WHERE NOT l.granted AND l.mode = 'AccessExclusiveLock'`,
    );
    return rows[0]?.name;
  } finally {
    await observer.end();
  }
}
