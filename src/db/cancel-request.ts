import net from 'node:net';
import type * as pg from 'pg';

// PostgreSQL's CancelRequest: its length, the code 1234/5678, then the session's process id and
// secret key, as the session announced them at login (BackendKeyData; a pooler's own, which it
// maps to the server connection running the statement).
const cancelRequestCode = 80877102;

/**
 * Asks the server (or the pooler in front of it) to cancel the statement that `client`'s session
 * is running, as `pg_cancel_backend` would, on a connection of its own that the other end closes
 * without an answer once it has acted on it. Best effort, never failing: it resolves then, or
 * when `timeoutMs` passed (a silent path).
 *
 * A call given up on at its deadline is sent one before its connection closes: a closed
 * connection alone stops a statement only where the server checks its client
 * (`client_connection_check_interval`; behind PgBouncer, a server connection it closes), so a
 * write cut off that way could still be applied after the caller retried it.
 *
 * @example
 * await sendCancelRequest(client, 1_000)
 */
export function sendCancelRequest(client: pg.ClientBase, timeoutMs: number): Promise<void> {
  const session = client as pg.ClientBase & { processID: number | null; secretKey: number | null; host?: string; port?: number };
  const { processID, secretKey, host, port } = session;
  if (processID === null || secretKey === null || host === undefined || port === undefined) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const socket = host.startsWith('/') ? net.connect(`${host}/.s.PGSQL.${port}`) : net.connect(port, host);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.once('error', done);
    // The server closes the connection once it has acted on the request; a pooler once it has
    // passed it on. Only then may the caller close the session's own connection: PgBouncer
    // forgets the cancel key of a client that left first.
    socket.once('close', done);
    socket.resume();
    socket.once('connect', () => {
      const request = Buffer.alloc(16);
      request.writeInt32BE(16, 0);
      request.writeInt32BE(cancelRequestCode, 4);
      request.writeInt32BE(processID, 8);
      request.writeInt32BE(secretKey, 12);
      socket.write(request);
    });
  });
}
