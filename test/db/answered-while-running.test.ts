import net from 'node:net';
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

/** The URL of a login the server lets have one connection at a time (CONNECTION LIMIT 1), dropped when the test finishes. */
async function loginOfOneConnection(onTestFinished: (cleanUp: () => Promise<void>) => void): Promise<URL> {
  const login = `kw_watch_limited_${Math.random().toString(36).slice(2, 8)}`;
  const admin = await openClient(database.url);
  onTestFinished(async () => {
    await admin.query(`DROP ROLE IF EXISTS ${login}`).catch(() => undefined);
    await admin.end();
  });
  await admin.query(`CREATE ROLE ${login} LOGIN PASSWORD 'limited-secret-1' CONNECTION LIMIT 1`);
  const asLogin = new URL(database.url);
  asLogin.username = login;
  asLogin.password = 'limited-secret-1';
  return asLogin;
}

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

  // PostgreSQL marks a session idle as soon as its statement is done, before its answer has
  // reached the client (a large result through a slow path; here one held back 0.8 s on the way):
  // a session seen idle only a moment is looked at again, not given up on with its answer coming.
  it('waits for an answer still on its way from a session idle only a moment', async ({ expect, onTestFinished }) => {
    const slow = await startDelayingProxy(Number(new URL(database.url).port));
    onTestFinished(() => slow.close());
    const through = new URL(database.url);
    through.port = String(slow.port);
    const client = await openClient(through.toString());
    onTestFinished(() => client.end());
    const session = await sessionOf(client, database.url);
    slow.delayMs = 800;

    // Done on the server after 0.6 s, idle from then on; its answer arrives 0.8 s later. The
    // look at 1 s finds the session idle for 0.4 s, less than the bound.
    const { rows } = await answeredWhileRunning(client, 1_000, 'SELECT PG_SLEEP', session, () =>
      client.query<{ done: boolean }>('SELECT pg_sleep(0.6) IS NOT NULL AS done'),
    );

    expect(rows).toEqual([{ done: true }]);
  });

  // While services queue behind a restore's locks, their pools may take every connection the
  // server allows: a look refused a login by the server says nothing of the session, and two of
  // them gave up on a healthy statement (here the role's CONNECTION LIMIT is its one session).
  it('waits for a statement whose session the server refuses to let it look at (too many connections)', async ({ expect, onTestFinished }) => {
    const asLogin = await loginOfOneConnection(onTestFinished);
    const client = await openClient(asLogin.toString());
    onTestFinished(() => client.end());
    const session = await sessionOf(client, asLogin.toString());

    const { rows } = await answeredWhileRunning(client, 300, 'SELECT PG_SLEEP', session, () =>
      client.query<{ done: boolean }>('SELECT pg_sleep(1.5) IS NOT NULL AS done'),
    );

    expect(rows).toEqual([{ done: true }]);
  });

  // Waited for longer, not for ever: a statement lost while the server refuses every look is
  // still given up on, at the tenth refusal in a row.
  it('gives up on a statement whose looks the server refuses ten times in a row', async ({ expect, onTestFinished }) => {
    const asLogin = await loginOfOneConnection(onTestFinished);
    const client = await openClient(asLogin.toString());
    onTestFinished(() => client.end().catch(() => undefined));
    const session = await sessionOf(client, asLogin.toString());

    const error = await answeredWhileRunning(client, 150, 'SELECT PG_SLEEP', session, () => client.query('SELECT pg_sleep(30)')).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toContain(
      'its session could not be looked at in pg_stat_activity, 10 times in a row, the server refusing its login (the last: its connection 53300)',
    );
  });
});

/** A TCP proxy on 127.0.0.1 that passes the server's bytes to the client `delayMs` late (0 at first). */
async function startDelayingProxy(targetPort: number): Promise<{ port: number; delayMs: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const proxy = { port: 0, delayMs: 0, close: async () => undefined as void };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => void setTimeout(() => client.write(chunk), proxy.delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as net.AddressInfo).port;
  proxy.close = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return proxy;
}
