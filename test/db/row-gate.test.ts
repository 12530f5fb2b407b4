import { Kysely, PostgresDialect } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { attachRowGates, createRowGates, gatedByRow, rowGateState } from '../../src/db/row-gate.js';
import { LockNotAvailableError, PoolTimeoutError } from '../../src/errors.js';

// The gate's own order and bounds, with calls whose course the test decides (the pool's part,
// a held row on a real server, is in test/queries/statement-bounds.test.ts). A running call
// holds the row here at once (heldAfterMs 0), unless it began while the test said callers
// waited for a connection.
const unreachable = () =>
  new Kysely<DB>({ dialect: new PostgresDialect({ pool: { connect: async () => Promise.reject(new Error('no query runs here')), end: async () => undefined } }) });
const pool = { busy: false };
function gatedDb(waitMs = 60_000, heldAfterMs = 0): Kysely<DB> {
  pool.busy = false;
  const db = unreachable();
  attachRowGates(db, createRowGates(waitMs, (waitedMs) => new PoolTimeoutError(waitedMs, 1, 1, 0), () => (pool.busy ? 0 : 10), heldAfterMs));
  return db;
}

// A call that runs until the test ends it, saying whether it started.
function heldCall() {
  let end!: (outcome?: unknown) => void;
  let started = false;
  const finished = new Promise<void>((resolve, reject) => (end = (outcome) => (outcome === undefined ? resolve() : reject(outcome))));
  return {
    work: async () => {
      started = true;
      await finished;
    },
    get started() {
      return started;
    },
    end,
  };
}

const settled = (promise: Promise<unknown>) => promise.then(() => 'done', (error: unknown) => error);
const row = 'users:a';
// What the look at the row finds: still held (a lock error), or let go.
const stillHeld = async () => Promise.reject(Object.assign(new Error('could not obtain lock'), { code: 'LOCK_NOT_AVAILABLE' }));
const letGo = async () => undefined;
// A call that holds the row (it runs, and no caller waits for a connection), and its outcome.
async function holdRow(db: Kysely<DB>, lookAtRow: () => Promise<unknown> = letGo) {
  const holder = heldCall();
  const outcome = settled(gatedByRow(db, row, holder.work, lookAtRow));
  await expect.poll(() => rowGateState(db, row)?.held).toBe(true);
  return { holder, outcome };
}

describe('gatedByRow', () => {
  // A long call may then be waiting for a connection, holding nothing.
  it('runs the calls of a row side by side while callers wait for a connection, and keeps nothing after', async () => {
    const db = gatedDb();
    pool.busy = true;
    const calls = [heldCall(), heldCall(), heldCall()];
    const outcomes = calls.map((call) => gatedByRow(db, row, call.work, letGo));

    await expect.poll(() => calls.every((call) => call.started)).toBe(true);
    expect(rowGateState(db, row)).toEqual({ running: 3, waiting: 0, held: false });
    for (const call of calls) call.end();
    await Promise.all(outcomes);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A burst faster than heldAfterMs can tell: the row's calls conflict on the server anyway.
  it('runs at most two calls of a row at once with an idle connection at hand; the next waits for one to end', async () => {
    const db = gatedDb(60_000, 60_000);
    const calls = [heldCall(), heldCall(), heldCall()];
    const outcomes = calls.map((call) => gatedByRow(db, row, call.work, letGo));

    await expect.poll(() => calls[1]!.started).toBe(true);
    expect(rowGateState(db, row)).toEqual({ running: 2, waiting: 1, held: false });
    expect(calls[2]!.started).toBe(false);
    calls[0]!.end();
    await expect.poll(() => calls[2]!.started).toBe(true);
    calls[1]!.end();
    calls[2]!.end();
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

  it('holds back a newcomer while the row is being looked at, and lets it go with those waiting when the look finds it free', async () => {
    let answerLook!: () => void;
    const look = () => new Promise<void>((resolve) => (answerLook = resolve));
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db, look);
    const [waiting, newcomer] = [heldCall(), heldCall()];
    const calls = [gatedByRow(db, row, waiting.work, look)];

    holder.end(new LockNotAvailableError({ lockTimeoutMs: 2_000 }));
    await first;
    calls.push(gatedByRow(db, row, newcomer.work, look));

    expect(rowGateState(db, row)).toEqual({ running: 0, waiting: 2, held: false });
    answerLook();
    await expect.poll(() => waiting.started && newcomer.started).toBe(true);
    waiting.end();
    newcomer.end();
    await Promise.all(calls);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // Begun with a connection at hand, it is on the server: other callers filling the pool later
  // make it no less held.
  it('keeps a row held when callers come to wait for a connection after its call began', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    pool.busy = true;
    const newcomer = heldCall();
    const late = settled(gatedByRow(db, row, newcomer.work, letGo));

    expect(rowGateState(db, row)).toEqual({ running: 1, waiting: 1, held: true });
    holder.end();
    await expect.poll(() => newcomer.started).toBe(true);
    newcomer.end();
    await Promise.all([first, late]);
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
      expect(error).toMatchObject({ cause: lockError, lockTimeoutMs: 2_000, retryable: true, behindCallForRow: true });
      expect((error as Error).message).toBe(
        'A lock was not available in time: the call ahead of this one for the same row waited for it until lock_timeout (2000 ms), ' +
          'and the row was not found free right after (or could not be looked at); this one failed with it, without a connection; retry the transaction after a pause',
      );
    }
    expect(waiting.map((call) => call.started)).toEqual([false, false]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // Another lock than the row's (a table's, a key share the call's key change needed): the
  // others may well go through.
  it('lets those waiting go when the call ahead failed for a lock and the look finds the row let go', async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db);
    const waiting = [heldCall(), heldCall()];
    const outcomes = waiting.map((call) => gatedByRow(db, row, call.work, letGo));

    holder.end(new LockNotAvailableError({ lockTimeoutMs: 2_000 }));

    await expect.poll(() => waiting.every((call) => call.started)).toBe(true);
    for (const call of waiting) call.end();
    await Promise.all([first, ...outcomes]);
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A key-share holder blocks a key's change (FOR UPDATE) and no other change (FOR NO KEY UPDATE).
  it('after a call failed for a lock, looks with each waiting lock, the strongest first: those still held for theirs fail, the others go', async () => {
    const db = gatedDb();
    const looks: string[] = [];
    const heldForKeys = async () => {
      looks.push('FOR UPDATE');
      return stillHeld();
    };
    const freeForOthers = async () => void looks.push('FOR NO KEY UPDATE');
    const { holder, outcome } = await holdRow(db, heldForKeys);
    const [keyChange, otherChange] = [heldCall(), heldCall()];
    const behind = settled(gatedByRow(db, row, keyChange.work, heldForKeys, 3));
    const other = settled(gatedByRow(db, row, otherChange.work, freeForOthers, 2));
    const lockError = new LockNotAvailableError({ lockTimeoutMs: 2_000 });

    holder.end(lockError);

    expect(await behind).toMatchObject({ behindCallForRow: true, cause: lockError });
    await expect.poll(() => otherChange.started).toBe(true);
    expect(keyChange.started).toBe(false);
    expect(looks).toEqual(['FOR UPDATE', 'FOR NO KEY UPDATE']);
    otherChange.end();
    expect(await other).toBe('done');
    await outcome;
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A call that came while the row was looked at with another lock was judged by that look:
  // an insert (FOR KEY SHARE) failed behind a slug change's look, its own lock free.
  it('looks again with the lock of a call that came during a look, and lets it go when that is free', async () => {
    const db = gatedDb();
    let answerKeyLook!: () => void;
    const keyLook = () => new Promise<void>((_resolve, reject) => (answerKeyLook = () => reject(Object.assign(new Error('held'), { code: 'LOCK_NOT_AVAILABLE' }))));
    const { holder, outcome } = await holdRow(db, keyLook);
    const keyChange = heldCall();
    const behind = settled(gatedByRow(db, row, keyChange.work, keyLook, 3));
    holder.end(new LockNotAvailableError({ lockTimeoutMs: 2_000 }));
    await outcome;
    await expect.poll(() => answerKeyLook).toBeTypeOf('function');

    const insert = heldCall();
    const inserted = settled(gatedByRow(db, row, insert.work, letGo, 0));
    answerKeyLook();

    expect(await behind).toMatchObject({ behindCallForRow: true });
    await expect.poll(() => insert.started).toBe(true);
    insert.end();
    expect(await inserted).toBe('done');
    expect(rowGateState(db, row)).toBeUndefined();
  });

  // A waiter that gave up during a look left the queue the look was choosing from: the next
  // look's choice threw, unhandled (the process ended), and the row stayed "being looked at",
  // so that every later call for it waited the acquire timeout.
  it('keeps going when the waiting calls give up (the acquire timeout) during a look, and forgets the row', async () => {
    const db = gatedDb(200);
    const unanswered = () => new Promise<never>(() => undefined);
    const { holder, outcome } = await holdRow(db, unanswered);
    const waiting = [heldCall(), heldCall()];
    const behind = [settled(gatedByRow(db, row, waiting[0]!.work, unanswered, 3)), settled(gatedByRow(db, row, waiting[1]!.work, letGo, 2))];

    holder.end(new LockNotAvailableError({ lockTimeoutMs: 2_000 }));
    await outcome;

    for (const error of await Promise.all(behind)) expect(error).toBeInstanceOf(PoolTimeoutError);
    await expect.poll(() => rowGateState(db, row), { timeout: 3_000 }).toBeUndefined();
    expect(await gatedByRow(db, row, async () => 'ran', letGo)).toBe('ran');
  });

  // Whatever holds a call back conflicts with a stronger lock too, not always with a weaker one:
  // a rotation in flight (FOR SHARE) holds a change of the name and not an insert for the user.
  it('holds back a call behind a stuck call of a weaker or the same lock, and lets one of a weaker lock run beside it', async () => {
    const db = gatedDb();
    const { holder, outcome } = await holdRow(db);
    const [insert, keyChange] = [heldCall(), heldCall()];
    const inserted = settled(gatedByRow(db, row, insert.work, letGo, 0));
    await expect.poll(() => insert.started).toBe(true);
    const changed = settled(gatedByRow(db, row, keyChange.work, letGo, 3));

    expect(rowGateState(db, row)).toEqual({ running: 2, waiting: 1, held: true });
    expect(keyChange.started).toBe(false);
    holder.end();
    insert.end();
    await expect.poll(() => keyChange.started).toBe(true);
    keyChange.end();
    expect(await Promise.all([outcome, inserted, changed])).toEqual(['done', 'done', 'done']);
  });

  it('lets every waiting call go once the look with the strongest of their locks finds the row free, without another look', async () => {
    const db = gatedDb();
    const looks: string[] = [];
    const look = (name: string) => async () => void looks.push(name);
    const { holder, outcome } = await holdRow(db);
    const [keyChange, otherChange] = [heldCall(), heldCall()];
    const outcomes = [settled(gatedByRow(db, row, otherChange.work, look('FOR NO KEY UPDATE'), 2)), settled(gatedByRow(db, row, keyChange.work, look('FOR UPDATE'), 3))];

    holder.end(new LockNotAvailableError({ lockTimeoutMs: 2_000 }));

    await expect.poll(() => keyChange.started && otherChange.started).toBe(true);
    expect(looks).toEqual(['FOR UPDATE']);
    keyChange.end();
    otherChange.end();
    expect(await Promise.all(outcomes)).toEqual(['done', 'done']);
    await outcome;
  });

  it("counts the other build's lock error as a failure for the lock", async () => {
    const db = gatedDb();
    const { holder, outcome: first } = await holdRow(db, stillHeld);
    const waiting = heldCall();
    const behind = settled(gatedByRow(db, row, waiting.work, stillHeld));
    const otherCopys = Object.assign(new Error('other copy'), { code: 'LOCK_NOT_AVAILABLE', lockTimeoutMs: 2_000 });

    holder.end(otherCopys);

    expect(await first).toBe(otherCopys);
    expect(await behind).toMatchObject({ behindCallForRow: true, cause: otherCopys });
    expect(waiting.started).toBe(false);
  });

  // A call that failed waiting for a connection (a busy pool) says nothing of the row.
  it('lets no one go when a call ends while another still holds the row', async () => {
    const db = gatedDb();
    pool.busy = true;
    const early = heldCall();
    const outcomes = [settled(gatedByRow(db, row, early.work, letGo))];
    pool.busy = false;
    const holder = heldCall();
    outcomes.unshift(settled(gatedByRow(db, row, holder.work, letGo)));
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

    const error = await gatedByRow(db, row, queued.work, letGo).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PoolTimeoutError);
    expect((error as PoolTimeoutError).waitedMs).toBeGreaterThanOrEqual(45);
    expect(queued.started).toBe(false);
    holder.end();
    await first;
    expect(rowGateState(db, row)).toBeUndefined();
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
