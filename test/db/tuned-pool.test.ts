import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { connectionLifetimeMs } from '../../src/db/connection-lifetime.js';
import { settlesWithin } from '../../src/db/settles-within.js';
import { createDb, poolOf, tunedPoolOf } from '../../src/db/create-db.js';
import { ConnectionError, PoolNotReadyError } from '../../src/errors.js';
import { eventually } from '../support/eventually.js';
import { startFakePostgres } from '../support/fake-postgres.js';
import { createObservedDatabase } from '../support/observed-database.js';
import type { TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
let observer: pg.Client;
let remove: () => Promise<void>;

beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
afterAll(() => remove());
// The worker runs other files after this one (isolate: false).
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
});

/** The pids of `applicationName`'s backends (those where `condition` holds), in order. */
async function backendsOf(applicationName: string, condition = 'true'): Promise<number[]> {
  const { rows } = await observer.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${condition} ORDER BY pid`,
    [applicationName],
  );
  return rows.map((row) => row.pid);
}

const lockWaiters = (applicationName: string) => backendsOf(applicationName, "wait_event_type = 'Lock'");

/**
 * A login event trigger (PostgreSQL 17) that holds `applicationName`'s logins on the advisory
 * lock `lock` while the test holds it and, with `fail`, fails the first of them or every one (a
 * sequence counts them: a failed login rolls back whatever else it wrote). Returns the test's clean-up:
 * it releases the test's locks before it ends the pool (whose end waits for a held login), and
 * drops the trigger even when ending the pool fails.
 */
async function holdLogins(applicationName: string, lock: number, options: { fail?: 'first' | 'every' } = {}) {
  const fail = {
    first: "IF nextval('login_attempts') = 1 THEN RAISE EXCEPTION 'this login fails'; END IF;",
    every: "PERFORM nextval('login_attempts'); RAISE EXCEPTION 'this login fails';",
    none: '',
  }[options.fail ?? 'none'];
  await observer.query(`
    CREATE SEQUENCE login_attempts;
    CREATE FUNCTION hold_login() RETURNS event_trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('application_name') = '${applicationName}' THEN
          PERFORM pg_advisory_xact_lock_shared(${lock});
          ${fail}
        END IF;
      END $$;
    CREATE EVENT TRIGGER hold_login ON login EXECUTE FUNCTION hold_login();`);
  return async (db: { destroy: () => Promise<void> }) => {
    try {
      await observer.query('SELECT pg_advisory_unlock_all()');
      await db.destroy();
    } finally {
      await observer.query('DROP EVENT TRIGGER hold_login; DROP FUNCTION hold_login(); DROP SEQUENCE login_attempts');
    }
  };
}

it('refills a min = max pool under load by opening only the missing connection, not by queueing behind busy ones', async () => {
  const applicationName = `refill-${randomBytes(4).toString('hex')}`;
  const poolErrors: string[] = [];
  const db = createDb(
    { databaseUrl: database.url, minConnections: 3, maxConnections: 3, acquireTimeoutMs: 1_000, applicationName },
    { onPoolError: (message) => poolErrors.push(message) },
  );
  const tuned = tunedPoolOf(db);
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

it("resolves ready() only once the refill's connection has logged in, not while it is still logging in", async () => {
  const applicationName = `slow-login-${randomBytes(4).toString('hex')}`;
  const lock = 4_242_002;
  const cleanUp = await holdLogins(applicationName, lock);
  const db = createDb({ databaseUrl: database.url, minConnections: 2, maxConnections: 2, applicationName });
  const tuned = tunedPoolOf(db);
  try {
    await tuned.ready();
    const [victim] = await backendsOf(applicationName);
    await observer.query('SELECT pg_advisory_lock($1)', [lock]);
    // An idle connection is lost: the pool starts a refill, whose login waits on the lock.
    await observer.query('SELECT pg_terminate_backend($1)', [victim]);
    await eventually(async () => (await lockWaiters(applicationName)).length === 1, 'the new connection waits in its login');

    let settled = false;
    const ready = tuned.ready({ timeoutMs: 10_000 }).finally(() => (settled = true));
    // ready() has had every chance to settle early: its own check, and the refill's next turn.
    await new Promise((resolve) => setImmediate(resolve));
    expect(await backendsOf(applicationName, "state = 'idle'")).toHaveLength(1);
    expect(settled).toBe(false);

    await observer.query('SELECT pg_advisory_unlock($1)', [lock]);
    await ready;
    expect(await backendsOf(applicationName, "state = 'idle'")).toHaveLength(2);
  } finally {
    await cleanUp(db);
  }
});

it("resolves ready() after a caller's own login failed while the pool counted it, by refilling then", async () => {
  const applicationName = `failed-login-${randomBytes(4).toString('hex')}`;
  const lock = 4_242_003;
  const cleanUp = await holdLogins(applicationName, lock, { fail: 'first' });
  await observer.query('SELECT pg_advisory_lock($1)', [lock]);
  const db = createDb({ databaseUrl: database.url, minConnections: 1, maxConnections: 2, applicationName });
  const tuned = tunedPoolOf(db);
  try {
    // The caller's checkout starts the pool's only login (before the pool's own refill runs,
    // which then finds the pool full), and ready() waits for that login.
    const checkout = tuned.connect().then(
      (client) => client.release(),
      (error: unknown) => error,
    );
    await eventually(async () => (await lockWaiters(applicationName)).length === 1, "the caller's connection waits in its login");
    const ready = tuned.ready({ timeoutMs: 10_000 });
    // Settled here too, so that a test failing before the last check leaves no unhandled rejection.
    ready.catch(() => undefined);

    await observer.query('SELECT pg_advisory_unlock($1)', [lock]);
    expect(await checkout).toMatchObject({ sqlState: 'P0001', message: expect.stringContaining('this login fails') });
    // Nothing else happens in the pool: before, ready() failed after its 10 s with PoolNotReadyError.
    await expect(ready).resolves.toBeUndefined();
    expect(await backendsOf(applicationName, "state = 'idle'")).toHaveLength(1);
  } finally {
    await cleanUp(db);
  }
});

it("backs refills off while the server refuses logins, through a refill that found a caller's login in flight, and afresh after a login", async () => {
  const applicationName = `backoff-${randomBytes(4).toString('hex')}`;
  const lock = 4_242_004;
  const cleanUp = await holdLogins(applicationName, lock, { fail: 'every' });
  let refillFailed = () => {};
  // Resolves once a refill has failed and has scheduled the next (after the report, in a promise job).
  const nextRefillFailure = () => new Promise<void>((resolve) => (refillFailed = () => setImmediate(resolve)));
  // Every setTimeout is fake from here on (the pool's, pg's, ready()'s): the test moves time
  // itself, so each refill starts exactly when it says, and waits only on events, queries and
  // eventually() (which waits in real time; expect.poll would move the fake clock on as it
  // waits). None of pg's own timeouts comes due in the second or so the test moves.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  const db = createDb(
    { databaseUrl: database.url, minConnections: 1, maxConnections: 2, applicationName },
    { onPoolError: (message) => message === 'could not refill the connection pool; retrying' && refillFailed() },
  );
  const tuned = tunedPoolOf(db);
  const logins = () => tuned.pool.totalCount;
  // The next refill starts after `delayMs` of the backoff, not a millisecond sooner. (Its login
  // fails, if it does, only once the test waits on something.)
  const refillStartsAfter = (delayMs: number) => {
    if (delayMs > 0) {
      vi.advanceTimersByTime(delayMs - 1);
      expect(logins()).toBe(0);
    }
    vi.advanceTimersByTime(delayMs > 0 ? 1 : 0);
    expect(logins()).toBe(1);
  };
  try {
    // The pool's first refill fails: the next one waits out the first step (200 ms).
    refillStartsAfter(0);
    await nextRefillFailure();

    // A caller's login is in flight, held by the trigger, when that refill comes due: the pool
    // counts the login, so the refill finds the pool full and opens nothing.
    await observer.query('SELECT pg_advisory_lock($1)', [lock]);
    const checkout = tuned.connect().then(
      (client) => client.release(),
      (error: unknown) => error,
    );
    await eventually(async () => (await lockWaiters(applicationName)).length === 1, "the caller's login waits on the lock");
    vi.advanceTimersByTime(200);
    expect(logins()).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));

    // The caller's login fails too. The server has taken no login since the backoff began, so
    // the refill after this failure waits out the backoff as well (before, the refill that
    // opened nothing had reset it, and this one started at once). It fails; the next waits 400 ms.
    await observer.query('SELECT pg_advisory_unlock($1)', [lock]);
    expect(await checkout).toMatchObject({ sqlState: 'P0001', message: expect.stringContaining('this login fails') });
    refillStartsAfter(200);
    await nextRefillFailure();

    // The server takes logins again.
    await observer.query('ALTER EVENT TRIGGER hold_login DISABLE');
    const ready = tuned.ready();
    refillStartsAfter(400);
    await ready;

    // A finished login showed that the server takes logins: when it refuses them once more, the
    // first failed refill waits out the first step again, not the third (800 ms).
    await observer.query('ALTER EVENT TRIGGER hold_login ENABLE');
    // The idle one: a backend whose login just failed may still be listed for a moment.
    const idle = await backendsOf(applicationName, "state = 'idle'");
    expect(idle).toHaveLength(1);
    const [connection] = idle;
    const removed = new Promise((resolve) => tuned.pool.once('remove', resolve));
    await observer.query('SELECT pg_terminate_backend($1)', [connection]);
    await removed;
    refillStartsAfter(0);
    await nextRefillFailure();
    refillStartsAfter(200);
  } finally {
    // Real timers first: ending the pool waits on its own. (A test that times out never gets
    // here: afterEach puts them back for the files after it.)
    vi.useRealTimers();
    await cleanUp(db);
  }
});

it('backs refills off while a pooler takes every login and drops the connection at its first statement, as PgBouncer does whose server is down', async () => {
  const pooler = await startFakePostgres('login, then hangs up');
  const lost: string[] = [];
  const db = createDb(
    { databaseUrl: `postgresql://app:secret@127.0.0.1:${pooler.port}/kennwilliamson`, minConnections: 2, maxConnections: 2 },
    { onPoolError: (message) => lost.push(message) },
  );
  try {
    // The pool keeps trying: the first two logins, then one more at least after the backoff's
    // first steps (100, 200 ms). A login alone proves nothing behind a pooler: before, each
    // finished login reset the backoff, and each connection lost before it answered was
    // replaced at once, some 900 logins a second through PgBouncer (about 9400 in 10 s).
    await eventually(() => pooler.logins() > 4, 'the pool logs in again after its connections are lost');
    const after = pooler.logins();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Within a second of that, at most the next steps of the backoff (800 ms, 1.6 s, … for each
    // of the two), not hundreds; and so as few lines said, one per connection lost.
    expect(pooler.logins() - after).toBeLessThan(10);
    expect(lost.length).toBeLessThan(20);
  } finally {
    await db.destroy();
    await pooler.close();
  }
});

it('draws each connection a lifetime between 80 % and 100 % of the maximum, so connections opened together retire apart', () => {
  expect(connectionLifetimeMs(1_000, () => 0)).toBe(800);
  expect(connectionLifetimeMs(1_000, () => 0.5)).toBe(900);
  expect(connectionLifetimeMs(1_000, () => 0.999_999)).toBe(1_000);
  const drawn = new Set(Array.from({ length: 20 }, () => connectionLifetimeMs(30 * 60_000)));
  expect(drawn.size).toBeGreaterThan(1);
});

it('retires connections after their lifetime and serves every call meanwhile from fresh ones', async () => {
  const applicationName = `lifetime-${randomBytes(4).toString('hex')}`;
  const db = createDb({ databaseUrl: database.url, minConnections: 2, maxConnections: 2, maxLifetimeMs: 300, applicationName });
  try {
    await poolOf(db).ready();
    const first = await backendsOf(applicationName);
    expect(first).toHaveLength(2);
    let calls = 0;
    await eventually(async () => {
      await sql`SELECT 1`.execute(db);
      calls += 1;
      const now = await backendsOf(applicationName);
      return now.length > 0 && now.every((pid) => !first.includes(pid));
    }, 'both first connections are replaced');
    expect(calls).toBeGreaterThan(0);
    await expect(poolOf(db).ready()).resolves.toBeUndefined();
  } finally {
    await db.destroy();
  }
});

it('refills a retired idle connection at once while the other is busy, not by queueing behind it', async () => {
  const applicationName = `lifetime-busy-${randomBytes(4).toString('hex')}`;
  const db = createDb({
    databaseUrl: database.url,
    minConnections: 2,
    maxConnections: 2,
    maxLifetimeMs: 400,
    acquireTimeoutMs: 1_000,
    applicationName,
  });
  const tuned = tunedPoolOf(db);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  try {
    await tuned.ready();
    const first = await backendsOf(applicationName);
    let busyPid = 0;
    let began!: () => void;
    const busy = new Promise<void>((resolve) => (began = resolve));
    const holding = db.transaction().execute(async (trx) => {
      busyPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0]!.pid;
      began();
      await held;
    });
    await busy;
    const idlePid = first.find((pid) => pid !== busyPid)!;
    // The idle connection is retired when its lifetime ends; the busy one stays until released.
    await eventually(async () => {
      const now = await backendsOf(applicationName);
      return !now.includes(idlePid) && now.includes(busyPid) && tuned.pool.totalCount === 2 && tuned.pool.idleCount === 1;
    }, 'the idle connection is replaced while the busy one is held');
    // A call now gets the fresh connection; one queued behind the busy one would time out.
    await expect(sql<{ ok: number }>`SELECT 1 AS ok`.execute(db)).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    release();
    await holding;
    await eventually(async () => !(await backendsOf(applicationName)).includes(busyPid), 'the busy connection is retired once released');
    await expect(tuned.ready()).resolves.toBeUndefined();
  } finally {
    release();
    await db.destroy();
  }
});

it('ends within a call deadline while the application still holds a connection with no call in flight, whose next call then fails', async () => {
  const applicationName = `held-${randomBytes(4).toString('hex')}`;
  const db = createDb({ databaseUrl: database.url, applicationName, minConnections: 1, maxConnections: 2, statementTimeoutMs: 500, lockTimeoutMs: 250, callDeadlineMs: 1_000 });
  // A connection held (db.connection(), outside a transaction, so that no
  // idle_in_transaction_session_timeout ends it) by a callback that awaits something else (an
  // HTTP call that hangs) when the service shuts down: it is handed back only when the callback returns.
  let release!: () => void;
  const elsewhere = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  const work = db
    .connection()
    .execute(async (connection) => {
      await sql`SELECT 1`.execute(connection);
      holding();
      await elsewhere;
      await sql`SELECT 2`.execute(connection);
    })
    .then(
      () => 'done',
      (error: unknown) => error,
    );
  await held;
  const destroyed = db.destroy().then(() => 'ended');

  // pg-pool's end alone waits for the callback, for ever; this one closes the connection once the
  // call deadline has passed.
  const first = await Promise.race([destroyed, work.then(() => 'the callback returned first')]);
  expect(first).toBe('ended');
  // Our side closed; the server notices a moment later.
  await eventually(async () => (await backendsOf(applicationName)).length === 0, 'the held connection is gone from the server');
  release();
  expect(await work).toMatchObject({ code: 'POOL_CLOSED' });
});

/** The sockets of the connections pg-pool has made so far (its own list). */
const socketsOf = (pool: pg.Pool) => (pool as unknown as { _clients: Array<{ connection: { stream: net.Socket } }> })._clients.map((client) => client.connection.stream);

it('ends only once a connection still logging in when destroy() was called has closed too, rather than leaving it open and unwatched', async () => {
  const db = createDb({ databaseUrl: database.url, applicationName: `late-${randomBytes(4).toString('hex')}`, minConnections: 0, maxConnections: 2 });
  // A checkout that is still logging in when the pool is ended.
  const checkout = tunedPoolOf(db)
    .connect()
    .then(
      (client) => {
        client.release();
        return 'connected';
      },
      (error: unknown) => error,
    );
  const [socket] = socketsOf(poolOf(db).pool);

  await db.destroy();

  expect(poolOf(db).pool.totalCount).toBe(0);
  expect(socket!.destroyed).toBe(true);
  await checkout;
});

it('ends at once after a login that pg itself gave up on (no password for a SCRAM server), whose socket it closes rather than leave to the server', async () => {
  const withoutPassword = new URL(database.url);
  withoutPassword.password = '';
  vi.stubEnv('PGPASSWORD', undefined);
  const db = createDb({ databaseUrl: withoutPassword.toString(), applicationName: `nopw-${randomBytes(4).toString('hex')}`, minConnections: 1, maxConnections: 1 });
  const pool = poolOf(db);
  await expect(pool.ready()).rejects.toThrow(/password/);
  const sockets = socketsOf(pool.pool);

  // Left open, the server would hold each such socket until its authentication_timeout (60 s), and end() with it.
  expect(await settlesWithin(db.destroy(), 10_000)).toBe(true);
  expect(sockets.every((socket) => socket.destroyed)).toBe(true);
});

// What ready() does on a pool of two against a fake pooler that takes every login: its failure,
// and how many logins the pooler took meanwhile.
async function readyBehind(answers: 'login, then hangs up' | 'login, then nothing', timeoutMs: number): Promise<{ error: unknown; logins: number }> {
  const pooler = await startFakePostgres(answers);
  const db = createDb(
    { databaseUrl: `postgresql://app:secret@127.0.0.1:${pooler.port}/kennwilliamson`, minConnections: 2, maxConnections: 2 },
    { onPoolError: () => undefined },
  );
  try {
    const error = await poolOf(db).ready({ timeoutMs }).then(() => undefined, (failure: unknown) => failure);
    return { error, logins: pooler.logins() };
  } finally {
    await db.destroy();
    await pooler.close();
  }
}

it('is not ready while a pooler takes the logins and drops each connection at its first statement: ready() fails with that loss', async () => {
  // Before, ready() resolved on the two logins, and the service started on a pool that could
  // not run a query (PgBouncer whose server is down does exactly this).
  const { error, logins } = await readyBehind('login, then hangs up', 5_000);
  expect(error).toBeInstanceOf(ConnectionError);
  expect(logins).toBeGreaterThan(0);
});

it('is not ready while the logins are taken and the first statement is never answered: PoolNotReadyError names none answering', async () => {
  // Past the pool's 2 s wait for a new connection's first answer, after which the connection
  // is in the pool all the same: before, ready() resolved there.
  const { error, logins } = await readyBehind('login, then nothing', 3_000);
  expect(error).toBeInstanceOf(PoolNotReadyError);
  expect((error as PoolNotReadyError).message).toMatch(/0 of its minimum 2 connection\(s\) open and answering/);
  expect(logins).toBeGreaterThanOrEqual(2);
});
