import { ConfigError } from '../errors.js';
import { parsePostgresUrl } from './database-target.js';
import { type DurationRule, maxDurationMs, parseDuration, tooLong } from './duration.js';

/** Settings of the connection pool. Every field has the default the design names. */
export interface DbConfig {
  /** `postgresql://user:password@host:port/database`. */
  databaseUrl: string;
  /** Most connections the pool opens (`DB_MAX_CONNECTIONS`, default 10). */
  maxConnections: number;
  /** Connections opened at start-up and kept open (`DB_MIN_CONNECTIONS`, default 2). */
  minConnections: number;
  /**
   * Longest wait for a free connection before {@link PoolTimeoutError} (`DB_ACQUIRE_TIMEOUT`,
   * default 30 s; a bare number there is seconds), and for a call at a user's row that looks
   * held (see the README's Timeouts and faults).
   */
  acquireTimeoutMs: number;
  /** Shown in `pg_stat_activity`, so operators can tell this pool's connections apart. */
  applicationName: string;
  /** Idle connections above the minimum are closed after this long. */
  idleTimeoutMs: number;
  /**
   * Named (server-side prepared) statements for the statements built with prepareQuery
   * (`DB_PREPARED_STATEMENTS`, default `auto`): `auto` names them on connections that reach
   * PostgreSQL itself, and through a pooler once a probe found that it keeps them (PgBouncer
   * 1.21+ with `max_prepared_statements` > 0; before 1.21 it loses them in transaction mode);
   * `on` always; `off` never. `poolOf(db).statementNaming()` says what a pool chose.
   */
  preparedStatements: PreparedStatementsMode;
  /**
   * PostgreSQL's `statement_timeout` for every statement of the pool (`DB_STATEMENT_TIMEOUT`,
   * default 5 s): a statement still running then is cancelled with `QueryCanceledError`.
   */
  statementTimeoutMs: number;
  /**
   * PostgreSQL's `lock_timeout` (`DB_LOCK_TIMEOUT`, default 2 s): a statement waiting this long
   * for a row or table lock fails with the retryable `LockNotAvailableError` (and the calls for
   * that user's row queued behind it in the process with it, if the row is still held, so that
   * one held row does not take every connection of the pool). At most `statementTimeoutMs`.
   */
  lockTimeoutMs: number;
  /**
   * PostgreSQL's `idle_in_transaction_session_timeout` (`DB_IDLE_IN_TRANSACTION_TIMEOUT`,
   * default 10 s): a transaction left idle this long (a service awaiting something else while
   * holding its locks) has its session ended by the server.
   */
  idleInTransactionTimeoutMs: number;
  /**
   * The client's own bound on one call (default `statementTimeoutMs` + 5 s): a call without an
   * answer by then (a dead network path, where the server's timeouts never reach us) has its
   * connection destroyed and fails with a retryable `ConnectionError`. Longer than
   * `statementTimeoutMs`, so the server's bound fires first whenever the server can answer.
   */
  callDeadlineMs: number;
  /** Longest wait for a new connection to be accepted and logged in (`DB_CONNECT_TIMEOUT`, default 10 s). */
  connectTimeoutMs: number;
  /**
   * Idle time before TCP keepalive probes start (default 5 s); Node's libuv then probes every
   * second, 10 times, so a silent peer of an idle connection is found in about 15 s.
   */
  keepAliveDelayMs: number;
  /**
   * Connections are retired after a random time between 80 % and 100 % of this
   * (`DB_MAX_LIFETIME`, default 30 min; an idle one at once, a busy one when released), so a
   * pool follows DNS after a failover and a pooler can rebalance, a few connections at a time.
   */
  maxLifetimeMs: number;
}

/** How much longer than `statement_timeout` a call may wait before the client gives up on its connection. */
export const callDeadlineGraceMs = 5_000;

/**
 * The call deadline of a session whose statement_timeout is `statementTimeoutMs`: the grace
 * after the server's own bound, so that the bound fires first whenever the server can answer,
 * and never earlier than `atLeastMs` (the deadline it had).
 *
 * @example callDeadlineFor(30_000, 10_000) // 35_000
 */
export function callDeadlineFor(statementTimeoutMs: number, atLeastMs = 0): number {
  return Math.max(atLeastMs, statementTimeoutMs + callDeadlineGraceMs);
}

// Linux's MAX_TCP_KEEPIDLE, in milliseconds.
const maxKeepAliveDelayMs = 32_767_000;

/** See {@link DbConfig.preparedStatements}. */
export type PreparedStatementsMode = 'auto' | 'on' | 'off';

const preparedStatementsModes: readonly PreparedStatementsMode[] = ['auto', 'on', 'off'];

export const defaultDbConfig = {
  maxConnections: 10,
  minConnections: 2,
  acquireTimeoutMs: 30_000,
  applicationName: 'kennwilliamson-db',
  idleTimeoutMs: 30_000,
  preparedStatements: 'auto',
  statementTimeoutMs: 5_000,
  lockTimeoutMs: 2_000,
  idleInTransactionTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  keepAliveDelayMs: 5_000,
  maxLifetimeMs: 30 * 60_000,
} as const satisfies Omit<DbConfig, 'databaseUrl' | 'callDeadlineMs'>;

/** The server-side bounds, as they are read from the environment (by the pool, and by `setup --admin` for the application role). */
export interface StatementBounds {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

// How each duration variable is read. A bare number keeps the meaning it always had (seconds
// for DB_ACQUIRE_TIMEOUT, milliseconds for the others, as PostgreSQL reads statement_timeout),
// but one that is implausible for its bound is refused, asking for a unit: DB_CONNECT_TIMEOUT=30
// would be 30 ms and break every login, DB_ACQUIRE_TIMEOUT=30000 would be eight hours.
// With a unit (500ms, 30s, 2min) any value from 1 ms to maxDurationMs is accepted.
export const durationVariables = {
  DB_STATEMENT_TIMEOUT: { bare: 'ms', plausibleBare: [1_000, Infinity] },
  DB_LOCK_TIMEOUT: { bare: 'ms', plausibleBare: [1_000, Infinity] },
  DB_IDLE_IN_TRANSACTION_TIMEOUT: { bare: 'ms', plausibleBare: [1_000, Infinity] },
  DB_CONNECT_TIMEOUT: { bare: 'ms', plausibleBare: [1_000, Infinity] },
  DB_MAX_LIFETIME: { bare: 'ms', plausibleBare: [60_000, Infinity] },
  DB_ACQUIRE_TIMEOUT: { bare: 's', plausibleBare: [1, 999] },
} as const satisfies Record<string, DurationRule>;

function readDuration(env: NodeJS.ProcessEnv, variable: keyof typeof durationVariables): number | undefined {
  const raw = env[variable];
  if (raw === undefined || raw.trim() === '') return undefined;
  return parseDuration(variable, raw, durationVariables[variable]);
}

/**
 * The server-side bounds from `DB_STATEMENT_TIMEOUT`, `DB_LOCK_TIMEOUT` and
 * `DB_IDLE_IN_TRANSACTION_TIMEOUT` (with a unit, `5s`, or bare milliseconds from 1000), with the defaults.
 *
 * @example
 * loadStatementBounds({ DB_STATEMENT_TIMEOUT: '30s' }) // { statementTimeoutMs: 30000, lockTimeoutMs: 2000, idleInTransactionTimeoutMs: 10000 }
 */
export function loadStatementBounds(env: NodeJS.ProcessEnv = process.env): StatementBounds {
  const bounds: StatementBounds = {
    statementTimeoutMs: readDuration(env, 'DB_STATEMENT_TIMEOUT') ?? defaultDbConfig.statementTimeoutMs,
    lockTimeoutMs: readDuration(env, 'DB_LOCK_TIMEOUT') ?? defaultDbConfig.lockTimeoutMs,
    idleInTransactionTimeoutMs: readDuration(env, 'DB_IDLE_IN_TRANSACTION_TIMEOUT') ?? defaultDbConfig.idleInTransactionTimeoutMs,
  };
  checkStatementBounds(bounds);
  return bounds;
}

// A bound in whole milliseconds, at least 1 and (unless `capped` is false) at most
// maxDurationMs: the one check of every duration of the config.
function checkDurationMs(variable: string, value: number, capped = true): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new ConfigError(variable, `${variable} must be a whole number of milliseconds, at least 1, got ${value}`);
  if (capped && value > maxDurationMs) throw new ConfigError(variable, tooLong(variable, `${value} ms`));
}

function checkStatementBounds(bounds: StatementBounds): void {
  for (const [variable, value] of [
    ['DB_STATEMENT_TIMEOUT', bounds.statementTimeoutMs],
    ['DB_LOCK_TIMEOUT', bounds.lockTimeoutMs],
    ['DB_IDLE_IN_TRANSACTION_TIMEOUT', bounds.idleInTransactionTimeoutMs],
  ] as const) {
    // 0 would mean "no bound" to PostgreSQL, which is what these exist to prevent; more than
    // INT_MAX ms PostgreSQL refuses at login, so every connection would fail.
    checkDurationMs(variable, value);
  }
  // A lock wait is part of its statement: with a longer lock_timeout, statement_timeout would
  // fire first and a held row would look like a slow statement (QueryCanceledError, not retryable).
  if (bounds.lockTimeoutMs > bounds.statementTimeoutMs) {
    throw new ConfigError(
      'DB_LOCK_TIMEOUT',
      `DB_LOCK_TIMEOUT (${bounds.lockTimeoutMs} ms) must not exceed DB_STATEMENT_TIMEOUT (${bounds.statementTimeoutMs} ms)`,
    );
  }
}

function readPreparedStatements(env: NodeJS.ProcessEnv): PreparedStatementsMode | undefined {
  const raw = env.DB_PREPARED_STATEMENTS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = raw.trim().toLowerCase();
  if (!isPreparedStatementsMode(value)) {
    throw new ConfigError('DB_PREPARED_STATEMENTS', `DB_PREPARED_STATEMENTS must be auto, on or off, got '${raw}'`);
  }
  return value;
}

function isPreparedStatementsMode(value: unknown): value is PreparedStatementsMode {
  return preparedStatementsModes.includes(value as PreparedStatementsMode);
}

function readInteger(env: NodeJS.ProcessEnv, variable: string, min: number): number | undefined {
  const raw = env[variable];
  if (raw === undefined || raw.trim() === '') return undefined;
  if (!/^\d+$/.test(raw.trim())) {
    throw new ConfigError(variable, `${variable} must be a whole number, got '${raw}'`);
  }
  const value = Number(raw.trim());
  if (value < min) throw new ConfigError(variable, `${variable} must be at least ${min}, got ${value}`);
  return value;
}

/**
 * Reads the pool settings from the environment (`DATABASE_URL`, `DB_MAX_CONNECTIONS`,
 * `DB_MIN_CONNECTIONS`, `DB_PREPARED_STATEMENTS`, and the durations `DB_ACQUIRE_TIMEOUT`,
 * `DB_STATEMENT_TIMEOUT`, `DB_LOCK_TIMEOUT`, `DB_IDLE_IN_TRANSACTION_TIMEOUT`,
 * `DB_CONNECT_TIMEOUT` and `DB_MAX_LIFETIME`, each best written with a unit: `30s`; see
 * {@link durationVariables} for what a bare number means) and
 * checks them, so a bad value fails at start-up with a message naming the variable instead of
 * at the first query.
 *
 * @example
 * const config = loadDbConfig(process.env) // throws ConfigError('DB_MIN_CONNECTIONS', …) when min > max
 */
export function loadDbConfig(env: NodeJS.ProcessEnv = process.env): DbConfig {
  const databaseUrl = env.DATABASE_URL?.trim();
  if (!databaseUrl) throw new ConfigError('DATABASE_URL', 'DATABASE_URL is not set');
  return resolveDbConfig({
    databaseUrl,
    maxConnections: readInteger(env, 'DB_MAX_CONNECTIONS', 1),
    minConnections: readInteger(env, 'DB_MIN_CONNECTIONS', 0),
    acquireTimeoutMs: readDuration(env, 'DB_ACQUIRE_TIMEOUT'),
    preparedStatements: readPreparedStatements(env),
    ...loadStatementBounds(env),
    connectTimeoutMs: readDuration(env, 'DB_CONNECT_TIMEOUT'),
    maxLifetimeMs: readDuration(env, 'DB_MAX_LIFETIME'),
  });
}

/**
 * What `createDb` is given: the URL, and any of {@link DbConfig}'s other fields, `undefined`
 * meaning the default (so `statementTimeoutMs: env.TIMEOUT` type-checks under
 * `exactOptionalPropertyTypes`).
 */
export type DbConfigInput = { [K in keyof DbConfig]?: DbConfig[K] | undefined } & { databaseUrl: string };

/** Fills defaults and checks the settings that depend on each other or on the URL. */
export function resolveDbConfig(partial: DbConfigInput): DbConfig {
  // From JavaScript, `databaseUrl: process.env.DATABASE_URL` with the variable unset.
  if (typeof partial.databaseUrl !== 'string' || partial.databaseUrl === '') {
    throw new ConfigError('DATABASE_URL', 'DATABASE_URL is not set (createDb was given no databaseUrl string)');
  }
  const given = withoutUndefined(partial);
  const statementTimeoutMs = given.statementTimeoutMs ?? defaultDbConfig.statementTimeoutMs;
  const config: DbConfig = {
    ...defaultDbConfig,
    callDeadlineMs: callDeadlineFor(statementTimeoutMs),
    ...given,
    databaseUrl: partial.databaseUrl,
  };
  // Read as pg reads it (a host-less socket URL included); a ConfigError never echoes it.
  parsePostgresUrl(config.databaseUrl);
  for (const [variable, value] of [
    ['DB_MAX_CONNECTIONS', config.maxConnections],
    ['DB_MIN_CONNECTIONS', config.minConnections],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(variable, `${variable} must be a whole number, got ${value}`);
    }
  }
  if (config.maxConnections < 1) {
    throw new ConfigError('DB_MAX_CONNECTIONS', `DB_MAX_CONNECTIONS must be at least 1, got ${config.maxConnections}`);
  }
  if (config.minConnections > config.maxConnections) {
    throw new ConfigError(
      'DB_MIN_CONNECTIONS',
      `DB_MIN_CONNECTIONS (${config.minConnections}) must not exceed DB_MAX_CONNECTIONS (${config.maxConnections})`,
    );
  }
  checkStatementBounds(config);
  // Each of these three ends up in a timer (pg-pool's acquire and lifetime timers, pg's
  // connect timer), and Node fires a timer longer than maxDurationMs after 1 ms; pg-pool reads
  // an acquire timeout of 0 as "wait forever". The call deadline is only compared with a clock.
  checkDurationMs('DB_ACQUIRE_TIMEOUT', config.acquireTimeoutMs);
  checkDurationMs('DB_CONNECT_TIMEOUT', config.connectTimeoutMs);
  checkDurationMs('DB_MAX_LIFETIME', config.maxLifetimeMs);
  checkDurationMs('callDeadlineMs', config.callDeadlineMs, false);
  // Node hands the kernel whole seconds (TCP_KEEPIDLE); below one second it would keep the
  // kernel's default of two hours; above TCP_KEEPIDLE's largest (32767 s) the kernel refuses it.
  if (!Number.isSafeInteger(config.keepAliveDelayMs) || config.keepAliveDelayMs < 1_000 || config.keepAliveDelayMs > maxKeepAliveDelayMs) {
    throw new ConfigError(
      'keepAliveDelayMs',
      `keepAliveDelayMs must be from 1000 ms to ${maxKeepAliveDelayMs} ms, got ${config.keepAliveDelayMs}`,
    );
  }
  if (config.callDeadlineMs <= config.statementTimeoutMs) {
    throw new ConfigError(
      'callDeadlineMs',
      `callDeadlineMs (${config.callDeadlineMs} ms) must exceed statement_timeout (${config.statementTimeoutMs} ms), ` +
        'or the client would give up on statements the server is still allowed to run',
    );
  }
  if (!isPreparedStatementsMode(config.preparedStatements)) {
    throw new ConfigError(
      'DB_PREPARED_STATEMENTS',
      `DB_PREPARED_STATEMENTS must be auto, on or off, got ${String(config.preparedStatements)}`,
    );
  }
  return config;
}

function withoutUndefined<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
