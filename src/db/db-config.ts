import { ConfigError } from '../errors.js';
import { parsePostgresUrl } from './database-target.js';

/** Settings of the connection pool. Every field has the default the design names. */
export interface DbConfig {
  /** `postgresql://user:password@host:port/database`. */
  databaseUrl: string;
  /** Most connections the pool opens (`DB_MAX_CONNECTIONS`, default 10). */
  maxConnections: number;
  /** Connections opened at start-up and kept open (`DB_MIN_CONNECTIONS`, default 2). */
  minConnections: number;
  /** Longest wait for a free connection before {@link PoolTimeoutError} (`DB_ACQUIRE_TIMEOUT` in seconds, default 30). */
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
}

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
} as const satisfies Omit<DbConfig, 'databaseUrl'>;

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
 * `DB_MIN_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT` in seconds, `DB_PREPARED_STATEMENTS`) and checks them, so a bad value
 * fails at start-up with a message naming the variable instead of at the first query.
 *
 * @example
 * const config = loadDbConfig(process.env) // throws ConfigError('DB_MIN_CONNECTIONS', …) when min > max
 */
export function loadDbConfig(env: NodeJS.ProcessEnv = process.env): DbConfig {
  const databaseUrl = env.DATABASE_URL?.trim();
  if (!databaseUrl) throw new ConfigError('DATABASE_URL', 'DATABASE_URL is not set');
  const seconds = readInteger(env, 'DB_ACQUIRE_TIMEOUT', 1);
  return resolveDbConfig({
    databaseUrl,
    maxConnections: readInteger(env, 'DB_MAX_CONNECTIONS', 1),
    minConnections: readInteger(env, 'DB_MIN_CONNECTIONS', 0),
    acquireTimeoutMs: seconds === undefined ? undefined : seconds * 1000,
    preparedStatements: readPreparedStatements(env),
  });
}

/** Fills defaults and checks the settings that depend on each other or on the URL. */
export function resolveDbConfig(partial: Partial<DbConfig> & { databaseUrl: string }): DbConfig {
  const config: DbConfig = { ...defaultDbConfig, ...withoutUndefined(partial), databaseUrl: partial.databaseUrl };
  // Read as pg reads it (a host-less socket URL included); a ConfigError never echoes it.
  parsePostgresUrl(config.databaseUrl);
  for (const [variable, value] of [
    ['DB_MAX_CONNECTIONS', config.maxConnections],
    ['DB_MIN_CONNECTIONS', config.minConnections],
    ['DB_ACQUIRE_TIMEOUT', config.acquireTimeoutMs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(variable, `${variable} must be a whole number, got ${value}`);
    }
  }
  // pg-pool reads a connection timeout of 0 as "wait forever", which is what the timeout exists to prevent.
  if (config.acquireTimeoutMs < 1) {
    throw new ConfigError('DB_ACQUIRE_TIMEOUT', `DB_ACQUIRE_TIMEOUT must be at least 1 ms, got ${config.acquireTimeoutMs}`);
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
  if (!isPreparedStatementsMode(config.preparedStatements)) {
    throw new ConfigError(
      'DB_PREPARED_STATEMENTS',
      `DB_PREPARED_STATEMENTS must be auto, on or off, got ${String(config.preparedStatements)}`,
    );
  }
  return config;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
