import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDb, poolOf } from '../../src/db/create-db.js';
import type { DbConfig } from '../../src/db/db-config.js';
import { withClient } from '../../src/db/with-client.js';
import { ConnectionError } from '../../src/errors.js';
import { eventually } from '../support/eventually.js';
import { createObservedDatabase } from '../support/observed-database.js';
import { chainExists, droppedPackets, healAllPartitions, packetFilterAvailable, silenceConnections } from '../support/packet-filter.js';
import type { TestDatabase } from '../support/test-database.js';

// Real packet loss (iptables DROP on the pooled connections, both directions): a
// proxy in user space would answer TCP keepalive probes itself, so only the kernel can show
// what a failover or a NAT that forgot the connections looks like. New connections (new
// ports) keep working, as they do after a failover. Every rule is removed in `finally`.
const usable = packetFilterAvailable('the silent-partition tests');

let database: TestDatabase;
let observer: pg.Client;
let remove: () => Promise<void>;
// The port of the server the pools connect to (the observer's): the other end of every silenced connection.
let serverPort: number;

beforeAll(async () => {
  if (!usable) return;
  ({ database, observer, remove } = await createObservedDatabase());
  serverPort = (await observer.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port;
});
// A test that times out never reaches its own `finally`: its rules go here.
afterEach(() => {
  if (usable) healAllPartitions();
});
afterAll(async () => {
  if (usable) await remove();
});

/** The client-side ports of the pool's connections, as the server sees them. */
async function portsOf(applicationName: string): Promise<number[]> {
  const { rows } = await observer.query<{ port: number }>(
    'SELECT client_port AS port FROM pg_stat_activity WHERE application_name = $1 ORDER BY client_port',
    [applicationName],
  );
  return rows.map((row) => row.port);
}

// The sockets this process holds open: a socket left to a silent peer keeps the process alive.
function openSockets(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'TCPSocketWrap').length;
}

function boundedDb(overrides: Partial<DbConfig>, poolErrors: Array<{ message: string; error: unknown }>) {
  const applicationName = `partition-${randomBytes(4).toString('hex')}`;
  const db = createDb(
    { databaseUrl: database.url, applicationName, minConnections: 2, maxConnections: 4, acquireTimeoutMs: 10_000, ...overrides },
    { onPoolError: (message, error) => poolErrors.push({ message, error }) },
  );
  return { db, applicationName };
}

describe.skipIf(!usable)('a silent partition of every pooled connection', () => {
  it('fails the calls sent into it at their deadline with a retryable ConnectionError, and serves again from fresh connections', async () => {
    const poolErrors: Array<{ message: string; error: unknown }> = [];
    // A deadline far above what a live connection needs for the calls below, however loaded the
    // machine: a fresh connection must answer them long before it.
    const { db, applicationName } = boundedDb({ statementTimeoutMs: 1_000, lockTimeoutMs: 500, callDeadlineMs: 3_000 }, poolErrors);
    await poolOf(db).ready();
    const silenced = await portsOf(applicationName);
    expect(silenced).toHaveLength(2);
    const partition = silenceConnections(serverPort, silenced);
    try {
      // Six calls at once: two are handed the silenced connections (the pool's idle ones) and
      // send their query into the void, where only the call deadline can end them; TCP
      // keepalive never probes a connection with unacknowledged data.
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, () =>
          sql<{ port: number }>`SELECT inet_client_port() AS port`.execute(db).then(
            ({ rows }) => rows[0]!.port,
            (error: unknown) => error,
          ),
        ),
      );
      const failures = outcomes.filter((outcome) => typeof outcome !== 'number');
      expect(failures.length).toBeGreaterThan(0);
      for (const failure of failures) {
        expect(failure).toBeInstanceOf(ConnectionError);
        expect(failure).toMatchObject({ reason: 'deadline', retryable: true });
      }
      expect(poolErrors.map((entry) => entry.message)).toContain('a call got no answer within its deadline; its connection was closed');

      // The silenced connections are gone from the pool: every later call runs on a fresh one.
      const ports = new Set<number>();
      for (let call = 0; call < 8; call++) {
        const { rows } = await sql<{ port: number }>`SELECT inet_client_port() AS port`.execute(db);
        ports.add(rows[0]!.port);
      }
      expect([...ports].filter((port) => silenced.includes(port))).toEqual([]);
      await poolOf(db).ready();
    } finally {
      partition.heal();
      await db.destroy();
    }
  });

  it('ends the pool all the same: destroy() waits for a stuck call only until its deadline, not for TCP retransmission, and leaves no socket open', async () => {
    const poolErrors: Array<{ message: string; error: unknown }> = [];
    const before = openSockets();
    const { db, applicationName } = boundedDb({ statementTimeoutMs: 1_000, lockTimeoutMs: 500, callDeadlineMs: 3_000 }, poolErrors);
    const pool = poolOf(db);
    await pool.ready();
    const partition = silenceConnections(serverPort, await portsOf(applicationName));
    try {
      // One call sent into the silence on one of the two idle connections; the other stays idle,
      // and its goodbye at the end will get no answer either.
      const call = sql`SELECT 1`.execute(db).then(
        () => 'answered',
        (error: unknown) => error,
      );
      await eventually(() => pool.pool.idleCount === 1, 'the call has its connection');
      await db.destroy();
      expect(await call).toMatchObject({ reason: 'deadline', retryable: true });
      expect(openSockets()).toBe(before);
    } finally {
      partition.heal();
      await db.destroy();
    }
  });

  it('closes a connection of its own (withClient) whose peer went silent, without waiting for TCP retransmission', async () => {
    const applicationName = `partition-${randomBytes(4).toString('hex')}`;
    const before = openSockets();
    let partition: ReturnType<typeof silenceConnections> | undefined;
    try {
      const done = await withClient(
        database.url,
        async () => {
          partition = silenceConnections(serverPort, await portsOf(applicationName));
          return 'done';
        },
        applicationName,
      );
      expect(done).toBe('done');
      expect(openSockets()).toBe(before);
    } finally {
      partition?.heal();
    }
  });

  it('finds idle connections whose peer went silent by TCP keepalive, removes them and refills the pool', async () => {
    const poolErrors: Array<{ message: string; error: unknown }> = [];
    // Node's libuv probes every second, ten times, after keepAliveDelayMs of idleness: about 11 s here.
    const { db, applicationName } = boundedDb({ keepAliveDelayMs: 1_000 }, poolErrors);
    const pool = poolOf(db);
    await pool.ready();
    const silenced = await portsOf(applicationName);
    let removed = 0;
    pool.pool.on('remove', () => (removed += 1));
    const partition = silenceConnections(serverPort, silenced);
    try {
      await eventually(() => removed >= 2, 'both silenced connections are removed', { timeoutMs: 25_000, intervalMs: 100 });
      // Each loss the pool reports is the kernel's keepalive verdict. Under load the second
      // connection's end can reach pg as a close without an error of its own (seen once in CI),
      // so the count of reports is not asserted, only that there is one and what each says.
      const lost = poolErrors.filter(({ message }) => message === 'an idle database connection was lost');
      const codes = lost.map(({ error }) => (error as { code?: string }).code);
      const said = poolErrors.map(({ message, error }) => `${message}: ${String(error)}`).join('\n');
      expect(codes.length, said).toBeGreaterThan(0);
      expect(new Set(codes), said).toEqual(new Set(['ETIMEDOUT']));
      await pool.ready();
      expect(pool.pool.totalCount).toBe(2);
      const { rows } = await sql<{ port: number }>`SELECT inet_client_port() AS port`.execute(db);
      expect(silenced).not.toContain(rows[0]!.port);
    } finally {
      partition.heal();
      await db.destroy();
    }
  }, 30_000);
});

describe.skipIf(!usable)('the packet filter of the fault tests', () => {
  // Were it silenced too, the echo would never come: the test fails at its timeout.
  it("silences only its connections: another server's connection that has the same client port keeps working", { timeout: 10_000 }, async () => {
    // Two echo servers, and a client port shared by a connection to each, as Linux shares one
    // between connections to different servers (bound here, so that they surely share it).
    const echoServer = async () => {
      const server = net.createServer((socket) => socket.pipe(socket)).listen(0, '127.0.0.1');
      await once(server, 'listening');
      return server;
    };
    const portOf = (server: net.Server) => (server.address() as net.AddressInfo).port;
    const connectFrom = async (localPort: number, server: net.Server) => {
      const socket = net.connect({ host: '127.0.0.1', port: portOf(server), localAddress: '127.0.0.1', localPort });
      await once(socket, 'connect');
      return socket;
    };
    const echoOf = async (socket: net.Socket, text: string) => {
      const answered = once(socket, 'data');
      socket.write(text);
      return String(((await answered) as [Buffer])[0]);
    };
    const [silencedServer, otherServer] = await Promise.all([echoServer(), echoServer()]);
    const sockets: net.Socket[] = [];
    let partition: ReturnType<typeof silenceConnections> | undefined;
    try {
      const silenced = await connectFrom(0, silencedServer);
      sockets.push(silenced);
      const other = await connectFrom(silenced.localPort!, otherServer);
      sockets.push(other);
      expect(other.localPort).toBe(silenced.localPort);

      partition = silenceConnections(portOf(silencedServer), [silenced.localPort!]);
      expect(await echoOf(other, 'still here')).toBe('still here');
      expect(droppedPackets(partition.chain)).toBe(0);
      // The silenced connection's own packets are dropped: the kernel counts them.
      silenced.write('into the void');
      await eventually(() => droppedPackets(partition!.chain) > 0, 'the silenced connection loses its packets');
    } finally {
      partition?.heal();
      for (const socket of sockets) socket.destroy();
      silencedServer.close();
      otherServer.close();
    }
  });

  it('heals a partition only once its rules are gone: a removal that failed is tried again by the next heal', () => {
    // Port 1 (tcpmux): nothing here uses it.
    const partition = silenceConnections(1, [1]);
    // Another rule refers to the chain, so that it cannot be deleted yet.
    const reference = ['OUTPUT', '-o', 'lo', '-p', 'tcp', '--dport', '1', '-j', partition.chain];
    execFileSync('iptables', ['-w', '5', '-I', ...reference]);
    try {
      expect(() => partition.heal()).toThrow(/could not remove the iptables chain/);
      expect(chainExists(partition.chain)).toBe(true);
    } finally {
      execFileSync('iptables', ['-w', '5', '-D', ...reference]);
    }
    partition.heal();
    expect(chainExists(partition.chain)).toBe(false);
  });

  it('heals when the process is interrupted (Ctrl-C), then ends as the signal would', async () => {
    const packetFilter = fileURLToPath(new URL('../support/packet-filter.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { silenceConnections } from ${JSON.stringify(packetFilter)}; console.log(silenceConnections(1, [1]).chain); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let chain = '';
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      chain = line.toString().trim();
      expect(chainExists(chain)).toBe(true);
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      expect({ code, signal }).toEqual({ code: null, signal: 'SIGINT' });
      expect(chainExists(chain)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      // What a failed run leaves: removed by hand, as the next silenceConnections would.
      if (chain && chainExists(chain)) {
        for (const args of [['-D', 'INPUT', '-i', 'lo', '-m', 'comment', '--comment', `kw-test-partition:${chain}`, '-j', chain], ['-F', chain], ['-X', chain]]) {
          try {
            execFileSync('iptables', ['-w', '5', ...args], { stdio: 'ignore' });
          } catch {
            // Already gone.
          }
        }
      }
    }
  });
});
