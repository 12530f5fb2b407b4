import { describe, expect, it } from 'vitest';
import { loadDbConfig, resolveDbConfig } from '../../src/db/db-config.js';
import { ConfigError } from '../../src/errors.js';
import { migrationLockTimeoutMs } from '../../src/migrations/migration-settings.js';

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

  it('refuses 0, which would turn the bound off, saying so rather than asking for a unit', () => {
    const error = configError({ DATABASE_URL: url, DB_STATEMENT_TIMEOUT: '0' });
    expect(error.message).toBe("DB_STATEMENT_TIMEOUT must be at least 1ms, got '0'");
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
    ['DB_ACQUIRE_TIMEOUT', 'soon'],
    ['DB_MAX_CONNECTIONS', '0'],
    ['DB_ACQUIRE_TIMEOUT', '0'],
    ['DB_PREPARED_STATEMENTS', 'yes'],
    ['DB_PREPARED_STATEMENTS', 'false'],
  ])('fails naming %s when it is %s', (variable, value) => {
    const error = configError({ DATABASE_URL: url, [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(variable);
  });

  // Node fires a longer timer after 1 ms (every connection retired at once); PostgreSQL refuses a
  // longer statement_timeout, lock_timeout or idle_in_transaction_session_timeout at login.
  it.each(['DB_STATEMENT_TIMEOUT', 'DB_IDLE_IN_TRANSACTION_TIMEOUT', 'DB_CONNECT_TIMEOUT', 'DB_MAX_LIFETIME', 'DB_ACQUIRE_TIMEOUT'])(
    'refuses %s=30d, longer than PostgreSQL and Node accept (2^31 - 1 ms), naming the variable',
    (variable) => {
      const error = configError({ DATABASE_URL: url, [variable]: '30d' });
      expect(error.variable).toBe(variable);
      expect(error.message).toContain(`${variable} must be at most 2147483647ms`);
    },
  );

  it('accepts a duration up to 2^31 - 1 ms', () => {
    expect(loadDbConfig({ DATABASE_URL: url, DB_MAX_LIFETIME: '24d', DB_STATEMENT_TIMEOUT: '2147483647ms' })).toMatchObject({
      maxLifetimeMs: 24 * 86_400_000,
      statementTimeoutMs: 2_147_483_647,
    });
  });

  it('refuses the same bounds given to createDb in milliseconds', () => {
    expect(() => resolveDbConfig({ databaseUrl: url, statementTimeoutMs: 2 ** 31 })).toThrow(/DB_STATEMENT_TIMEOUT must be at most/);
    expect(() => resolveDbConfig({ databaseUrl: url, maxLifetimeMs: 30 * 86_400_000 })).toThrow(/DB_MAX_LIFETIME must be at most/);
  });

  it('reads DB_ACQUIRE_TIMEOUT with a unit too, and a bare number as the seconds it always meant', () => {
    expect(loadDbConfig({ DATABASE_URL: url, DB_ACQUIRE_TIMEOUT: '1.5s' }).acquireTimeoutMs).toBe(1_500);
    expect(loadDbConfig({ DATABASE_URL: url, DB_ACQUIRE_TIMEOUT: '500ms' }).acquireTimeoutMs).toBe(500);
    expect(loadDbConfig({ DATABASE_URL: url, DB_ACQUIRE_TIMEOUT: '2min' }).acquireTimeoutMs).toBe(120_000);
    expect(loadDbConfig({ DATABASE_URL: url, DB_ACQUIRE_TIMEOUT: '45' }).acquireTimeoutMs).toBe(45_000);
  });

  // A bare number keeps its meaning (seconds for DB_ACQUIRE_TIMEOUT, milliseconds for the
  // others, as PostgreSQL reads statement_timeout); one that would be absurd for its bound was
  // most likely written in the other unit, and is refused rather than obeyed.
  it.each([
    ['DB_CONNECT_TIMEOUT', '30', "'30s' or '30ms'"],
    ['DB_STATEMENT_TIMEOUT', '5', "'5s' or '5ms'"],
    ['DB_LOCK_TIMEOUT', '750', "'750s' or '750ms'"],
    ['DB_IDLE_IN_TRANSACTION_TIMEOUT', '60', "'60s' or '60ms'"],
    ['DB_MAX_LIFETIME', '1800', "'1800s' or '1800ms'"],
    ['DB_ACQUIRE_TIMEOUT', '30000', "'30000ms' or '30000s'"],
  ])('refuses a bare %s=%s as ambiguous, asking for a unit (%s)', (variable, value, suggestion) => {
    const error = configError({ DATABASE_URL: url, [variable]: value });
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(`${variable}=${value} is ambiguous`);
    expect(error.message).toContain(`Write the unit: ${suggestion}`);
  });

  it('takes the same values with their unit', () => {
    expect(
      loadDbConfig({
        DATABASE_URL: url,
        DB_CONNECT_TIMEOUT: '30ms',
        DB_STATEMENT_TIMEOUT: '5s',
        DB_LOCK_TIMEOUT: '750ms',
        DB_MAX_LIFETIME: '1800s',
        DB_ACQUIRE_TIMEOUT: '30000ms',
      }),
    ).toMatchObject({ connectTimeoutMs: 30, statementTimeoutMs: 5_000, lockTimeoutMs: 750, maxLifetimeMs: 1_800_000, acquireTimeoutMs: 30_000 });
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

  // createDb({ databaseUrl: process.env.DATABASE_URL }) with the variable unset, from JavaScript
  // (or TypeScript that casts): as createDb() says it, not a TypeError from deep in the URL parser.
  it.each([undefined, '', 42])('refuses a databaseUrl of %o as DATABASE_URL not set, naming DATABASE_URL', (databaseUrl) => {
    expect(() => resolveDbConfig({ databaseUrl } as unknown as { databaseUrl: string })).toThrow(
      expect.objectContaining({ name: 'ConfigError', variable: 'DATABASE_URL', message: expect.stringMatching(/^DATABASE_URL is not set/) }),
    );
  });
});

describe('migrationLockTimeoutMs', () => {
  it('reads MIGRATION_LOCK_TIMEOUT with a unit, or bare as the seconds it always meant', () => {
    expect(migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '90' })).toBe(90_000);
    expect(migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '10min' })).toBe(600_000);
    expect(migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '1500ms' })).toBe(1_500);
  });

  it('refuses a bare number of milliseconds as ambiguous, and one past 2^31 - 1 ms', () => {
    expect(() => migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '300000' })).toThrow(/MIGRATION_LOCK_TIMEOUT=300000 is ambiguous/);
    expect(() => migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '30d' })).toThrow(/MIGRATION_LOCK_TIMEOUT must be at most/);
  });
});
