import { Kysely, PostgresDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { attachRowGates, createRowGates, gatedByRow, gatedCallConnected, rowGateState } from '../../src/db/row-gate.js';
import { LockNotAvailableError, PoolTimeoutError } from '../../src/errors.js';

// The gate's own order and bounds, with calls whose course the test decides (the pool's part,
// a held row on a real server, is in test/queries/statement-bounds.test.ts). A call counts as
// holding its connection here from the moment it says so (no grace: heldAfterMs 0).
const unreachable = () =>
  new Kysely<DB>({ dialect: new PostgresDialect({ pool: { connect: async () => Promise.reject(new Error('no query runs here')), end: async () => undefined } }) });
function gatedDb(waitMs = 60_000): Kysely<DB> {
  const db = unreachable();
  attachRowGates(db, createRowGates(waitMs, (waitedMs) => new PoolTimeoutError(waitedMs, 1, 1, 0), 0));
  return db;
}

// A call that runs until the test ends it, saying whether it started; `connect` makes it hold
// its connection, as a checkout of the pool does.
function heldCall() {
  let end!: (outcome?: unknown) => void;
  let connect!: () => void;
  let started = false;
  const connected = new Promise<void>((resolve) => (connect = resolve));
  const finished = new Promise<void>((resolve, reject) => (end = (outcome) => (outcome === undefined ? resolve() : reject(outcome))));
  return {
    work: async () => {
      started = true;
      // In the call's own context, as the pool's checkout runs.
      void connected.then(gatedCallConnected);
      await finished;
    },
    get started() {
      return started;
    },
    connect,
    end,
  };
}

const settled = (promise: Promise<unknown>) => promise.then(() => 'done', (error: unknown) => error);
const row = 'users:a';
// What the look at the row finds: still held (a lock error), or let go.
const stillHeld = async () => Promise.reject(Object.assign(new Error('could not obtain lock'), { code: 'LOCK_NOT_AVAILABLE' }));
const letGo = async () => undefined;
// A call that holds the row: its connection held past heldAfterMs (here at once), and its outcome.
async function holdRow(db: Kysely<DB>, lookAtRow: () => Promise<unknown> = letGo) {
  const holder = heldCall();
  const outcome = settled(gatedByRow(db, row, holder.work, lookAtRow));
  holder.connect();
  await expect.poll(() => rowGateState(db, row)?.held).toBe(true);
  return { holder, outcome };
}

describe('gatedByRow', () => {
  it('runs the calls of a row side by side while none holds its connection, and keeps nothing after', async () => {
    const db = gatedDb();
    const calls = [heldCall(), heldCall(), heldCall()];
    const outcomes = calls.map((call) => gatedByRow(db, row, call.work, letGo));

    await expect.poll(() => calls.every((call) => call.started)).toBe(true);
    for (const call of calls) call.end();
    await Promise.all(outcomes);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  it('holds back newcomers, without a connection, while a call holds the row, and lets them all go when it ends well', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const newcomers = [heldCall(), heldCall()];
    const other = heldCall();
    const otherRow = gatedByRow(db, 'users:b', other.work, letGo);

    const outcomes = newcomers.map((call) => gatedByRow(db, row, call.work, letGo));

    await expect.poll(() => other.started).toBe(true);
    expect(rowGateState(db, row)).toEqual({ running: 1, waiting: 2, held: true });
    expect(newcomers.map((call) => call.started)).toEqual([false, false]);
    holder.end();
    await expect.poll(() => newcomers.every((call) => call.started)).toBe(true);
    for (const call of [...newcomers, other]) call.end();
    await Promise.all([first, otherRow, ...outcomes]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  it('queues a newcomer behind those already waiting, though the call that held the row has just ended', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const [waiting, newcomer] = [heldCall(), heldCall()];
    const queued = gatedByRow(db, row, waiting.work, letGo);
    // A second holder keeps the row held when the first ends.
    waiting.connect();

    holder.end();
    await first;
    await expect.poll(() => waiting.started && rowGateState(db, row)?.held).toBe(true);
    const late = gatedByRow(db, row, newcomer.work, letGo);

    expect(newcomer.started).toBe(false);
    waiting.end();
    await expect.poll(() => newcomer.started).toBe(true);
    newcomer.connect();
    newcomer.end();
    await Promise.all([queued, late]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  it('fails those waiting behind a call that failed for a lock, when a look finds the row still held', async () => {
    const db = gatedDb();
    const { holder, outcome } = await holdRow(db, stillHeld);
    const waiting = [heldCall(), heldCall()];
    const outcomes = [outcome, ...waiting.map((call) => settled(gatedByRow(db, row, call.work, stillHeld)))];
    const lockError = new LockNotAvailableError({ lockTimeoutMs: 2_000 });

    holder.end(lockError);
    const [first, ...behind] = await Promise.all(outcomes);

    expect(first).toBe(lockError);
    for (const error of behind) {
      expect(error).toBeInstanceOf(LockNotAvailableError);
      expect(error).toMatchObject({ cause: lockError, lockTimeoutMs: 2_000, retryable: true });
      expect((error as Error).message).toBe(
        'A lock was not available in time: the call ahead of this one for the same row waited for it until lock_timeout (2000 ms), ' +
          'and a look right after did not find it free; this one failed with it, without a connection; retry the transaction after a pause',
      );
    }
    expect(waiting.map((call) => call.started)).toEqual([false, false]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // Another lock than the row's (a table's, a key share the call's key change needed): the
  // others may well go through.
  it("lets those waiting go when the call ahead failed for a lock and the look finds the row let go; the other build's lock error counts", async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const waiting = [heldCall(), heldCall()];
    const outcomes = waiting.map((call) => gatedByRow(db, row, call.work, letGo));

    holder.end(Object.assign(new Error('other copy'), { code: 'LOCK_NOT_AVAILABLE', lockTimeoutMs: 2_000 }));

    await expect.poll(() => waiting.every((call) => call.started)).toBe(true);
    for (const call of waiting) call.end();
    await Promise.all([first, ...outcomes]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A call that failed before its connection (a busy pool) says nothing of the row.
  it('lets no one go when a call that never held the row ends, while another still holds it', async () => {
    const db = gatedDb();
    const [holder, early] = [heldCall(), heldCall()];
    const outcomes = [holder, early].map((call) => settled(gatedByRow(db, row, call.work, letGo)));
    holder.connect();
    await expect.poll(() => rowGateState(db, row)?.held).toBe(true);
    const waiting = heldCall();
    outcomes.push(settled(gatedByRow(db, row, waiting.work, letGo)));

    early.end(new PoolTimeoutError(600, 2, 2, 1));
    await outcomes[1];

    expect(rowGateState(db, row)).toEqual({ running: 1, waiting: 1, held: true });
    holder.end();
    await expect.poll(() => waiting.started).toBe(true);
    waiting.end();
    await Promise.all(outcomes);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A look that cannot be made (no connection free in time, or it fails otherwise) finds the
  // row no freer than the lock failure a moment before said.
  it.each([
    ['fails', async () => Promise.reject(new PoolTimeoutError(30_000, 10, 10, 5))],
    ['throws at once', () => {
      throw new Error('no look');
    }],
    ['does not answer within a second', () => new Promise<never>(() => undefined)],
  ])('fails those waiting behind a call that failed for a lock when the look at the row %s', async (_how, lookAtRow) => {
    const db = gatedDb();
    const { holder, outcome } = await holdRow(db, lookAtRow as () => Promise<unknown>);
    const waiting = heldCall();
    const behind = settled(gatedByRow(db, row, waiting.work, lookAtRow as () => Promise<unknown>));
    const lockError = new LockNotAvailableError({ lockTimeoutMs: 2_000 });

    holder.end(lockError);

    expect(await outcome).toBe(lockError);
    expect(await behind).toMatchObject({ cause: lockError, lockTimeoutMs: 2_000 });
    expect(await behind).toBeInstanceOf(LockNotAvailableError);
    expect(waiting.started).toBe(false);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  it('fails a call that waited the acquire timeout at a held row as one that waited for a connection, without running it', async () => {
    const db = gatedDb(50);
    const { holder, outcome: first } = await holdRow(db);
    const queued = heldCall();
    const timers = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

    const error = await gatedByRow(db, row, queued.work, letGo).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PoolTimeoutError);
    expect((error as PoolTimeoutError).waitedMs).toBeGreaterThanOrEqual(45);
    expect(queued.started).toBe(false);
    holder.end();
    await first;
    expect(rowGateState(db, row)).toBeUndefined();
    expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).toBeLessThanOrEqual(timers);
  });

  it('leaves no timer behind for the calls it let go', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const timers = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    const waiting = [heldCall(), heldCall(), heldCall()];
    const outcomes = waiting.map((call) => gatedByRow(db, row, call.work, letGo));
    await expect.poll(() => rowGateState(db, row)?.waiting).toBe(3);

    holder.end();
    await expect.poll(() => waiting.every((call) => call.started)).toBe(true);
    for (const call of waiting) call.end();
    await Promise.all([first, ...outcomes]);

    expect(process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length).toBeLessThanOrEqual(timers);
  });

  it('runs at once in a transaction, and on a Kysely without gates', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const inTransaction = Object.create(db, { isTransaction: { value: true } }) as Kysely<DB>;

    expect(await gatedByRow(inTransaction, row, async () => 'ran', letGo)).toBe('ran');
    expect(await gatedByRow(unreachable(), row, async () => 'ran', letGo)).toBe('ran');
    holder.end();
    await first;
  });
});
