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
