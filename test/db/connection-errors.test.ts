import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { CamelCasePlugin, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, poolOf, tunedPoolOf } from '../../src/db/create-db.js';
import { settlesWithin } from '../../src/db/settles-within.js';
import { ConnectionError, DbError, isRetryable, PoolClosedError, ValidationError } from '../../src/errors.js';
import { currentHolder } from '../../src/migrations/migration-lock.js';
import { migrate, migrationStatus } from '../../src/migrations/migrator.js';
import { offlineDb } from '../support/offline-db.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { eventually } from '../support/eventually.js';
import { startFakePostgres } from '../support/fake-postgres.js';
import { newUser } from '../support/factories.js';
import { createObservedDatabase } from '../support/observed-database.js';
import type { TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
let observer: pg.Client;
let remove: () => Promise<void>;

beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
afterAll(() => remove());

/** A port of 127.0.0.1 that nothing listens on: bound once by us, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function unreachableUrl(): Promise<string> {
  const url = new URL(database.url);
  url.hostname = '127.0.0.1';
  url.port = String(await closedPort());
  url.password = 'do-not-echo-this-password';
  return url.toString();
}

const uniqueName = () => `conn-test-${randomBytes(4).toString('hex')}`;

/** The pid of the one backend of `applicationName` whose state matches, once there is one. */
async function backendOf(applicationName: string, condition: string): Promise<number> {
  let pid: number | undefined;
  await eventually(async () => {
    const { rows } = await observer.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${condition}`,
      [applicationName],
    );
    pid = rows[0]?.pid;
    return pid !== undefined;
  }, `a backend of ${applicationName} where ${condition}`);
  return pid!;
}

function expectConnectionError(error: unknown, reason: string | RegExp): void {
  expect(error).toBeInstanceOf(ConnectionError);
  expect((error as ConnectionError).reason).toMatch(reason);
  expect((error as ConnectionError).retryable).toBe(true);
  expect(isRetryable(error)).toBe(true);
  expect((error as Error).cause).toBeDefined();
}

describe('a refused connection (ECONNREFUSED)', () => {
  it('is a retryable ConnectionError on the Kysely path, the direct path, a transaction and ready(), with no password in it', async () => {
    const url = await unreachableUrl();
    const starting = createDb({ databaseUrl: url, minConnections: 1, acquireTimeoutMs: 5_000 }, { onPoolError: () => undefined });
    const notReady = await poolOf(starting).ready().catch((e: unknown) => e);
    await starting.destroy();
    const db = createDb({ databaseUrl: url, minConnections: 0, acquireTimeoutMs: 5_000 });
    try {
      const failures = await Promise.all([
        notReady,
        sql`SELECT 1`.execute(db).catch((e: unknown) => e),
        users.findById(db, '01890000-0000-7000-8000-000000000000').catch((e: unknown) => e),
        db.transaction().execute(async (trx) => sql`SELECT 1`.execute(trx)).catch((e: unknown) => e),
      ]);
      for (const failure of failures) {
        expectConnectionError(failure, 'ECONNREFUSED');
        expect(String(failure) + JSON.stringify(failure)).not.toContain('do-not-echo-this-password');
      }
    } finally {
      await db.destroy();
    }
  });

  it('is a retryable ConnectionError from the migrator too, on its lock connection and its own', async () => {
    const url = await unreachableUrl();
    const failures = await Promise.all([migrate({ databaseUrl: url }).catch((e: unknown) => e), migrationStatus({ databaseUrl: url }).catch((e: unknown) => e)]);
    for (const failure of failures) expectConnectionError(failure, 'ECONNREFUSED');
  });
});

describe('a file the connection needs that does not exist', () => {
  it('is a retryable ConnectionError for a Unix socket nobody listens on', async () => {
    const url = new URL(database.url);
    url.search = `?host=${encodeURIComponent(`/nonexistent-kw-${randomBytes(3).toString('hex')}`)}`;
    const db = createDb({ databaseUrl: url.toString(), minConnections: 0, acquireTimeoutMs: 5_000 });
    try {
      expectConnectionError(await users.findById(db, '01890000-0000-7000-8000-000000000000').catch((e: unknown) => e), 'ENOENT');
    } finally {
      await db.destroy();
    }
  });

  // A deployment mistake (a certificate not mounted): no retry brings it, and ready() says so
  // with a typed error rather than pg's own.
  it('is a DbError that is not retryable for a certificate the URL names, from ready() and from a call', async () => {
    const url = new URL(database.url);
    url.search = `?sslmode=verify-full&sslrootcert=${encodeURIComponent(`/nonexistent-kw-${randomBytes(3).toString('hex')}/ca.pem`)}`;
    const starting = createDb({ databaseUrl: url.toString(), minConnections: 1, acquireTimeoutMs: 5_000 }, { onPoolError: () => undefined });
    const notReady = await poolOf(starting).ready().catch((e: unknown) => e);
    await starting.destroy();
    const db = createDb({ databaseUrl: url.toString(), minConnections: 0, acquireTimeoutMs: 5_000 });
    try {
      const failures = [notReady, await users.findById(db, '01890000-0000-7000-8000-000000000000').catch((e: unknown) => e)];
      for (const failure of failures) {
        expect(failure).toBeInstanceOf(DbError);
        expect(failure).not.toBeInstanceOf(ConnectionError);
        expect(isRetryable(failure)).toBe(false);
        expect((failure as Error).message).toContain('ca.pem');
      }
    } finally {
      await db.destroy();
    }
  });
});

describe('a server that accepts but never answers the login', () => {
  it('fails a call after the connect timeout, well before the acquire timeout, with a retryable ConnectionError that says so', async () => {
    const silent = await startFakePostgres('nothing');
    const url = new URL(database.url);
    url.port = String(silent.port);
    url.password = 'do-not-echo-this-password';
    const db = createDb({ databaseUrl: url.toString(), minConnections: 0, connectTimeoutMs: 300, acquireTimeoutMs: 20_000 });
    try {
      // Without a connect timeout of its own, the pool used the acquire timeout for the login too.
      const error = await sql`SELECT 1`.execute(db).catch((e: unknown) => e);
      expectConnectionError(error, 'connect-timeout');
      expect((error as Error).message).toContain('connect timeout of 300 ms');
      // Which server was silent, as a refused connection says it.
      expect(error).toMatchObject({ server: `127.0.0.1:${silent.port}` });
      expect((error as Error).message).toContain(`The database connection to 127.0.0.1:${silent.port} failed (connect-timeout`);
      expect(String(error) + JSON.stringify(error)).not.toContain('do-not-echo-this-password');
    } finally {
      await db.destroy();
      await silent.close();
    }
  });
});

describe('a connection the server terminates (57P01)', () => {
  it('during a query on the Kysely path is a retryable ConnectionError, and the next query gets a live connection', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 0, applicationName });
    try {
      const sleeping = sql`SELECT pg_sleep(60)`.execute(db).catch((e: unknown) => e);
      const pid = await backendOf(applicationName, "state = 'active' AND query LIKE '%pg_sleep%'");
      await observer.query('SELECT pg_terminate_backend($1)', [pid]);
      // pg reports the server's 57P01 or, when the socket closes first, that the connection ended.
      expectConnectionError(await sleeping, /^(57P01|terminated)$/);
      expect(await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db)).toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await db.destroy();
    }
  });

  it('during a prepared statement on the direct path is a retryable ConnectionError, and the retry succeeds', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 0, applicationName });
    const user = await newUser(db);
    await observer.query('BEGIN');
    try {
      // The issue statement locks the user row FOR SHARE: it waits behind this lock.
      await observer.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [user.id]);
      const issuing = refreshTokens.issue(db, { userId: user.id }).catch((e: unknown) => e);
      const pid = await backendOf(applicationName, "wait_event_type = 'Lock'");
      await observer.query('SELECT pg_terminate_backend($1)', [pid]);
      expectConnectionError(await issuing, /^(57P01|terminated)$/);
      await observer.query('ROLLBACK');
      // The broken connection is discarded, not handed to the retry.
      await expect(refreshTokens.issue(db, { userId: user.id })).resolves.toMatchObject({ familyId: expect.any(String) });
    } finally {
      await observer.query('ROLLBACK');
      await db.destroy();
    }
  });

  it('between two queries of a transaction fails the next query with a ConnectionError', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 0, applicationName });
    try {
      const failed = await db
        .transaction()
        .execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
          // With a timeout, pg_terminate_backend returns only once the backend has exited.
          const { rows: done } = await observer.query<{ ok: boolean }>('SELECT pg_terminate_backend($1, 10000) AS ok', [rows[0]!.pid]);
          expect(done[0]!.ok).toBe(true);
          await sql`SELECT 1`.execute(trx);
        })
        .catch((e: unknown) => e);
      expectConnectionError(failed, /^(57P01|terminated|EPIPE|ECONNRESET)$/);
      expect(await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db)).toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await db.destroy();
    }
  });
});

describe("a service's onPoolError that throws", () => {
  it('neither ends the process nor fails a caller: the pool reports the lost connection, refills and serves', async () => {
    const applicationName = uniqueName();
    const reported: string[] = [];
    const db = createDb(
      { databaseUrl: database.url, maxConnections: 2, minConnections: 1, applicationName },
      {
        onPoolError: (message) => {
          reported.push(message);
          throw new Error('the logging service is down');
        },
      },
    );
    try {
      await poolOf(db).ready();
      // An idle pooled connection lost: pg-pool's 'error' event calls the listener.
      await observer.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
      await eventually(() => reported.includes('an idle database connection was lost'), 'the pool reported the lost connection');
      await expect(sql<{ one: number }>`SELECT 1 AS one`.execute(db)).resolves.toMatchObject({ rows: [{ one: 1 }] });
    } finally {
      await db.destroy();
    }
  });
});

// The commands' own connections, past their first check: short reads get a round trip's
// deadline (10 s), as the pool's calls get theirs.
describe('a server that lets the login in, then never answers', () => {
  it("fails migrationStatus with a retryable ConnectionError at its deadline, and leaves the migration lock's holder unnamed", async () => {
    const server = await startFakePostgres('login, then nothing');
    const url = `postgresql://u:p@127.0.0.1:${server.port}/db`;
    try {
      const [status, holder] = await Promise.all([migrationStatus({ databaseUrl: url }).catch((e: unknown) => e), currentHolder(url)]);
      expect(status).toBeInstanceOf(ConnectionError);
      expect(status).toMatchObject({ reason: 'deadline', retryable: true });
      expect((status as Error).message).toContain('no answer to the look for the migrations table within 10000 ms');
      expect(holder).toBeUndefined();
    } finally {
      await server.close();
    }
  });
});

describe('a new connection whose check is never answered', () => {
  it('is closed at the call deadline, not left idle in the pool for the next caller', async () => {
    const server = await startFakePostgres('login, then nothing');
    const reported: string[] = [];
    const db = createDb(
      {
        databaseUrl: `postgresql://u:p@127.0.0.1:${server.port}/db`,
        minConnections: 1,
        statementTimeoutMs: 200,
        lockTimeoutMs: 100,
        callDeadlineMs: 500,
      },
      { onPoolError: (message) => reported.push(message) },
    );
    try {
      // The refill opens it, and no caller ever checks it out.
      await eventually(
        () => reported.includes('a call got no answer within its deadline; its connection was closed'),
        'the pool closed the connection whose check got no answer',
      );
    } finally {
      await db.destroy();
      await server.close();
    }
  });
});

describe('a storm of terminated connections under load', () => {
  it('fails calls only with retryable ConnectionErrors, and the pool serves again afterwards', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, maxConnections: 5, minConnections: 2, applicationName }, { onPoolError: () => undefined });
    const user = await newUser(db);
    const kills = 25;
    let killed = 0;
    let stop = false;
    const failures: unknown[] = [];
    let successes = 0;
    // Ten workers mix the Kysely path, the direct path and transactions, until the killer is done.
    const worker = async (n: number) => {
      while (!stop) {
        try {
          if (n % 3 === 0) await users.findById(db, user.id);
          else if (n % 3 === 1) await sql`SELECT pg_sleep(0.002)`.execute(db);
          else await db.transaction().execute(async (trx) => {
            await sql`SELECT 1`.execute(trx);
            await users.getRoles(trx, user.id);
          });
          successes += 1;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const workers = Array.from({ length: 10 }, (_, n) => worker(n));
    try {
      while (killed < kills) {
        const { rows } = await observer.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM (
             SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle' LIMIT 1) AS busy`,
          [applicationName],
        );
        killed += rows[0]!.n;
      }
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(failures.length).toBeGreaterThan(0);
    const notConnectionErrors = failures.filter((failure) => !(failure instanceof ConnectionError));
    expect(notConnectionErrors.map(String)).toEqual([]);
    expect(failures.every(isRetryable)).toBe(true);
    expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
    await db.destroy();
  });
});

describe('the ended pool', () => {
  it('rejects ready() with PoolClosedError, whether ended before or while waiting', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 1 });
    const waiting = poolOf(db).ready().catch((e: unknown) => e);
    const ending = poolOf(db).end();
    expect(await waiting).toBeInstanceOf(PoolClosedError);
    await ending;
    await expect(poolOf(db).ready()).rejects.toBeInstanceOf(PoolClosedError);
    await db.destroy();
  });

  // pg-pool's end() leaves the checkouts queued behind a busy pool waiting: each failed only
  // at the acquire timeout, as a PoolTimeoutError, after destroy() had resolved (and a script
  // could exit with the call never settled, its timer unref'd).
  it('fails the calls queued for a connection when the db is destroyed with PoolClosedError, at once', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 1, maxConnections: 1, acquireTimeoutMs: 20_000 });
    await eventually(() => poolOf(db).pool.idleCount === 1, 'the only connection is open and idle');
    const busy = sql`SELECT pg_sleep(0.5)`.execute(db);
    await eventually(() => poolOf(db).pool.idleCount === 0 && poolOf(db).pool.waitingCount === 0, 'the only connection is busy');
    const queued = [sql`SELECT 1`.execute(db).catch((e: unknown) => e), users.findById(db, '00000000-0000-7000-8000-000000000000').catch((e: unknown) => e)];
    await eventually(() => poolOf(db).pool.waitingCount === 2, 'both calls wait for the connection');
    const started = performance.now();
    const destroyed = db.destroy();

    const errors = await Promise.all(queued);
    expect(errors.map((error) => error?.constructor.name)).toEqual(['PoolClosedError', 'PoolClosedError']);
    expect(performance.now() - started).toBeLessThan(10_000);
    await busy;
    await destroyed;
  });

  // The pool's own refill, its checkouts completing after the end began, reported "could not
  // refill the connection pool; retrying" to onPoolError (stderr by default) of a db destroyed
  // right after it was made: a false alarm on every short script.
  it('says nothing through onPoolError of a db destroyed while it opens its first connections', async () => {
    const reported: string[] = [];
    for (let attempt = 0; attempt < 5; attempt++) {
      const db = createDb({ databaseUrl: database.url, minConnections: 2, maxConnections: 4 }, { onPoolError: (message) => reported.push(message) });
      await eventually(() => poolOf(db).pool.totalCount > 0, 'the refill opens its connections');
      await db.destroy();
    }
    expect(reported).toEqual([]);
  });

  it('fails a checkout after end() with PoolClosedError', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    await poolOf(db).end();
    const error = await tunedPoolOf(db).connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PoolClosedError);
    expect(error).toBeInstanceOf(DbError);
    await db.destroy();
  });
});

// A call whose new connection logged in, its check still unanswered (the pool waits up to 2 s
// for it), when the db is destroyed: the connection was handed out after the end began, and
// Kysely's released it with a plain Error ("driver has already been destroyed"), a query
// function's as a DatabaseError, and the direct runner sent its statement and waited out the
// whole call deadline, destroy() with it.
describe('a call whose connection opens while the db is destroyed', () => {
  it.each([
    ['a Kysely query', (db: ReturnType<typeof createDb>) => sql`SELECT 1`.execute(db)],
    ['a query function', (db: ReturnType<typeof createDb>) => users.findById(db, '00000000-0000-7000-8000-000000000000')],
  ])('fails %s with PoolClosedError, and destroy() does not wait for its deadline', async (_name, call) => {
    const server = await startFakePostgres('login, then nothing');
    const db = createDb({ databaseUrl: `postgresql://u:p@127.0.0.1:${server.port}/db`, minConnections: 0, maxConnections: 1 }, { onPoolError: () => undefined });
    try {
      const outcome = call(db).catch((e: unknown) => e);
      await eventually(() => server.queries() > 0, "the new connection's check was sent");
      const destroyed = settlesWithin(db.destroy(), 5_000);

      const error = await outcome;
      expect(error).toBeInstanceOf(PoolClosedError);
      expect(await destroyed).toBe(true);
    } finally {
      await db.destroy();
      await server.close();
    }
  });
});

describe('poolOf', () => {
  it('refuses a Kysely that createDb did not make with a ValidationError naming db', () => {
    expect(() => poolOf(offlineDb)).toThrow(ValidationError);
    expect(() => poolOf(offlineDb)).toThrow(expect.objectContaining({ field: 'db' }));
  });

  // It handed out the pool's own checkout: a connection a service took there and queried had
  // no call deadline, and waited for ever (190 s seen) on a stalled server, its errors raw pg's.
  it("gives a service the pool's start-up wait, statistics, naming report and end, but no checkout", async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    try {
      const pool = poolOf(db);
      expect(Object.keys(pool).sort()).toEqual(['end', 'pool', 'ready', 'statementNaming']);
      // @ts-expect-error: no checkout in the public type either
      expect(pool.connect).toBeUndefined();
      expect(poolOf(db.withPlugin(new CamelCasePlugin()))).toBe(pool);
    } finally {
      await db.destroy();
    }
  });
});
