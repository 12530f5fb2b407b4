import { Kysely, PostgresDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { attachRowGates, createRowGates, gatedByRow, gatedRows } from '../../src/db/row-gate.js';
import { LockNotAvailableError, PoolTimeoutError } from '../../src/errors.js';

// The gate's own order and bounds, with calls whose ends the test decides (the pool's part, a
// held row on a real server, is in test/queries/statement-bounds.test.ts).
const unreachable = () =>
  new Kysely<DB>({ dialect: new PostgresDialect({ pool: { connect: async () => Promise.reject(new Error('no query runs here')), end: async () => undefined } }) });
function gatedDb(waitMs: number): Kysely<DB> {
  const db = unreachable();
  attachRowGates(db, createRowGates(waitMs, (waitedMs) => new PoolTimeoutError(waitedMs, 1, 1, 0)));
  return db;
}

// A call that runs until the test ends it, saying whether it started.
function heldCall() {
  let end!: (outcome?: unknown) => void;
  let started = false;
  const finished = new Promise<void>((resolve, reject) => (end = (outcome) => (outcome === undefined ? resolve() : reject(outcome))));
  return {
    work: () => {
      started = true;
      return finished;
    },
    get started() {
      return started;
    },
    end,
  };
}

const settled = (promise: Promise<unknown>) => promise.then(() => 'done', (error: unknown) => error);

describe('gatedByRow', () => {
  it('runs one call of a row at a time, in the order they came, and the calls of other rows beside it; then keeps nothing', async () => {
    const db = gatedDb(60_000);
    const [first, second, third, other] = [heldCall(), heldCall(), heldCall(), heldCall()];
    const calls = [first, second, third].map((call) => settled(gatedByRow(db, 'users', 'a', call.work)));
    const otherRow = gatedByRow(db, 'users', 'b', other.work);

    await expect.poll(() => other.started).toBe(true);
    expect([first.started, second.started, third.started]).toEqual([true, false, false]);
    first.end();
    await expect.poll(() => second.started).toBe(true);
    expect(third.started).toBe(false);
    second.end(new Error('not a lock'));
    await expect.poll(() => third.started).toBe(true);
    third.end();
    other.end();

    expect(await Promise.all(calls)).toEqual(['done', new Error('not a lock'), 'done']);
    expect(await otherRow).toBeUndefined();
    expect(gatedRows(db)).toBe(0);
  });

  it('gives the turn to the call that waited for it, not to one that comes as it is handed over', async () => {
    const db = gatedDb(60_000);
    const [running, waiting, newcomer] = [heldCall(), heldCall(), heldCall()];
    const calls = [running, waiting].map((call) => gatedByRow(db, 'users', 'a', call.work));

    running.end();
    calls.push(gatedByRow(db, 'users', 'a', newcomer.work));
    await expect.poll(() => waiting.started).toBe(true);
    expect(newcomer.started).toBe(false);
    waiting.end();
    await expect.poll(() => newcomer.started).toBe(true);
    newcomer.end();
    await Promise.all(calls);
    expect(gatedRows(db)).toBe(0);
  });

  it('fails a call that waited the acquire timeout for its turn as one that waited for a connection, without running it', async () => {
    const db = gatedDb(50);
    const [running, queued, next] = [heldCall(), heldCall(), heldCall()];
    const first = gatedByRow(db, 'users', 'a', running.work);

    const error = await gatedByRow(db, 'users', 'a', queued.work).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PoolTimeoutError);
    expect((error as PoolTimeoutError).waitedMs).toBeGreaterThanOrEqual(45);
    expect(queued.started).toBe(false);
    // Its place is given up: the next call runs once the running one ends.
    const after = gatedByRow(db, 'users', 'a', next.work);
    running.end();
    await expect.poll(() => next.started).toBe(true);
    next.end();
    await Promise.all([first, after]);
    expect(gatedRows(db)).toBe(0);
  });

  // The running call waited lock_timeout for the row: those behind it would wait for it again.
  it.each([
    ['this build', new LockNotAvailableError({ lockTimeoutMs: 2_000 })],
    ["the other build's (known by its code)", Object.assign(new Error('other copy'), { code: 'LOCK_NOT_AVAILABLE', lockTimeoutMs: 2_000, limit: 'lock_timeout' })],
  ])('fails the calls waiting behind one that failed for a lock with it (%s), and runs the next newcomer', async (_build, lockError) => {
    const db = gatedDb(60_000);
    const [running, ...waiting] = [heldCall(), heldCall(), heldCall()];
    const outcomes = [running, ...waiting].map((call) => settled(gatedByRow(db, 'users', 'a', call.work)));

    running.end(lockError);
    const [first, ...behind] = await Promise.all(outcomes);

    expect(first).toBe(lockError);
    for (const error of behind) {
      expect(error).toBeInstanceOf(LockNotAvailableError);
      expect(error).toMatchObject({ cause: lockError, lockTimeoutMs: 2_000, retryable: true });
      expect((error as Error).message).toBe(
        'A lock was not available in time: the call ahead of this one for the same row waited for it until lock_timeout (2000 ms), ' +
          'and this one failed with it, without a connection; retry the transaction after a pause',
      );
    }
    expect(waiting.map((call) => call.started)).toEqual([false, false]);
    const later = heldCall();
    const outcome = gatedByRow(db, 'users', 'a', later.work);
    await expect.poll(() => later.started).toBe(true);
    later.end();
    await outcome;
    expect(gatedRows(db)).toBe(0);
  });

  it('runs at once in a transaction, and on a Kysely without gates', async () => {
    const db = gatedDb(60_000);
    const running = heldCall();
    const first = gatedByRow(db, 'users', 'a', running.work);
    const inTransaction = Object.create(db, { isTransaction: { value: true } }) as Kysely<DB>;

    expect(await gatedByRow(inTransaction, 'users', 'a', async () => 'ran')).toBe('ran');
    expect(await gatedByRow(unreachable(), 'users', 'a', async () => 'ran')).toBe('ran');
    running.end();
    await first;
  });
});
