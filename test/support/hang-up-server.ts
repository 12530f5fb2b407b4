import net from 'node:net';

/** A TCP server on 127.0.0.1 that lets every login in and hangs up on the first query (or never answers it). */
export interface HangUpServer {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

// AuthenticationOk, BackendKeyData (process id 4711), ReadyForQuery (idle): a login as
// PostgreSQL (or a pooler) answers it, without a password.
const loggedIn = Buffer.concat([
  Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]),
  Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0x12, 0x67, 0, 0, 0, 1]),
  Buffer.from([0x5a, 0, 0, 0, 5, 0x49]),
]);

/**
 * Starts a {@link HangUpServer}: a server (or pooler) that accepts a login and then cannot
 * answer, as a pooler whose servers are all busy or gone does, so that whoever probes it
 * learns nothing. The first message of a connection (the startup message, or an SSLRequest)
 * is answered with a successful login; anything after it closes the connection, or, with
 * `afterLogin: 'stay silent'`, is never answered.
 *
 * @example
 * const server = await startHangUpServer()
 * try { … postgresql://u:p@127.0.0.1:${server.port}/db … } finally { await server.close() }
 */
export async function startHangUpServer(options: { afterLogin?: 'hang up' | 'stay silent' } = {}): Promise<HangUpServer> {
  const silent = options.afterLogin === 'stay silent';
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    let greeted = false;
    socket.on('data', () => {
      if (greeted) {
        // Silent: the query is read and never answered, as across a dead network path.
        if (!silent) socket.destroy();
        return;
      }
      greeted = true;
      socket.write(loggedIn);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
