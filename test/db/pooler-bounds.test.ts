import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { ConnectionError, QueryCanceledError } from '../../src/errors.js';
import { withClient } from '../../src/db/with-client.js';
import { eventually } from '../support/eventually.js';
import { type PgBouncer, pgBouncerVersions, startPgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { clearTestRoleBounds, setTestRoleBounds } from '../support/role-bounds.js';
import { useTestDatabase } from '../support/test-database.js';

// Behind a transaction-mode pooler the pool's startup bounds do not reach the server: PgBouncer
// refuses them (08P01), and the pool connects without them, or, told to ignore them
// (ignore_startup_parameters), drops them without a word. Either way the bounds are the role's
// defaults (setup --admin writes them for the application role), and the pool learns them from
// each new connection: it says which are missing, and its errors name the one that fired.
const testDb = useTestDatabase();
const installed = toolsAvailable([pgBouncerVersions['1.18']], 'the pooler bounds test');
const startupBounds = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'];
const missing = 'the role has no default for statement_timeout, lock_timeout, idle_in_transaction_session_timeout';

describe.skipIf(!installed)('a pool behind PgBouncer whose role has no bounds of its own', () => {
  let refusing: PgBouncer;
  let ignoring: PgBouncer;
  beforeAll(async () => {
    [refusing, ignoring] = await Promise.all([
      startPgBouncer({ serverUrl: inject('serverUrl') }),
      startPgBouncer({ serverUrl: inject('serverUrl'), ignoreStartupParameters: startupBounds }),
    ]);
  });
  afterAll(async () => Promise.all([refusing?.stop(), ignoring?.stop()]));

  it.each([
    ['refuses the bounds as startup parameters', () => refusing],
    ['ignores the bounds as startup parameters (ignore_startup_parameters)', () => ignoring],
  ])('serves every call when the pooler %s, and says once, through onPoolError, which bounds are missing', async (_, bouncer) => {
    const poolErrors: string[] = [];
    const db = createDb(
      { databaseUrl: bouncer().url(testDb.directUrl), maxConnections: 3, minConnections: 0 },
      { onPoolError: (m) => poolErrors.push(m) },
    );
    try {
      const results = await Promise.all(Array.from({ length: 3 }, () => sql<{ one: number }>`SELECT 1 AS one`.execute(db)));
      expect(results.map(({ rows }) => rows)).toEqual([[{ one: 1 }], [{ one: 1 }], [{ one: 1 }]]);
      await eventually(() => poolErrors.length > 0, 'the pool reports the missing bounds');
      expect(poolErrors).toEqual([expect.stringContaining(missing)]);
      // What to do, and what to do where it was done already: the pooler's server
      // connections from before it keep their bounds until it opens new ones.
      expect(poolErrors[0]).toContain('Run setup --admin with DB_APP_USER');
      expect(poolErrors[0]).toContain("where it ran already, the pooler's server connections predate it");
      expect(poolErrors[0]).toContain('PgBouncer: RECONNECT on its admin console');
    } finally {
      await db.destroy();
    }
  });

  it('says so with DB_PREPARED_STATEMENTS=off too', async () => {
    const poolErrors: string[] = [];
    const db = createDb(
      { databaseUrl: ignoring.url(testDb.directUrl), maxConnections: 1, minConnections: 0, preparedStatements: 'off' },
      { onPoolError: (m) => poolErrors.push(m) },
    );
    try {
      await sql`SELECT 1`.execute(db);
      await eventually(() => poolErrors.length > 0, 'the pool reports the missing bounds');
      expect(poolErrors).toEqual([expect.stringContaining(missing)]);
    } finally {
      await db.destroy();
    }
  });
});

describe.skipIf(!installed)('a pool behind a PgBouncer that ignores its startup bounds, whose role has bounds of its own', () => {
  let ignoring: PgBouncer;
  const roleBounds = { statementTimeoutMs: 300, lockTimeoutMs: 250, idleInTransactionTimeoutMs: 5_000 };
  beforeAll(async () => {
    ignoring = await startPgBouncer({ serverUrl: inject('serverUrl'), ignoreStartupParameters: startupBounds });
    await setTestRoleBounds(testDb.directUrl, roleBounds);
  });
  afterAll(async () => {
    await ignoring?.stop();
    // The other describes of this file expect a role without these bounds.
    await clearTestRoleBounds(testDb.directUrl);
  });

  it("names the role's statement_timeout, not the pool's dropped one, when it cancels a statement", async () => {
    const poolErrors: string[] = [];
    // The pool's own bound (5 s) never reaches the server: the role's 300 ms fires.
    const db = createDb(
      { databaseUrl: ignoring.url(testDb.directUrl), maxConnections: 1, minConnections: 0, statementTimeoutMs: 5_000 },
      { onPoolError: (m) => poolErrors.push(m) },
    );
    try {
      const error = await sql`SELECT pg_sleep(3)`.execute(db).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryCanceledError);
      expect(error).toMatchObject({ reason: 'statement_timeout', statementTimeoutMs: roleBounds.statementTimeoutMs });
      expect(poolErrors).toEqual([]);
    } finally {
      await db.destroy();
    }
  });
});

describe.skipIf(!installed)("a pool behind a PgBouncer that ignores its startup bounds, whose role's statement_timeout is longer than the pool's", () => {
  let ignoring: PgBouncer;
  // Longer than the pool's whole call deadline below: as setup --admin leaves it when the
  // release ran with another DB_STATEMENT_TIMEOUT than the service.
  const roleBounds = { statementTimeoutMs: 1_500, lockTimeoutMs: 250, idleInTransactionTimeoutMs: 5_000 };
  beforeAll(async () => {
    await setTestRoleBounds(testDb.directUrl, roleBounds);
    ignoring = await startPgBouncer({ serverUrl: inject('serverUrl'), ignoreStartupParameters: startupBounds });
  });
  afterAll(async () => {
    await ignoring?.stop();
    await clearTestRoleBounds(testDb.directUrl);
  });

  it("waits for a statement as long as the role's bound allows: the call deadline follows the bound the session has", async () => {
    // The pool's own: 100 ms, and a deadline of 600 ms, which a deadline left as configured
    // would cut a 1 s statement short with, as a retryable ConnectionError, while the server
    // ran it on for nobody.
    const db = createDb({ databaseUrl: ignoring.url(testDb.directUrl), maxConnections: 1, minConnections: 0, statementTimeoutMs: 100, lockTimeoutMs: 50, callDeadlineMs: 600 });
    try {
      const { rows } = await sql<{ slept: string }>`SELECT pg_sleep(1)::text AS slept`.execute(db);
      expect(rows).toEqual([{ slept: '' }]);
      // The role's bound still ends a longer one, named as the bound that fired.
      const error = await sql`SELECT pg_sleep(5)`.execute(db).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryCanceledError);
      expect(error).toMatchObject({ reason: 'statement_timeout', statementTimeoutMs: roleBounds.statementTimeoutMs });
    } finally {
      await db.destroy();
    }
  });

  // A session whose bound is longer than the pool learned (here lifted for one transaction; a
  // role's raised after the pool asked, or a SET another client of the pooler left) runs past
  // the call deadline. The pool gives the call up, and the statement is cancelled on the server
  // too: closing the connection alone stops a statement only where the server checks its client
  // (client_connection_check_interval, which setup --admin gives the application role, and a
  // role set up otherwise may lack; lifted here too), and a write the caller then retried would
  // be applied twice.
  it('cancels on the server a statement whose call it gave up at the deadline', async () => {
    const db = createDb({ databaseUrl: ignoring.url(testDb.directUrl), maxConnections: 1, minConnections: 0, statementTimeoutMs: 100, lockTimeoutMs: 50, callDeadlineMs: 600 });
    const tag = `kw-cancelled-${randomBytes(4).toString('hex')}`;
    try {
      const error = await db
        .transaction()
        .execute(async (trx) => {
          await sql`SET LOCAL statement_timeout = 0; SET LOCAL client_connection_check_interval = 0`.execute(trx);
          await sql`SELECT pg_sleep(30) /* ${sql.raw(tag)} */`.execute(trx);
        })
        .catch((e: unknown) => e);

      expect(error).toBeInstanceOf(ConnectionError);
      expect(error).toMatchObject({ reason: 'deadline' });
      const running = async () =>
        withClient(testDb.directUrl, async (client) =>
          Number((await client.query("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1", [`%/* ${tag} */%`])).rows[0].n),
        );
      await expect.poll(running, { timeout: 5_000 }).toBe(0);
    } finally {
      await db.destroy();
    }
  });
});
