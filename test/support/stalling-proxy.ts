import net from 'node:net';

/** A TCP proxy on 127.0.0.1 in front of a server's port, which can be made to stall. */
export interface StallingProxy {
  port: number;
  /** `url` (a postgresql:// URL of the proxied server) through this proxy: its port replaced. */
  through(url: string): string;
  /**
   * From now on, passes no byte either way on any connection, and keeps each open: its kernel
   * still acknowledges what arrives and answers TCP keepalive, as a hung pooler or middlebox
   * does, so no TCP timer of either end ever ends a connection through it (a partition that
   * drops packets, test/support/packet-filter.ts, is found by keepalive in the end).
   */
  stall(): void;
  /**
   * From now on, stalls (as {@link stall} does, on that connection only) the first connection
   * whose client sends a message holding `pattern`, before the message reaches the server; the
   * promise says when. So a test can silence a command at one round trip of its choice, after
   * its others went through.
   */
  stallOn(pattern: RegExp): Promise<void>;
  /**
   * Closes the next `count` connections as they arrive, before a byte of theirs reaches the
   * server, as a pooler with its queue full or a host out of connections would: their clients
   * see the connection end. Those already open are left alone.
   */
  refuse(count: number): void;
  /** Closes every connection through it, and the proxy. */
  close(): Promise<void>;
}

/**
 * Starts a {@link StallingProxy} in front of 127.0.0.1:`targetPort`.
 *
 * @example
 * const proxy = await startStallingProxy(5432)
 * try { … postgresql://u:p@127.0.0.1:${proxy.port}/db …; proxy.stall(); … } finally { await proxy.close() }
 */
export async function startStallingProxy(targetPort: number): Promise<StallingProxy> {
  const sockets = new Set<net.Socket>();
  const pairs: Array<[net.Socket, net.Socket]> = [];
  let stalled = false;
  let trigger: { pattern: RegExp; fired: () => void } | undefined;
  let refusals = 0;
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    if (refusals > 0) {
      refusals -= 1;
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    track(client);
    track(upstream);
    if (stalled) {
      client.pause();
      upstream.pause();
      return;
    }
    // By hand, not piped, so that a message that trips stallOn is held back whole.
    let held = false;
    client.on('data', (chunk: Buffer) => {
      if (!held && trigger !== undefined && trigger.pattern.test(chunk.toString('utf8'))) {
        const { fired } = trigger;
        trigger = undefined;
        held = true;
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
        fired();
      }
      if (!held && !stalled) upstream.write(chunk);
    });
    upstream.pipe(client);
    pairs.push([client, upstream]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    through(url) {
      return Object.assign(new URL(url), { port: String((server.address() as net.AddressInfo).port) }).toString();
    },
    stallOn(pattern) {
      return new Promise<void>((fired) => (trigger = { pattern, fired }));
    },
    refuse(count) {
      refusals = count;
    },
    stall() {
      stalled = true;
      for (const [client, upstream] of pairs) {
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A {@link StallingProxy} in front of the server that `url` names, closed when the test
 * finishes, and `url` through it.
 *
 * @example
 * const { proxy, url: throughProxy } = await stallingProxyFor(database.url, onTestFinished)
 */
export async function stallingProxyFor(
  url: string,
  onTestFinished: (cleanup: () => Promise<void>) => void,
): Promise<{ proxy: StallingProxy; url: string }> {
  const proxy = await startStallingProxy(Number(new URL(url).port));
  onTestFinished(() => proxy.close());
  return { proxy, url: proxy.through(url) };
}

/** A COMMIT sent as a simple query, as {@link StallingProxy.stallOn} sees it: 'Q', the length, the text. */
export const commitMessage = /Q[\s\S]{4}COMMIT\x00/;
