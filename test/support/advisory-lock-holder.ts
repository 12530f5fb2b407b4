import pg from 'pg';

/** Another session holding a transaction-scoped advisory lock, as a running migrator or set-up would. */
export interface AdvisoryLockHolder {
  /** The holder's backend, as `pg_locks` and `pg_stat_activity` show it. */
  pid: number;
  /** Ends the holder's session, and with it the lock. */
  release(): Promise<void>;
}

/**
 * Opens a session that takes `key` with `pg_advisory_xact_lock` inside an open transaction and
 * keeps it until `release`, for tests of code that must wait for (or give up on) that lock.
 *
 * @example
 * const holder = await holdAdvisoryLock(url, migrationLockKey, 'first-migrator')
 * try { … } finally { await holder.release() }
 */
export async function holdAdvisoryLock(databaseUrl: string, key: string | number, applicationName?: string): Promise<AdvisoryLockHolder> {
  const client = new pg.Client({ connectionString: databaseUrl, ...(applicationName ? { application_name: applicationName } : {}) });
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [String(key)]);
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { pid: rows[0]!.pid, release: () => client.end() };
}
