import { Kysely, PostgresDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { addRowGates, gatedByRow } from '../../src/db/row-gate.js';
import { LockNotAvailableError } from '../../src/errors.js';

// The gate's own order and bounds, with calls whose ends the test decides (the pool's part, a
// held row on a real server, is in test/queries/statement-bounds.test.ts).
function gatedDb(waitMs: number): Kysely<DB> {
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool: { connect: async () => Promise.reject(new Error('no query runs here')), end: async () => undefined } }),
  });
  addRowGates(db, waitMs);
  return db;
}

// A call that runs until the test ends it, saying when it started.
function heldCall() {
  let end!: (outcome: Error | undefined) => void;
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
  it('runs one call of a row at a time, in the order they came, and the calls of other rows beside it', async () => {
    const db = gatedDb(60_000);
    const [first, second, third, other] = [heldCall(), heldCall(), heldCall(), heldCall()];
    const calls = [first, second, third].map((call) => settled(gatedByRow(db, 'users', 'a', call.work)));
    const otherRow = gatedByRow(db, 'users', 'b', other.work);

    await expect.poll(() => other.started).toBe(true);
    expect([first.started, second.started, third.started]).toEqual([true, false, false]);
    first.end(undefined);
    await expect.poll(() => second.started).toBe(true);
    expect(third.started).toBe(false);
    second.end(new Error('not a lock'));
    await expect.poll(() => third.started).toBe(true);
    third.end(undefined);
    other.end(undefined);

    expect(await Promise.all(calls)).toEqual(['done', new Error('not a lock'), 'done']);
    expect(await otherRow).toBeUndefined();
  });

  it("fails a call that waited the pool's lock_timeout for its turn as LockNotAvailableError, without running it", async () => {
    const db = gatedDb(50);
    const running = heldCall();
    const queued = heldCall();
    const first = gatedByRow(db, 'users', 'a', running.work);

    const error = await gatedByRow(db, 'users', 'a', queued.work).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(LockNotAvailableError);
    expect(error).toMatchObject({ retryable: true, lockTimeoutMs: 50 });
    expect(queued.started).toBe(false);
    // Its place is given up: the next call runs once the running one ends.
    const next = heldCall();
    const after = gatedByRow(db, 'users', 'a', next.work);
    running.end(undefined);
    await expect.poll(() => next.started).toBe(true);
    next.end(undefined);
    await Promise.all([first, after]);
  });

  it('fails the calls waiting behind one that failed for a lock with it, and runs the next newcomer', async () => {
    const db = gatedDb(60_000);
    const running = heldCall();
    const waiting = [heldCall(), heldCall()];
    const outcomes = [running, ...waiting].map((call) => settled(gatedByRow(db, 'users', 'a', call.work)));
    const lockError = new LockNotAvailableError({ lockTimeoutMs: 2_000 });

    running.end(lockError);
    const [first, ...behind] = await Promise.all(outcomes);

    expect(first).toBe(lockError);
    for (const error of behind) {
      expect(error).toBeInstanceOf(LockNotAvailableError);
      expect((error as Error).cause).toBe(lockError);
    }
    expect(waiting.map((call) => call.started)).toEqual([false, false]);
    const later = heldCall();
    const outcome = gatedByRow(db, 'users', 'a', later.work);
    await expect.poll(() => later.started).toBe(true);
    later.end(undefined);
    await outcome;
  });

  it('runs at once in a transaction, and on a Kysely without gates', async () => {
    const db = gatedDb(60_000);
    const running = heldCall();
    const first = gatedByRow(db, 'users', 'a', running.work);
    const inTransaction = Object.create(db, { isTransaction: { value: true } }) as Kysely<DB>;
    const ungated = new Kysely<DB>({ dialect: new PostgresDialect({ pool: { connect: async () => Promise.reject(new Error('no query')), end: async () => undefined } }) });

    expect(await gatedByRow(inTransaction, 'users', 'a', async () => 'ran')).toBe('ran');
    expect(await gatedByRow(ungated, 'users', 'a', async () => 'ran')).toBe('ran');
    running.end(undefined);
    await first;
  });
});
