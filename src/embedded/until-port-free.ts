import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../errors.js';
import { acceptsConnections } from './accepts-connections.js';

// TCP keeps a connection's port for 60 s after the side that closed first has closed it
// (TIME_WAIT; Linux's TCP_TIMEWAIT_LEN, not a setting), with a margin.
const timeWaitMs = 65_000;
const retryEveryMs = 250;

/**
 * Waits, at most `waitMs` (65 s by default: TCP's TIME_WAIT lasts 60 s), until a server may
 * listen on 127.0.0.1 at this port, logging once when it must wait; then throws a
 * `ConfigError` naming the port. A port where a server accepts connections is refused at once.
 *
 * A port of the range the kernel picks the local ports of outgoing connections from (32768–60999
 * on Linux, where the local server's 54320 lies) may be held by a connection of this machine
 * that nothing listens behind: one that is open, or one closed in the last minute, whose TIME_WAIT
 * keeps its port. PostgreSQL's listener is refused that port ("could not bind IPv4 address:
 * Address already in use") even with SO_REUSEADDR, and a `db:setup` right after a test run,
 * whose thousands of connections leave as many TIME_WAITs, failed so now and then. A wait
 * bounded by TIME_WAIT's length lets the start go on once the port is free.
 *
 * @example await untilPortFree(54320, console.log) // resolves at once when nothing holds the port
 */
export async function untilPortFree(port: number, log: (line: string) => void, waitMs = timeWaitMs): Promise<void> {
  const deadline = performance.now() + waitMs;
  if (await mayListen(port)) return;
  // A server holds it (another cluster, another program): no wait would free it.
  if (await acceptsConnections(port)) {
    throw new ConfigError(
      'EMBEDDED_PG_PORT',
      `port ${port} on 127.0.0.1 is taken by a server that accepts connections: start this one on another port ` +
        '(for the local server: EMBEDDED_PG_PORT=<port>, with the same for its commands), or stop that server; nothing was started',
    );
  }
  log(
    `port ${port} on 127.0.0.1 is held by a connection of this machine (one closed in the last minute keeps its port ` +
      `for up to 60 s, TCP's TIME_WAIT): waiting up to ${duration(waitMs)} for it`,
  );
  while (performance.now() < deadline) {
    await sleep(Math.min(retryEveryMs, Math.max(0, deadline - performance.now())));
    if (await mayListen(port)) return;
  }
  throw new ConfigError(
    'EMBEDDED_PG_PORT',
    `port ${port} on 127.0.0.1 stayed held for ${duration(waitMs)} by a socket that accepts no connections ` +
      `(an open connection's local port, or a listener whose packets are dropped): PostgreSQL could not listen on it. ` +
      'Start the server on another port (for the local server: EMBEDDED_PG_PORT=<port>, with the same for its commands); nothing was started',
  );
}

const duration = (ms: number) => (ms < 1000 ? `${ms} ms` : `${Math.ceil(ms / 1000)} s`);

/**
 * Whether a listener may bind 127.0.0.1 at this port now, as PostgreSQL's would: Node sets
 * SO_REUSEADDR on its listeners as PostgreSQL does, so only what would refuse the server's
 * bind refuses this one. An error other than the port in use (a port below 1024 without the
 * right to it) is left for the server to report in its own words. On 127.0.0.1 alone, where
 * the clusters made here listen (a cluster edited to listen elsewhere is not looked at).
 *
 * @example await mayListen(54320) // false while a server listens there
 */
export function mayListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code !== 'EADDRINUSE'));
    server.listen({ host: '127.0.0.1', port }, () => server.close(() => resolve(true)));
  });
}
