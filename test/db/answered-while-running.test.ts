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
      '(looked at every 0.3 s), and its session runs no statement (pg_stat_activity: idle in transaction); the connection was closed',
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
    let looks = 0;
    const add = session.looks.add.bind(session.looks);
    session.looks.add = (look) => ((looks += 1), add(look));
    const stalled = proxy.stallOn(/held back/);

    const error = await answeredWhileRunning(client, 300, 'SELECT', session, () => client.query("SELECT 'held back'")).catch((e: unknown) => e);

    await stalled;
    expect(looks).toBe(2);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/no answer to SELECT for [\d.]+ s \(looked at every 0\.3 s\), and its session could not be looked at in pg_stat_activity, twice in a row \(the last: .*\); the connection was closed/);
  });

  it('waits for a statement whose session shows no state (statistics turned off), rather than take it for idle', async ({ expect, onTestFinished }) => {
    const client = await openClient(database.url);
    onTestFinished(() => client.end());
    const session = await sessionOf(client);
    await client.query('SET track_activities = off');

    const { rows } = await answeredWhileRunning(client, 300, 'SELECT PG_SLEEP', session, () =>
      client.query<{ done: boolean }>('SELECT pg_sleep(1.5) IS NOT NULL AS done'),
    );

    expect(rows).toEqual([{ done: true }]);
  });

  // A login whose settings SET ROLE to the owner (as migrate supports) runs as the owner, which
  // may not see the login's own backends in pg_stat_activity: the look sets the role back first.
  it("sees the session of a login whose settings SET ROLE to another role, and gives up on its statement held back", async ({ expect, onTestFinished }) => {
    const suffix = Math.random().toString(36).slice(2, 8);
    const [owner, login] = [`kw_watch_owner_${suffix}`, `kw_watch_login_${suffix}`];
    const admin = await openClient(database.url);
    onTestFinished(async () => {
      await admin.query(`DROP ROLE IF EXISTS ${login}; DROP ROLE IF EXISTS ${owner}`).catch(() => undefined);
      await admin.end();
    });
    await admin.query(`CREATE ROLE ${owner} NOLOGIN; CREATE ROLE ${login} LOGIN PASSWORD 'watch-secret-1' IN ROLE ${owner}; ALTER ROLE ${login} SET role = ${owner}`);
    const asLogin = new URL(database.url);
    asLogin.username = login;
    asLogin.password = 'watch-secret-1';
    const { proxy, url } = await stallingProxyFor(asLogin.toString(), onTestFinished);
    const client = await openClient(url);
    onTestFinished(() => client.end().catch(() => undefined));
    expect((await client.query<{ role: string }>('SELECT current_user AS role')).rows).toEqual([{ role: owner }]);
    const session = await sessionOf(client, asLogin.toString());
    await client.query('BEGIN');
    const stalled = proxy.stallOn(/held back/);

    const error = await answeredWhileRunning(client, 300, 'SELECT', session, () => client.query("SELECT 'held back'")).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toContain('its session runs no statement (pg_stat_activity: idle in transaction)');
  });
});
