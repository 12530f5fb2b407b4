import net from 'node:net';

/** A TCP server on 127.0.0.1 that plays a PostgreSQL (or a pooler) which stops answering. */
export interface FakePostgres {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections that sent their first message (a startup message or an SSLRequest) so far: logins tried, where a mere connect counts in {@link accepted} only. */
  logins(): number;
  /** Messages that came after a login's first (a query, a connection's check): each chunk the socket read counts once. */
  queries(): number;
  close(): Promise<void>;
}

/**
 * How far it answers:
 * - `nothing`: accepts the TCP connection and never answers the login, as an overloaded or
 *   half-dead server (or a black-holed pooler) does;
 * - `login, then hangs up`: lets every login in, then closes the connection on the first query,
 *   as a pooler whose servers are all busy or gone does, so that whoever probes it learns nothing;
 * - `login, then nothing`: lets every login in, then never answers a query, as across a network
 *   path that died after the login.
 */
export type FakePostgresAnswers = 'nothing' | 'login, then hangs up' | 'login, then nothing';

// AuthenticationOk, BackendKeyData (process id 4711), ReadyForQuery (idle): a login as
// PostgreSQL (or a pooler) answers it, without a password.
const loggedIn = Buffer.concat([
  Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]),
  Buffer.from([0x4b, 0, 0, 0, 12, 0, 0, 0x12, 0x67, 0, 0, 0, 1]),
  Buffer.from([0x5a, 0, 0, 0, 5, 0x49]),
]);

/**
 * Starts a {@link FakePostgres} that answers as far as `answers` says. The first message of a
 * connection (the startup message, or an SSLRequest) is what a login answers.
 *
 * @example
 * const server = await startFakePostgres('login, then hangs up')
 * try { … postgresql://u:p@127.0.0.1:${server.port}/db … } finally { await server.close() }
 */
export async function startFakePostgres(answers: FakePostgresAnswers): Promise<FakePostgres> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let logins = 0;
  let queries = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    let greeted = false;
    socket.on('data', () => {
      if (!greeted) {
        greeted = true;
        logins += 1;
        if (answers !== 'nothing') socket.write(loggedIn);
      } else {
        queries += 1;
        if (answers === 'login, then hangs up') socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    logins: () => logins,
    queries: () => queries,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
