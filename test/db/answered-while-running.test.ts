import type pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { openClient } from '../../src/db/with-client.js';
import { ConnectionError } from '../../src/errors.js';
import { answeredWhileRunning, type WatchedSession } from '../../src/db/answered-while-running.js';
import { stallingProxyFor } from '../support/stalling-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

let database: TestDatabase;
beforeAll(async () => void (database = await createTestDatabase({ empty: true })));
afterAll(() => database?.drop());

/** The session of `client`, as a restore watches its own. */
async function sessionOf(client: pg.Client, url = database.url): Promise<WatchedSession> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { url, pid: rows[0]!.pid, looks: new Set(), applicationName: 'kw-test-watch' };
}

// A restore's or a migration's statement may run long; one whose answer never comes was waited for without
// end. The watch tells the two apart by looking at the session from another connection.
describe.concurrent('answeredWhileRunning', () => {
  it('waits for a statement the server runs longer than the bound, however many bounds', async ({ expect, onTestFinished }) => {
    const client = await openClient(database.url);
    onTestFinished(() => client.end());
    const session = await sessionOf(client);

    const { rows } = await answeredWhileRunning(client, 300, 'SELECT PG_SLEEP', session, () =>
      client.query<{ done: boolean }>('SELECT pg_sleep(2) IS NOT NULL AS done'),
    );

    expect(rows).toEqual([{ done: true }]);
    // A look may still be on its way as the answer comes; it ends by itself, and tells nothing then.
    await expect.poll(() => session.looks.size).toBe(0);
  });

  it('closes the connection of a statement whose session runs nothing (the statement held back on the way)', async ({ expect, onTestFinished }) => {
    const { proxy, url } = await stallingProxyFor(database.url, onTestFinished);
    const client = await openClient(url);
    onTestFinished(() => client.end());
    const session = await sessionOf(client, database.url);
    await client.query('BEGIN');
    const stalled = proxy.stallOn(/held back/);

    const error = await answeredWhileRunning(client, 300, 'SELECT', session, () => client.query("SELECT 'held back'")).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ reason: 'deadline', retryable: true });
    expect((error as Error).message).toContain(
      'no answer to SELECT for 0.3 s, and its session runs no statement (pg_stat_activity: idle in transaction); the connection was closed',
    );
  });

  it('gives up at the second look in a row that fails, when the session cannot be looked at', async ({ expect, onTestFinished }) => {
    const { proxy, url } = await stallingProxyFor(database.url, onTestFinished);
    const client = await openClient(url);
    onTestFinished(() => client.end());
    // The looks go through a server that refuses every connection.
    const refusing = new URL(database.url);
    refusing.port = '1';
    const session = { ...(await sessionOf(client)), url: refusing.toString() };
    const stalled = proxy.stallOn(/held back/);

    const error = await answeredWhileRunning(client, 300, 'SELECT', session, () => client.query("SELECT 'held back'")).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/no answer to SELECT for 0\.3 s, and its session could not be looked at in pg_stat_activity, twice in a row \(the last: .*\); the connection was closed/);
  });
});
