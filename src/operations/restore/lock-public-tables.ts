import type * as pg from 'pg';
import { migrationLockKey } from '../../migrations/migration-lock.js';

// The tables and partitioned tables of public: what the services' queries take locks on,
// and what emptying the schema drops first. By name, one order every time. (PostgreSQL locks
// no foreign table: a foreign table waits with its drop, as before.)
// Only those the role may lock (LOCK TABLE … ACCESS EXCLUSIVE needs UPDATE, DELETE or
// TRUNCATE): another role's table in public (a superuser's) is the schema owner's to drop,
// not to lock, and waits with its drop, as before.
const tablesQuery = `
  SELECT pg_catalog.format('public.%I', c.relname) AS name
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
     AND pg_catalog.has_table_privilege(c.oid, 'UPDATE, DELETE, TRUNCATE')
   ORDER BY c.relname`;

/**
 * Takes the migration lock (a run of migrations, from whichever host, holds it for the run),
 * then every table of `public` in ACCESS EXCLUSIVE mode, in one statement that waits at most
 * `lockTimeoutMs` for them all (PostgreSQL's lock_timeout bounds each table's wait on its own:
 * the statement's own time bounds the whole), then puts the transaction's bounds back for the
 * rest of the restore: the lock timeout to `restoreLockTimeoutMs`, the statement timeout to the
 * session's own. Run in the restore's transaction before it empties the schema: with the
 * tables held, the drops that follow wait for nobody. Each table's wait otherwise came with
 * the drops, one after another, each holding the tables dropped before it: a long reader of a
 * late table kept the services' queries of every earlier one queued for the whole (30 s) wait.
 * A wait that runs out fails with SQLSTATE 55P03 (its own lock timeout, or the statement's
 * time, said as one), for the caller to roll back and try again (`withLockRetries`).
 *
 * @example
 * await lockPublicTables(client, 100, 30_000, 1_800_000)
 */
export async function lockPublicTables(client: pg.ClientBase, lockTimeoutMs: number, restoreLockTimeoutMs: number, restoreStatementTimeoutMs: number): Promise<void> {
  const attempt = Math.max(1, Math.round(lockTimeoutMs));
  // 57014: the statement's time ran out while it waited, what it waited for not all free: a
  // lock wait that ran out, as PostgreSQL's own lock timeout says it (55P03).
  const outOfTime = (what: string) => (error: unknown) => {
    if ((error as { code?: string }).code !== '57014') throw error;
    throw Object.assign(new Error(`${what} within ${attempt} ms`), { code: '55P03', cause: error });
  };
  await client.query(`SET LOCAL lock_timeout = ${attempt}; SET LOCAL statement_timeout = ${attempt}`);
  // The migration lock first, as a migration run takes it before its tables: between two of a
  // run's files no table is held, and a restore that came in there left the run's next file to
  // fail on the restored schema, with the file before it recorded as applied on top of it. And
  // a run started meanwhile waits for the restore's COMMIT, naming it.
  await client.query('SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)', [migrationLockKey]).catch(outOfTime('the migration lock was not free'));
  const { rows } = await client.query<{ name: string }>(tablesQuery);
  if (rows.length > 0) {
    await client.query(`LOCK TABLE ${rows.map((row) => row.name).join(', ')} IN ACCESS EXCLUSIVE MODE`).catch(outOfTime('the tables of public were not all free'));
  }
  await client.query(
    `SET LOCAL lock_timeout = ${Math.max(1, Math.round(restoreLockTimeoutMs))}; SET LOCAL statement_timeout = ${Math.max(1, Math.round(restoreStatementTimeoutMs))}`,
  );
}
