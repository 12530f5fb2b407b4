import type { Socket } from 'node:net';
import pg from 'pg';
import type { Client, ClientConfig } from 'pg';
import { databaseTarget } from './database-target.js';
import type { DbConfig } from './db-config.js';
import { libraryTypeParsers } from './library-type-parsers.js';

/** What a connection of the library is opened with: the pool's DbConfig, or its defaults for a connection of its own. */
export type ConnectionSettings = Pick<DbConfig, 'databaseUrl' | 'applicationName' | 'connectTimeoutMs' | 'keepAliveDelayMs'>;

/**
 * How long a polite end (Terminate, then the server's close) may take before the socket is
 * destroyed: on a dead network path the close never comes, and the kernel would retransmit
 * the FIN for about 15 minutes, holding the process open.
 */
export const closeGraceMs = 1_000;

/**
 * The `pg` options every connection of the library is opened with: its URL and application
 * name, a connect timeout, and TCP keepalive with short timings (probes after
 * `keepAliveDelayMs` of silence, then, as Node's libuv sets them, every second, ten times), so
 * that a dead peer of an idle connection is found in seconds, not in the kernel's two hours.
 * `extra` adds to them (the pool's startup parameters) but never replaces these bounds.
 *
 * @example new pg.Pool({ ...connectionOptions(config), connectionTimeoutMillis: config.acquireTimeoutMs })
 */
export function connectionOptions(settings: ConnectionSettings, extra: ClientConfig = {}): ClientConfig {
  return {
    ...connectionIdentity(settings.databaseUrl),
    connectionString: settings.databaseUrl,
    application_name: settings.applicationName,
    // pg's own parsers for what the library's statements return, whatever a service sets process-wide.
    types: libraryTypeParsers,
    ...extra,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: settings.keepAliveDelayMs,
  };
}

// OpenTelemetry's pg instrumentation names a pool or client in its metrics by the host, port
// and database of its options (`unknown_host:unknown_port/unknown_database` from a
// connectionString alone). These are the ones pg reads from the URL, which still decides the
// connection: pg lets the connectionString's values override these. A URL pg reads but
// databaseTarget refuses (hostaddr, several hosts) keeps the unnamed identity rather than failing here.
function connectionIdentity(databaseUrl: string): { host?: string; port?: number; database?: string } {
  try {
    const { host, port, database } = databaseTarget(databaseUrl);
    return { host, port, database };
  } catch {
    return {};
  }
}

/**
 * Every connection the library opens is one of these (the pool's, the pooler probe's, the
 * migrator's and its lock holder, the operations'): opened with {@link connectionOptions}, and
 * its end is bounded. `end()` says goodbye politely and waits for the server to close, at most
 * {@link closeGraceMs}; then the socket is destroyed. `destroy()` does so at once, for a
 * give-up (a probe out of time, a call past its deadline), where waiting for a polite end on a
 * dead path could take the kernel's quarter of an hour.
 *
 * An 'error' listener is attached: a connection that breaks reports it to whoever uses it (the
 * failing query), and an unheard 'error' event would crash the process.
 *
 * @example
 * const client = new LibraryClient(config) // a DbConfig, or ConnectionSettings
 * await client.connect()
 * try { await client.query('SELECT 1') } finally { await client.end() }
 */
// pg's Client under its declared type: the declarations of the class below then name no default
// export of pg, which a CommonJS service compiled without esModuleInterop cannot import.
const PgClient: typeof Client = pg.Client;

export class LibraryClient extends PgClient {
  constructor(settings: ConnectionSettings, extra: ClientConfig = {}) {
    super(connectionOptions(settings, extra));
    this.on('error', () => undefined);
  }

  // A login that pg itself gives up on (no password for a SCRAM server, a server signature that
  // does not match) leaves the socket open, and pg-pool drops the client without ending it: the
  // server would keep it until its authentication_timeout (60 s by default), and the pool's end
  // with it.
  override connect(): Promise<Client>;
  override connect(callback: ((error: Error) => void) | ((error: null, client: Client) => void)): void;
  override connect(callback?: ((error: Error) => void) | ((error: null, client: Client) => void)): Promise<Client> | void {
    const connected = super.connect().catch((error: unknown) => {
      this.destroy();
      throw error;
    });
    if (callback === undefined) return connected;
    connected.then(
      () => (callback as (error: null, client: Client) => void)(null, this),
      (error: Error) => (callback as (error: Error) => void)(error),
    );
  }

  override end(): Promise<void>;
  override end(callback: (error: Error) => void): void;
  override end(callback?: (error: Error) => void): Promise<void> | void {
    const timer = setTimeout(() => this.destroy(), closeGraceMs);
    timer.unref();
    const ended = super.end().finally(() => clearTimeout(timer));
    if (callback === undefined) return ended;
    // pg-pool ends a connection with a callback, and counts it removed only when that is called.
    ended.then(() => (callback as () => void)(), callback);
  }

  /** Closes the socket now, without a goodbye; `error`, if given, fails what is in flight. */
  destroy(error?: Error): void {
    this.socket().destroy(error);
  }

  /** Resolves once the socket is closed, at once if it is. */
  socketClosed(): Promise<void> {
    const socket = this.socket();
    return socket.destroyed || socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
  }

  private socket(): Socket {
    return (this as unknown as { connection: { stream: Socket } }).connection.stream;
  }
}
