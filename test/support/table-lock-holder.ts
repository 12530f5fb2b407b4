import pg from 'pg';

/** Another session holding a table lock in an open transaction, as a long reader or a migration would. */
export interface TableLockHolder {
  /** The holder's backend, as a blocker is named. */
  pid: number;
  /** Ends the holder's session, and with it the lock. */
  release(): Promise<void>;
}

/**
 * Opens a session that takes `LOCK TABLE table IN mode MODE` inside an open transaction and
 * keeps it until `release`, for tests of what must wait for (or give up on) that table. Ask
 * about the waiters from another session: inside the holder's transaction, pg_stat_activity
 * stays as it first read it.
 *
 * @example
 * const holder = await holdTableLock(url, 'users')
 * try { … } finally { await holder.release() }
 */
export async function holdTableLock(databaseUrl: string, table: string, mode = 'ACCESS EXCLUSIVE'): Promise<TableLockHolder> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${client.escapeIdentifier(table)} IN ${mode} MODE`);
  } catch (error) {
    await client.end();
    throw error;
  }
  return { pid: (client as pg.Client & { processID: number }).processID, release: () => client.end() };
}
