import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blockerMonitor } from '../../src/migrations/lock-blockers.js';
import { defaultLockWait, type LockRetryOptions, withLockRetries } from '../../src/migrations/lock-retries.js';
import { eventually } from '../support/eventually.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// The work's connection and another session's, on two tables of a database of their own.
let database: TestDatabase;
let work: pg.Client;
let other: pg.Client;
beforeEach(async () => {
  database = await createTestDatabase({ empty: true });
  work = new pg.Client({ connectionString: database.url });
  other = new pg.Client({ connectionString: database.url });
  await Promise.all([work.connect(), other.connect()]);
  await work.query('CREATE TABLE first_table (id int); CREATE TABLE second_table (id int)');
});
afterEach(async () => {
  await Promise.all([work.end(), other.end()]);
  await database.drop();
});

// Work that takes many tables in one go (a restore's) meets transactions that take them one by
// one: a deadlock that PostgreSQL ends by cancelling the work's attempt is rolled back and tried
// again, as a lock timeout is, where the work asks for it; a migration's statement is not.
describe('withLockRetries and a deadlock', () => {

  // The first attempt deadlocks for real: the work holds the first table and waits for the
  // second, which the other transaction holds while it waits for the first. The other waits
  // first but checks for deadlocks only after an hour (its deadlock_timeout); the work's check,
  // a second into its wait, finds the cycle and cancels the work. The other then goes on.
  async function attempt({ number }: { number: number }): Promise<number> {
    await work.query('BEGIN; LOCK TABLE first_table IN ACCESS EXCLUSIVE MODE');
    if (number === 1) {
      await other.query("SET deadlock_timeout = '1h'; BEGIN; LOCK TABLE second_table IN ACCESS EXCLUSIVE MODE");
      const otherDone = other.query('LOCK TABLE first_table IN ACCESS EXCLUSIVE MODE; COMMIT');
      otherDone.catch(() => undefined);
      await eventually(
        async () => (await observe("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")) === 1,
        'the other transaction waits for the first table',
      );
    }
    await work.query('LOCK TABLE second_table IN ACCESS EXCLUSIVE MODE; COMMIT');
    return number;
  }

  async function observe(sql: string): Promise<number> {
    const observer = new pg.Client({ connectionString: database.url });
    await observer.connect();
    try {
      return (await observer.query(sql)).rowCount ?? 0;
    } finally {
      await observer.end();
    }
  }

  function options(retryDeadlocks: boolean, warnings: string[]): LockRetryOptions {
    return {
      policy: { ...defaultLockWait, totalMs: 30_000 },
      monitor: blockerMonitor(database.url, 'kw-test-monitor'),
      warn: (line) => warnings.push(line),
      what: 'the work',
      undo: async () => void (await work.query('ROLLBACK')),
      exhausted: () => new Error('the budget is spent'),
      retryDeadlocks,
    };
  }

  it('with retryDeadlocks, rolls the deadlocked attempt back, reports it and tries again', async () => {
    const warnings: string[] = [];
    const retrying = options(true, warnings);
    try {
      expect(await withLockRetries(retrying, attempt)).toBe(2);
    } finally {
      await retrying.monitor.close();
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^the work: attempt 1 waited .* rolled back so that queries queued behind it go on/);
  });

  it('without it, ends at the deadlock (SQLSTATE 40P01), as a migration does', async () => {
    const warnings: string[] = [];
    const strict = options(false, warnings);
    try {
      await expect(withLockRetries(strict, attempt)).rejects.toMatchObject({ code: '40P01' });
    } finally {
      await strict.monitor.close();
      await work.query('ROLLBACK');
    }
    expect(warnings).toEqual([]);
  });
});

// Ctrl-C during a restore's wait for its tables: the pause between two attempts ends at once,
// not after up to 5 s.
describe('withLockRetries interrupted between attempts', () => {
  it('ends the pause when its signal aborts, rejecting with the reason, and tries no more', async () => {
    await other.query('BEGIN; LOCK TABLE first_table IN ACCESS SHARE MODE');
    const interrupted = new AbortController();
    const reason = new Error('interrupted');
    const warnings: string[] = [];
    let attempts = 0;
    const monitor = blockerMonitor(database.url, 'kw-test-monitor');
    try {
      const waiting = withLockRetries(
        {
          // An hour's pause after the first attempt: only the signal can end it within the test.
          policy: { ...defaultLockWait, firstPauseMs: 3_600_000, maxPauseMs: 3_600_000, totalMs: 7_200_000 },
          monitor,
          warn: (line) => {
            warnings.push(line);
            interrupted.abort(reason);
          },
          what: 'the work',
          undo: async () => void (await work.query('ROLLBACK')),
          exhausted: () => new Error('the budget is spent'),
          signal: interrupted.signal,
        },
        async ({ lockTimeoutMs }) => {
          attempts += 1;
          await work.query(`BEGIN; SET LOCAL lock_timeout = ${lockTimeoutMs}; LOCK TABLE first_table IN ACCESS EXCLUSIVE MODE`);
        },
      );
      await expect(waiting).rejects.toBe(reason);
    } finally {
      await monitor.close();
      await other.query('ROLLBACK');
    }
    expect(attempts).toBe(1);
    expect(warnings).toEqual([expect.stringMatching(/^the work: attempt 1 waited .* trying again in 1h /)]);
  });
});
