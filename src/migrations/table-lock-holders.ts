import { answeringWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { withClient } from '../db/with-client.js';
import type { BlockingSession } from '../blocking-session.js';
import { type BlockerRow, blockingSessionsOf, preparedTransactionState } from './lock-blockers.js';

// Every lock on the table that a read or a write of it waits for (SHARE and stronger), held
// or asked for by another session, with what pg_stat_activity says of it; and a prepared
// transaction's, which no session holds, by its gid and role. Asked of the lock manager for
// the table itself, not of one waiting backend: a pooler in between hides the server's pid.
const holdersSql = `
  WITH held AS (
    SELECT l.pid, l.virtualtransaction FROM pg_catalog.pg_locks l
     WHERE l.locktype = 'relation' AND l.relation = pg_catalog.to_regclass($1)
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
       AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
  )
  SELECT a.pid, coalesce(a.application_name, '') AS application_name,
         coalesce(a.state, 'not visible to this role') AS state, a.xact_start, coalesce(a.query, '') AS query
    FROM held JOIN pg_catalog.pg_stat_activity a ON a.pid = held.pid
   WHERE held.pid <> pg_catalog.pg_backend_pid()
  UNION ALL
  SELECT 0, '', ${preparedTransactionState}, p.prepared, ''
    FROM held JOIN pg_catalog.pg_prepared_xacts p ON held.virtualtransaction = '-1/' || p.transaction::pg_catalog.text
   WHERE held.pid IS NULL
   ORDER BY xact_start NULLS LAST, pid`;

/**
 * The sessions (and prepared transactions) that hold `table` against its readers and writers,
 * looked at from a connection of its own named `applicationName`, in one read-only transaction
 * whose names resolve in pg_catalog only: through a transaction pooler it leaves nothing on
 * the server connection it used. Their statements reduced to their shape, never their data.
 *
 * @example await tableLockHolders(url, '"public"."schema_migrations"', 'kennwilliamson-migrate-monitor')
 * // [{ pid: 4242, applicationName: 'kennwilliamson-restore', state: 'active', xactStart: …, query: 'COPY public.users …' }]
 */
export async function tableLockHolders(databaseUrl: string, table: string, applicationName: string): Promise<BlockingSession[]> {
  const rows = await withClient(
    databaseUrl,
    async (connection) => {
      const client = answeringWithin(connection, roundTripDeadlineMs);
      await client.query('BEGIN READ ONLY; SET LOCAL search_path = pg_catalog');
      const { rows: found } = await client.query<BlockerRow>(holdersSql, [table]);
      await client.query('COMMIT');
      return found;
    },
    applicationName,
  );
  return blockingSessionsOf(rows);
}
