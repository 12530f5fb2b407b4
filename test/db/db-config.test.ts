import { describe, expect, it } from 'vitest';
import { loadDbConfig, resolveDbConfig } from '../../src/db/db-config.js';
import { ConfigError } from '../../src/errors.js';

const url = 'postgresql://app:s3cret-password@db.internal:5432/kennwilliamson';

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadDbConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadDbConfig', () => {
  it('uses the design defaults: 10 max, 2 min, 30 s acquire timeout', () => {
    expect(loadDbConfig({ DATABASE_URL: url })).toMatchObject({
      databaseUrl: url,
      maxConnections: 10,
      minConnections: 2,
      acquireTimeoutMs: 30_000,
      preparedStatements: 'auto',
    });
  });

  it('bounds every wait by default: 5 s statements, 2 s lock waits, 10 s idle in a transaction, 10 s deadline beyond the statement, 10 s to connect, 30 min lifetime', () => {
    expect(loadDbConfig({ DATABASE_URL: url })).toMatchObject({
      statementTimeoutMs: 5_000,
      lockTimeoutMs: 2_000,
      idleInTransactionTimeoutMs: 10_000,
      callDeadlineMs: 10_000,
      connectTimeoutMs: 10_000,
      keepAliveDelayMs: 5_000,
      maxLifetimeMs: 30 * 60_000,
    });
  });

  it('reads the bounds in milliseconds or with a unit, and the call deadline follows statement_timeout', () => {
    expect(
      loadDbConfig({
        DATABASE_URL: url,
        DB_STATEMENT_TIMEOUT: '30s',
        DB_LOCK_TIMEOUT: '1500',
        DB_IDLE_IN_TRANSACTION_TIMEOUT: '1.5min',
        DB_CONNECT_TIMEOUT: '2500ms',
        DB_MAX_LIFETIME: '1h',
      }),
    ).toMatchObject({
      statementTimeoutMs: 30_000,
      lockTimeoutMs: 1_500,
      idleInTransactionTimeoutMs: 90_000,
      callDeadlineMs: 35_000,
      connectTimeoutMs: 2_500,
      maxLifetimeMs: 3_600_000,
    });
  });

  it.each([
    ['DB_STATEMENT_TIMEOUT', 'soon'],
    ['DB_STATEMENT_TIMEOUT', '0'],
    ['DB_LOCK_TIMEOUT', '5 minutes'],
    ['DB_IDLE_IN_TRANSACTION_TIMEOUT', '-1s'],
    ['DB_IDLE_IN_TRANSACTION_TIMEOUT', '0.5ms'],
    ['DB_CONNECT_TIMEOUT', '10 s s'],
    ['DB_MAX_LIFETIME', '1e3'],
  ])('refuses %s=%s with a ConfigError naming the variable', (variable, value) => {
    const error = configError({ DATABASE_URL: url, [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
  });

  it('refuses a lock_timeout longer than statement_timeout, which would fire first', () => {
    const error = configError({ DATABASE_URL: url, DB_STATEMENT_TIMEOUT: '1s', DB_LOCK_TIMEOUT: '2s' });
    expect(error.variable).toBe('DB_LOCK_TIMEOUT');
  });

  it('refuses a call deadline that does not exceed statement_timeout', () => {
    expect(() => resolveDbConfig({ databaseUrl: url, statementTimeoutMs: 1_000, callDeadlineMs: 1_000 })).toThrow(ConfigError);
  });

  it('reads DB_PREPARED_STATEMENTS as auto, on or off, in any case', () => {
    expect(loadDbConfig({ DATABASE_URL: url, DB_PREPARED_STATEMENTS: 'off' }).preparedStatements).toBe('off');
    expect(loadDbConfig({ DATABASE_URL: url, DB_PREPARED_STATEMENTS: ' On ' }).preparedStatements).toBe('on');
    expect(loadDbConfig({ DATABASE_URL: url, DB_PREPARED_STATEMENTS: 'AUTO' }).preparedStatements).toBe('auto');
  });

  it('reads DB_MAX_CONNECTIONS, DB_MIN_CONNECTIONS and DB_ACQUIRE_TIMEOUT (seconds)', () => {
    expect(
      loadDbConfig({ DATABASE_URL: url, DB_MAX_CONNECTIONS: '4', DB_MIN_CONNECTIONS: '1', DB_ACQUIRE_TIMEOUT: '5' }),
    ).toMatchObject({ maxConnections: 4, minConnections: 1, acquireTimeoutMs: 5_000 });
  });

  it('accepts a URL with no host before the path, for a Unix socket, as pg does', () => {
    const socketUrl = 'postgresql://app:pw@/kennwilliamson?host=/run/postgresql';
    expect(loadDbConfig({ DATABASE_URL: socketUrl }).databaseUrl).toBe(socketUrl);
  });

  it('fails naming DATABASE_URL when it is missing or not a postgres URL, without echoing it', () => {
    expect(configError({}).variable).toBe('DATABASE_URL');
    const bad = configError({ DATABASE_URL: 'mysql://app:s3cret-password@db/x' });
    expect(bad.variable).toBe('DATABASE_URL');
    expect(bad.message).not.toContain('s3cret-password');
  });

  it.each([
    ['DB_MAX_CONNECTIONS', 'ten'],
    ['DB_MIN_CONNECTIONS', '-1'],
    ['DB_ACQUIRE_TIMEOUT', '1.5'],
    ['DB_MAX_CONNECTIONS', '0'],
    ['DB_ACQUIRE_TIMEOUT', '0'],
    ['DB_PREPARED_STATEMENTS', 'yes'],
    ['DB_PREPARED_STATEMENTS', 'false'],
  ])('fails naming %s when it is %s', (variable, value) => {
    const error = configError({ DATABASE_URL: url, [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
  });

  it('fails naming DB_MIN_CONNECTIONS when it exceeds DB_MAX_CONNECTIONS', () => {
    const error = configError({ DATABASE_URL: url, DB_MAX_CONNECTIONS: '2', DB_MIN_CONNECTIONS: '5' });
    expect(error.variable).toBe('DB_MIN_CONNECTIONS');
    expect(error.message).toBe('DB_MIN_CONNECTIONS (5) must not exceed DB_MAX_CONNECTIONS (2)');
  });
});

describe('resolveDbConfig', () => {
  it('refuses acquireTimeoutMs 0, which pg-pool would read as "wait forever", naming DB_ACQUIRE_TIMEOUT', () => {
    const error = (() => {
      try {
        return resolveDbConfig({ databaseUrl: url, acquireTimeoutMs: 0 });
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ variable: 'DB_ACQUIRE_TIMEOUT' });
    expect(resolveDbConfig({ databaseUrl: url, acquireTimeoutMs: 1 })).toMatchObject({ acquireTimeoutMs: 1 });
  });
});
