import { performance } from 'node:perf_hooks';
import type { Kysely } from 'kysely';
import { LockNotAvailableError } from '../errors.js';

interface Waiter {
  go(call: Call): void;
  fail(error: Error): void;
  /** The row lock its call takes (see RowLockStrength), and a look at the row with that lock. */
  strength: RowLockStrength;
  look: () => Promise<unknown>;
}

/**
 * The row lock a gated call takes, in PostgreSQL's order (`FOR KEY SHARE` 0, `FOR SHARE` 1,
 * `FOR NO KEY UPDATE` 2, `FOR UPDATE` 3): each conflicts with all the weaker one does and
 * more, so a row free for a stronger lock is free for every weaker one. An UPDATE that
 * changes a key (a column of a unique index, as a user's slug) takes `FOR UPDATE`, and any
 * other `FOR NO KEY UPDATE`.
 */
export type RowLockStrength = 0 | 1 | 2 | 3;

// A gated call of a row: when it began to run, and whether a connection was at hand then (so
// that how long it has run is how long it has been on the server).
interface Call {
  startedAt: number;
  atHand: boolean;
  strength: RowLockStrength;
}

// One row's calls in one pool: those running, those waiting for the row to be let go, and
// whether a look at the row's lock is under way.
interface RowState {
  running: Set<Call>;
  waiting: Waiter[];
  looking: boolean;
}

/** A pool's row gates (see {@link gatedByRow}). */
export interface RowGates {
  /** The longest a call waits at a row: the pool's acquire timeout. */
  readonly waitMs: number;
  /** How long a call may run before the row counts as held (newcomers wait). */
  readonly heldAfterMs: number;
  /** How many idle connections a call beginning now may take at once (those the checkouts already waiting have not claimed). */
  readonly idleConnections: () => number;
  /** The error of a call that waited `waitMs` at a row, as one that waited for a connection. */
  readonly timedOut: (waitedMs: number) => Error;
  readonly rows: Map<string, RowState>;
}

// On each instance of one createDb that reaches its pool (the db itself, withPlugin's,
// withSchema's, and the copy a query function makes without plugins), by a registered symbol:
// a service that loads both builds of this package has two copies of this module. Not on a
// transaction, nor on the instance `db.connection()` hands its callback: those hold a
// connection already, perhaps with the row locked.
const rowGatesKey = Symbol.for('@kennwilliamson/db/row-gates');
// A gated call runs in a few milliseconds; one that has run this long since it began with an
// idle connection at hand waits on the server for something, most likely the row. (Knowing
// when each call got its connection would take Node's async context storage, which on Node 20
// makes every await of the process more than twice as slow once one is used.)
const defaultHeldAfterMs = 50;
// The calls of one row conflict on the server anyway: more than two of them at once with a
// connection gain nothing, and one arriving with them (a burst, faster than heldAfterMs can
// tell) waits for one to end.
const callsAtHandPerRow = 2;

/**
 * A pool's row gates: a call waits at a held row at most `waitMs`, then fails with
 * `timedOut`'s error; `idleConnections` says how many connections a call beginning now may take at once.
 *
 * @example const gates = createRowGates(config.acquireTimeoutMs, (waitedMs) => new PoolTimeoutError(waitedMs, …), () => Math.max(0, pool.idleCount - pool.waitingCount))
 */
export function createRowGates(waitMs: number, timedOut: (waitedMs: number) => Error, idleConnections: () => number, heldAfterMs = defaultHeldAfterMs): RowGates {
  return { waitMs, heldAfterMs, idleConnections, timedOut, rows: new Map() };
}

/**
 * Gives `db`, an instance that reaches the pool, the pool's row gates.
 *
 * @example attachRowGates(db.withPlugin(plugin), gates)
 */
export function attachRowGates(db: Kysely<any>, gates: RowGates): void {
  Object.defineProperty(db, rowGatesKey, { value: gates, configurable: true });
}

/** The row gates of `db`'s pool, if `db` reaches one through them. @example rowGatesOf(db)?.waitMs // 30000 */
export function rowGatesOf(db: Kysely<any>): RowGates | undefined {
  return (db as { [rowGatesKey]?: RowGates })[rowGatesKey];
}

/** The calls of `row` in `db`'s pool, running and waiting (nothing is kept for a row without any). @example rowGateState(db, 'users:…') */
export function rowGateState(db: Kysely<any>, row: string): { running: number; waiting: number; held: boolean } | undefined {
  const gates = rowGatesOf(db);
  const state = gates?.rows.get(row);
  return gates === undefined || state === undefined ? undefined : { running: state.running.size, waiting: state.waiting.length, held: held(gates, state) };
}

/**
 * Runs `work`, a call that writes or locks `row` (`users:<id>`), beside the other calls of the
 * same pool for that row, unless one of them, begun with a connection at hand, has run for a
 * while (the row looks held: an admin's long transaction, say). Then `work` waits in the process, without a
 * connection, until one of those calls ends, so that a held row takes the connections of the
 * calls already on it, not the pool's every connection, and every other user's calls go on.
 * When a call ends, the waiting calls go, unless another call still holds the row. When one
 * fails for a lock (it waited `lock_timeout`), the waiting calls' `lookAtRow` tries the row's
 * lock without waiting, the lock each takes (`strength`, the strongest first): let go for
 * theirs, they go; still held for theirs, or not looked at within a second (no connection
 * free), they fail with that failure, as the retryable `LockNotAvailableError` that says so. A call waits at most the pool's
 * acquire timeout (then `PoolTimeoutError`, as for a connection). In a transaction, on the
 * instance `db.connection()` gives, and on a `Kysely` that createDb did not make, `work` runs
 * at once.
 *
 * @example
 * return gatedByRow(db, `users:${id}`, () => updateUser(db, id), () => lockUserRowNoWait(db, id))
 */
export async function gatedByRow<T>(
  db: Kysely<any>,
  row: string,
  work: () => Promise<T>,
  lookAtRow: () => Promise<unknown>,
  strength: RowLockStrength = 2,
): Promise<T> {
  const gates = db.isTransaction ? undefined : rowGatesOf(db);
  if (gates === undefined) return work();
  let state = gates.rows.get(row);
  if (state === undefined) {
    state = { running: new Set(), waiting: [], looking: false };
    gates.rows.set(row, state);
  }
  // Behind those already waiting, too: they go first. A call let go is counted as running from
  // then on, so that the row is not forgotten before it resumes.
  let call: Call;
  if (state.waiting.some((waiter) => waiter.strength <= strength) || state.looking || held(gates, state, strength) || atHand(state) >= callsAtHandPerRow) {
    call = await waitAtRow(gates, row, state, strength, lookAtRow);
  } else state.running.add((call = begun(gates.idleConnections() > 0, strength)));
  let failedForLock: unknown;
  try {
    return await work();
  } catch (error) {
    // By its code: the error may be the other build's class, from a createDb of that copy.
    if ((error as { code?: unknown } | null)?.code === 'LOCK_NOT_AVAILABLE') failedForLock = error;
    throw error;
  } finally {
    state.running.delete(call);
    callEnded(gates, row, state, failedForLock);
  }
}

const begun = (atHand: boolean, strength: RowLockStrength): Call => ({ startedAt: performance.now(), atHand, strength });
function atHand(state: RowState): number {
  let count = 0;
  for (const call of state.running) if (call.atHand) count += 1;
  return count;
}

// Whether the row looks held against a call that takes `strength`: a running call of the row
// whose lock it takes too or a weaker one (whatever holds that call back conflicts with this
// one's lock as well), begun with a connection at hand, has run heldAfterMs (one begun on a
// busy pool may be waiting for its connection, holding nothing). A stuck change of the name
// does not hold back an insert that refers to the user: a rotation in flight (FOR SHARE) holds
// the one and not the other. By default, against any call.
function held(gates: RowGates, state: RowState, strength: RowLockStrength = 3): boolean {
  const now = performance.now();
  for (const call of state.running) if (call.atHand && call.strength <= strength && now - call.startedAt >= gates.heldAfterMs) return true;
  return false;
}

// A look at the row that cannot be made this soon (no connection free) finds nothing.
const lookWithinMs = 1_000;

function callEnded(gates: RowGates, row: string, state: RowState, failedForLock: unknown): void {
  if (state.looking) return;
  if (state.waiting.length > 0 && failedForLock !== undefined) {
    state.looking = true;
    void settleAfterLockFailure(gates, row, state, failedForLock);
    return;
  }
  // A call that ended well, or failed otherwise (before its connection, say), says nothing of
  // another that still holds the row.
  letGo(gates, state, takeWaiting(state, (waiter) => !held(gates, state, waiter.strength)));
  forgetIfIdle(gates, row, state);
}

// After a call failed for the row's lock: the row is looked at with the lock each waiting call
// takes, the strongest first (one free for it is free for every weaker one), until each waiting
// call, those that came during the looks included, is either let go (its lock free) or failed
// (its lock still held, or not looked at within a second). The call ahead failed a moment ago,
// and nothing else says the row was let go since: a key-share holder (a transaction that
// inserted a row referring to it) blocks a slug change, and let go, thirty of them each waited
// their lock_timeout on a connection of their own, the pool's every one.
async function settleAfterLockFailure(gates: RowGates, row: string, state: RowState, failedForLock: unknown): Promise<void> {
  let free = -1;
  const heldFor = new Set<RowLockStrength>();
  for (;;) {
    // A copy: a waiter that gives up (waitMs) leaves state.waiting during a look.
    const undecided = state.waiting.filter((waiter) => waiter.strength > free && !heldFor.has(waiter.strength));
    if (undecided.length === 0) break;
    const strongest = undecided.reduce((most, waiter) => (waiter.strength > most.strength ? waiter : most));
    if (await lookedAt(strongest.look)) free = strongest.strength;
    else heldFor.add(strongest.strength);
  }
  state.looking = false;
  letGo(gates, state, takeWaiting(state, (waiter) => waiter.strength <= free));
  const { lockTimeoutMs, statementTimeoutMs, limit } = failedForLock as Partial<LockNotAvailableError>;
  for (const waiter of state.waiting.splice(0)) {
    waiter.fail(new LockNotAvailableError({ cause: failedForLock, lockTimeoutMs, statementTimeoutMs, limit, behindCallForRow: true }));
  }
  forgetIfIdle(gates, row, state);
}

// Takes the waiting calls that `chosen` picks out of the row's queue, in their order.
// (Each asked once: `held` reads the clock.)
function takeWaiting(state: RowState, chosen: (waiter: Waiter) => boolean): Waiter[] {
  const taken: Waiter[] = [];
  const left: Waiter[] = [];
  for (const waiter of state.waiting) (chosen(waiter) ? taken : left).push(waiter);
  state.waiting = left;
  return taken;
}

// Whether the row's lock could be taken at once: false where it could not, or the look could
// not be made within lookWithinMs.
function lookedAt(lookAtRow: () => Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), lookWithinMs);
    Promise.resolve()
      .then(lookAtRow)
      .then(
        () => true,
        () => false,
      )
      .then((free) => {
        clearTimeout(timer);
        resolve(free);
      });
  });
}

// Each let go with a connection at hand while idle ones last: they go at once, together.
function letGo(gates: RowGates, state: RowState, waiting: Waiter[]): void {
  let idle = gates.idleConnections();
  for (const waiter of waiting) {
    const call = begun(idle-- > 0, waiter.strength);
    state.running.add(call);
    waiter.go(call);
  }
}

function forgetIfIdle(gates: RowGates, row: string, state: RowState): void {
  if (state.running.size === 0 && state.waiting.length === 0 && !state.looking) gates.rows.delete(row);
}

// Waits for a call of the row to end (and the row to be let go), at most the gates' waitMs.
function waitAtRow(gates: RowGates, row: string, state: RowState, strength: RowLockStrength, look: () => Promise<unknown>): Promise<Call> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const waiter: Waiter = {
      strength,
      look,
      go: (call) => {
        clearTimeout(timer);
        resolve(call);
      },
      fail: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    };
    const timer = setTimeout(() => {
      const at = state.waiting.indexOf(waiter);
      if (at >= 0) state.waiting.splice(at, 1);
      forgetIfIdle(gates, row, state);
      reject(gates.timedOut(Math.round(performance.now() - started)));
    }, gates.waitMs);
    state.waiting.push(waiter);
  });
}
