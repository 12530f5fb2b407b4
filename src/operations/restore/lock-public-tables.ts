import type * as pg from 'pg';

// The tables, partitioned tables and foreign tables of public: what the services' queries
// take locks on, and what emptying the schema drops first. By name, one order every time.
// Only those the role may lock (LOCK TABLE … ACCESS EXCLUSIVE needs UPDATE, DELETE or
// TRUNCATE): another role's table in public (a superuser's) is the schema owner's to drop,
// not to lock, and waits with its drop, as before.
const tablesQuery = `
  SELECT pg_catalog.format('public.%I', c.relname) AS name
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p', 'f')
     AND pg_catalog.has_table_privilege(c.oid, 'UPDATE, DELETE, TRUNCATE')
   ORDER BY c.relname`;

/**
 * Takes every table of `public` in ACCESS EXCLUSIVE mode, in one statement, waiting at most
 * `lockTimeoutMs` for them all, then puts the transaction's lock timeout back to
 * `restoreLockTimeoutMs` for the rest of the restore. Run in the restore's transaction before
 * it empties the schema: with the tables held, the drops that follow wait for nobody. Each
 * table's wait otherwise came with the drops, one after another, each holding the tables
 * dropped before it: a long reader of a late table kept the services' queries of every earlier
 * one queued for the whole (30 s) wait. A wait that runs out fails with SQLSTATE 55P03, for the
 * caller to roll back and try again (`withLockRetries`).
 *
 * @example
 * await lockPublicTables(client, 100, 30_000)
 */
export async function lockPublicTables(client: pg.ClientBase, lockTimeoutMs: number, restoreLockTimeoutMs: number): Promise<void> {
  const { rows } = await client.query<{ name: string }>(tablesQuery);
  if (rows.length === 0) return;
  await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
  await client.query(`LOCK TABLE ${rows.map((row) => row.name).join(', ')} IN ACCESS EXCLUSIVE MODE`);
  await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(restoreLockTimeoutMs))}`);
}
