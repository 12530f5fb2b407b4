import { randomBytes } from 'node:crypto';
import { CamelCasePlugin, type Kysely, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, poolOf } from '../../src/db/create-db.js';
import type { CamelCasedDB } from '../../src/db/camel-cased-db.js';
import { ConnectionError, PoolClosedError, PoolTimeoutError, ValidationError } from '../../src/errors.js';
import { createObservedDatabase } from '../support/observed-database.js';
import type { TestDatabase } from '../support/test-database.js';
import { eventually } from '../support/eventually.js';

let database: TestDatabase;
let observer: pg.Client;
let remove: () => Promise<void>;

beforeAll(async () => ({ database, observer, remove } = await createObservedDatabase()));
afterAll(() => remove());

const uniqueName = () => `pool-test-${randomBytes(4).toString('hex')}`;

async function serverConnections(applicationName: string): Promise<number> {
  const { rows } = await observer.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
    [applicationName],
  );
  return rows[0]!.n;
}

describe('createDb', () => {
  it('opens the minimum connections at start-up and keeps them when the pool goes idle', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 2, idleTimeoutMs: 100, applicationName });
    try {
      await poolOf(db).ready();
      expect(await serverConnections(applicationName)).toBe(2);

      // Six transactions held open at once need six connections; count them while held.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const holders = Array.from({ length: 6 }, () =>
        db.transaction().execute(async (trx) => {
          await sql`SELECT 1`.execute(trx);
          await held;
        }),
      );
      await eventually(async () => (await serverConnections(applicationName)) === 6);
      release();
      await Promise.all(holders);
      const afterIdleTimers = new Promise((resolve) => setTimeout(resolve, 100));

      await eventually(async () => (await serverConnections(applicationName)) === 2);
      // pg-pool armed an idle timer (100 ms) for each of the six connections as it was released.
      // A timer of the same length armed after the last release fires after all of them (Node
      // runs timers of equal length in the order they were armed): by then every idle timer had
      // its chance to close a connection, and the two of the minimum must still be open.
      await afterIdleTimers;
      expect(poolOf(db).pool.totalCount).toBe(2);
      expect(await serverConnections(applicationName)).toBe(2);
    } finally {
      await db.destroy();
    }
  });

  it('recovers after the server drops its connections and refills to the minimum', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 2, applicationName }, { onPoolError: () => undefined });
    try {
      await poolOf(db).ready();
      const before = await observer.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      await observer.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
        applicationName,
      ]);

      await eventually(async () => {
        const { rows } = await observer.query<{ pid: number }>(
          'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
          [applicationName],
        );
        return rows.length === 2 && rows.every((row) => !before.rows.some((old) => old.pid === row.pid));
      });
      const { rows } = await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db);
      expect(rows).toEqual([{ ok: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('throws a PoolTimeoutError naming pool size and wait when no connection frees up, instead of hanging', async () => {
    const db = createDb({ databaseUrl: database.url, maxConnections: 1, minConnections: 0, acquireTimeoutMs: 300 });
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    try {
      const holder = db.transaction().execute(async (trx) => {
        await sql`SELECT 1`.execute(trx);
        await held;
      });
      await eventually(async () => poolOf(db).pool.idleCount === 0 && poolOf(db).pool.totalCount === 1);

      const started = Date.now();
      const error = await sql`SELECT 1`.execute(db).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(PoolTimeoutError);
      const timeout = error as PoolTimeoutError;
      expect(timeout.message).toMatch(/^Timed out after \d+ ms waiting for a database connection \(pool max 1, 1 in use/);
      expect(timeout.waitedMs).toBeGreaterThanOrEqual(295); // timers and clocks may differ by a millisecond or so
      expect(Date.now() - started).toBeLessThan(5_000);

      finish();
      await holder;
      const { rows } = await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db);
      expect(rows).toEqual([{ ok: 1 }]);
    } finally {
      finish();
      await db.destroy();
    }
  });

  it('survives the server dropping a connection in the middle of a transaction', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 1, applicationName });
    try {
      const failed = await db
        .transaction()
        .execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
          // With a timeout, pg_terminate_backend returns once the backend has exited: the
          // termination has happened between the two queries.
          await observer.query('SELECT pg_terminate_backend($1, 10000)', [rows[0]!.pid]);
          await sql`SELECT 1`.execute(trx);
        })
        .catch((e: unknown) => e);

      expect(failed).toBeInstanceOf(ConnectionError);
      const { rows } = await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db);
      expect(rows).toEqual([{ ok: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('closes every connection on destroy()', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 3, applicationName });
    await poolOf(db).ready();
    expect(await serverConnections(applicationName)).toBe(3);

    await db.destroy();

    await eventually(async () => (await serverConnections(applicationName)) === 0);
  });

  // A service wires CamelCasePlugin as `createDb().withPlugin(…)` and may shut down before its
  // first query: Kysely then skips its driver's destroy, and the pool's minimum connections
  // kept the process alive.
  it('closes every connection on destroy() of an instance derived from it, with no query run, and reaches the pool from it', async () => {
    const applicationName = uniqueName();
    const db = createDb({ databaseUrl: database.url, minConnections: 2, applicationName });
    const camel = db.withPlugin(new CamelCasePlugin()).withSchema('public');
    await poolOf(db).ready();
    expect(await serverConnections(applicationName)).toBe(2);

    await camel.destroy();

    await eventually(async () => (await serverConnections(applicationName)) === 0);
    await expect(poolOf(camel).ready()).rejects.toThrow(new PoolClosedError('the pool has been ended'));
  });

  // A service types its instance its own way (the README's CamelCasedDB, withTables for its own
  // tables): poolOf takes any of them, as it reaches the pool at run time; a transaction,
  // which has no pool of its own to give, is refused by the compiler (and at run time).
  it('reaches the pool from an instance of any table types derived from it, and refuses a transaction', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 0 });
    try {
      const camel = db.withPlugin(new CamelCasePlugin()) as unknown as Kysely<CamelCasedDB>;
      const withOwnTables = db.withTables<{ audit_log: { id: string } }>();
      expect(poolOf(camel)).toBe(poolOf(db));
      expect(poolOf(withOwnTables)).toBe(poolOf(db));
      await db.transaction().execute(async (trx) => {
        // @ts-expect-error a transaction has no pool of its own
        expect(() => poolOf(trx)).toThrow(ValidationError);
      });
    } finally {
      await db.destroy();
    }
  });

  it('rejects ready() once the pool has been destroyed, rather than reporting it ready', async () => {
    const db = createDb({ databaseUrl: database.url, minConnections: 1 });
    await db.destroy();
    await expect(poolOf(db).ready()).rejects.toThrow(new PoolClosedError('the pool has been ended'));
  });

  it('rejects ready() when the server cannot be reached', async () => {
    const unreachable = new URL(database.url);
    unreachable.port = '1';
    // The refusal comes at once; the wait's own bound is far off, so that a worker stalled for a
    // second on a busy machine cannot make it the timer that settles ready() (PoolNotReadyError).
    const db = createDb({ databaseUrl: unreachable.toString(), acquireTimeoutMs: 10_000 }, { onPoolError: () => undefined });
    try {
      await expect(poolOf(db).ready()).rejects.toBeInstanceOf(ConnectionError);
    } finally {
      await db.destroy();
    }
  });
});
