import pg from 'pg';
import type { DbConfig } from './db-config.js';

/**
 * A pooled connection, with what the pool's bounds track about it. Every field is plain data
 * written on the hot path (two writes per call), read by the pool's deadline sweep.
 */
export interface BoundedClient extends pg.ClientBase {
  /** `performance.now()` when the call in flight was sent; 0 while none is. */
  callStartedAt: number;
  /** How long a call on this connection may wait for its answer now (longer inside `withTimeouts`). */
  deadlineMs: number;
  /** The `statement_timeout` this connection runs with, when the pool knows it (not behind a pooler). */
  statementTimeoutMs: number | undefined;
  /** The `lock_timeout` this connection runs with, when the pool knows it. */
  lockTimeoutMs: number | undefined;
  /**
   * The first error the connection reported, which is what broke it: a server that ends an
   * idle session (25P03, idle in a transaction too long) says why only then, before the socket
   * closes, and the next query just finds the connection closed.
   */
  brokenBy: unknown;
  /** The bounds it was opened with, restored when a `withTimeouts` transaction ends. */
  readonly openedWith: ConnectionBounds;
}

/** The pool's defaults for a connection's bounds, restored when a `withTimeouts` transaction ends. */
export interface ConnectionBounds {
  deadlineMs: number;
  statementTimeoutMs: number | undefined;
  lockTimeoutMs: number | undefined;
}

/**
 * The `pg.Client` class the pool opens its connections with (pg-pool's `Client` option): a
 * connect timeout of its own (pg-pool's `connectionTimeoutMillis` is the acquire timeout, and
 * would also be used for connecting), TCP keepalive with short timings, and, while
 * `startupBounds()` says so, the server-side bounds as startup parameters, which cost no round
 * trip (a pooler such as PgBouncer refuses them; the pool then stops sending them).
 *
 * @example
 * new pg.Pool({ connectionString, Client: boundedClientClass(config, () => true) })
 */
export function boundedClientClass(
  config: DbConfig,
  startupBounds: () => boolean,
): new (options: pg.ClientConfig) => pg.Client & BoundedClient {
  return class extends pg.Client implements BoundedClient {
    callStartedAt = 0;
    deadlineMs = config.callDeadlineMs;
    statementTimeoutMs: number | undefined;
    lockTimeoutMs: number | undefined;
    brokenBy: unknown = undefined;
    readonly openedWith: ConnectionBounds;

    constructor(options: pg.ClientConfig) {
      const bounded = startupBounds();
      super({
        ...options,
        connectionTimeoutMillis: config.connectTimeoutMs,
        keepAlive: true,
        keepAliveInitialDelayMillis: config.keepAliveDelayMs,
        ...(bounded
          ? {
              statement_timeout: config.statementTimeoutMs,
              lock_timeout: config.lockTimeoutMs,
              idle_in_transaction_session_timeout: config.idleInTransactionTimeoutMs,
            }
          : {}),
      });
      this.statementTimeoutMs = bounded ? config.statementTimeoutMs : undefined;
      this.lockTimeoutMs = bounded ? config.lockTimeoutMs : undefined;
      this.openedWith = { deadlineMs: this.deadlineMs, statementTimeoutMs: this.statementTimeoutMs, lockTimeoutMs: this.lockTimeoutMs };
      this.on('error', (error: unknown) => {
        this.brokenBy ??= error;
      });
    }
  };
}
