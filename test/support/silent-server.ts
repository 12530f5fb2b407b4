import net from 'node:net';

/** A TCP server on 127.0.0.1 that accepts connections and never says a word. */
export interface SilentServer {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/**
 * Starts a {@link SilentServer}: a database that accepts the TCP connection but never answers
 * the login, as an overloaded or half-dead server (or a black-holed pooler) does.
 *
 * @example
 * const silent = await startSilentServer()
 * try { … postgresql://u:p@127.0.0.1:${silent.port}/db … } finally { await silent.close() }
 */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
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
