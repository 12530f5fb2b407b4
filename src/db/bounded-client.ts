import type * as pg from 'pg';
import type { DbConfig } from './db-config.js';
import { LibraryClient } from './library-client.js';

/**
 * A pooled connection, with what the pool's bounds track about it. Every field is plain data
 * written on the hot path (two writes per call), read by the pool's deadline sweep.
 */
export interface BoundedClient extends pg.ClientBase {
  /** `performance.now()` when the call in flight was sent; 0 while none is. */
  callStartedAt: number;
  /** How long a call on this connection may wait for its answer now (longer inside `withTimeouts`). */
  deadlineMs: number;
  /** The `statement_timeout` this connection runs with, as it said when opened; undefined until then, or when it has none. */
  statementTimeoutMs: number | undefined;
  /** The `lock_timeout` this connection runs with, when the pool knows it. */
  lockTimeoutMs: number | undefined;
  /**
   * The first error the connection reported, which is what broke it: a server that ends an
   * idle session (25P03, idle in a transaction too long) says why only then, before the socket
   * closes, and the next query just finds the connection closed.
   */
  brokenBy: unknown;
  /** The bounds it runs with outside `withTimeouts` (restored when such a transaction ends). */
  openedWith: ConnectionBounds;
  /**
   * Set when the pool gave up the call in flight at its deadline: its outcome is this error
   * (whatever the cancel the pool sends then makes the server answer), and the connection is
   * never handed out again.
   */
  abandonedBy: Error | undefined;
}

/** The pool's defaults for a connection's bounds, restored when a `withTimeouts` transaction ends. */
export interface ConnectionBounds {
  deadlineMs: number;
  statementTimeoutMs: number | undefined;
  lockTimeoutMs: number | undefined;
}

/**
 * The class the pool opens its connections with (pg-pool's `Client` option): a
 * {@link LibraryClient} (the library's connect timeout and TCP keepalive, from the pool's
 * config, and a bounded end) that carries what the pool's bounds track about it and, while
 * `startupBounds()` says so, sends the server-side bounds as startup parameters, which cost no
 * round trip (a pooler such as PgBouncer refuses them, or ignores them; the pool then learns
 * the bounds that hold from the connection itself, see inspectConnection). `created` hears of
 * each connection as it is made, before its login, so that the pool's end can wait for one
 * that is still logging in.
 *
 * @example
 * new pg.Pool({ connectionString, Client: boundedClientClass(config, () => true) })
 */
export function boundedClientClass(
  config: DbConfig,
  startupBounds: () => boolean,
  created: (client: LibraryClient & BoundedClient) => void = () => undefined,
): new (poolOptions: pg.ClientConfig) => LibraryClient & BoundedClient {
  return class extends LibraryClient implements BoundedClient {
    callStartedAt = 0;
    deadlineMs = config.callDeadlineMs;
    // Unknown until the connection says which bounds it runs with (the pool asks each new one).
    statementTimeoutMs: number | undefined = undefined;
    lockTimeoutMs: number | undefined = undefined;
    brokenBy: unknown = undefined;
    abandonedBy: Error | undefined = undefined;
    openedWith: ConnectionBounds = { deadlineMs: config.callDeadlineMs, statementTimeoutMs: undefined, lockTimeoutMs: undefined };

    // pg-pool hands every connection its own options, whose connect timeout is the acquire
    // timeout: the connection takes its bounds from the config instead.
    constructor(_poolOptions: pg.ClientConfig) {
      super(
        config,
        startupBounds()
          ? {
              statement_timeout: config.statementTimeoutMs,
              lock_timeout: config.lockTimeoutMs,
              idle_in_transaction_session_timeout: config.idleInTransactionTimeoutMs,
            }
          : {},
      );
      this.on('error', (error: unknown) => {
        this.brokenBy ??= error;
      });
      created(this);
    }
  };
}
