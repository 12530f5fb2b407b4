import pg from 'pg';
import { eventually } from './eventually.js';

/**
 * Runs `call` while another session has deleted a row (`DELETE FROM table WHERE id = $1`) and
 * not yet committed: once `call` waits for that row's lock (seen in pg_stat_activity from a
 * session of its own), the deletion commits, and `call`'s outcome is returned, a thrown error
 * included. For the races where a query read the row from its snapshot and meets it deleted.
 *
 * @example
 * const outcome = await duringUncommittedDelete(directUrl, 'users', user.id, () => phrases.exclude(db, user.id, phraseId))
 * expect(outcome).toBeInstanceOf(NotFoundError)
 */
export async function duringUncommittedDelete(databaseUrl: string, table: string, id: string, call: () => Promise<unknown>): Promise<unknown> {
  const deleter = new pg.Client({ connectionString: databaseUrl });
  const observer = new pg.Client({ connectionString: databaseUrl });
  await Promise.all([deleter.connect(), observer.connect()]);
  try {
    await deleter.query('BEGIN');
    await deleter.query(`DELETE FROM ${deleter.escapeIdentifier(table)} WHERE id = $1`, [id]);
    const deleterPid = (await deleter.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    let settled = false;
    const outcome = call().then(
      (value) => value,
      (error: unknown) => error,
    );
    void outcome.finally(() => (settled = true));
    await eventually(
      async () =>
        settled ||
        (await observer.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [deleterPid])).rowCount === 1,
      `the call waits for the deleted ${table} row`,
    );
    await deleter.query('COMMIT');
    return await outcome;
  } finally {
    await Promise.all([deleter.end(), observer.end()]);
  }
}
