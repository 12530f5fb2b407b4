import type pg from 'pg';

/** One key for every migration run against a database, whichever process starts it. */
export const migrationLockKey = '7259133420415466853';

/**
 * Runs `work` while holding a session-level advisory lock on `client`. Every migrator takes
 * the same key on its own connection, so concurrent runs queue instead of racing; the lock
 * ends with the session even if the process dies.
 *
 * @example
 * await withAdvisoryLock(client, migrationLockKey, () => runPending(client), () => log('waiting…'))
 */
export async function withAdvisoryLock<T>(
  client: pg.ClientBase,
  key: string,
  work: () => Promise<T>,
  onWait?: () => void,
): Promise<T> {
  const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [key]);
  if (!rows[0]?.locked) {
    onWait?.();
    await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
  }
  try {
    return await work();
  } finally {
    // If the connection is broken the lock is already gone with the session; do not let a
    // failed unlock hide the error that broke it.
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [key]).catch(() => undefined);
  }
}
