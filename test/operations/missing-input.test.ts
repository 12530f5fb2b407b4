import { describe, expect, it, vi } from 'vitest';
import { ConfigError, DbError } from '../../src/errors.js';
import { backupDatabase, databaseUrlAs, ensureAppRole, ensureDatabase, provisionAppRole, provisionDatabase, restoreDatabase } from '../../src/operations/index.js';

// From plain JavaScript, or TypeScript's `process.env.X!`, a URL or an input object may be
// missing: every error the package throws extends DbError, so these are ConfigErrors naming
// what is missing, where they were TypeErrors ("Cannot read properties of undefined").
describe('the operations called without their URL or owner', () => {
  const missing = undefined as never;
  it.each([
    ['backupDatabase', 'databaseUrl', () => backupDatabase({ databaseUrl: missing, backupDir: '/nonexistent', environment: 'production', keep: 1 } as Parameters<typeof backupDatabase>[0])],
    ['restoreDatabase', 'databaseUrl', () => restoreDatabase({ databaseUrl: missing, backup: missing })],
    ['ensureDatabase', 'DATABASE_URL', () => ensureDatabase(missing)],
    ['databaseUrlAs', 'DATABASE_URL', async () => databaseUrlAs(missing, 'kennwilliamson', 'password')],
    ['provisionDatabase', 'ADMIN_DATABASE_URL', () => provisionDatabase({ adminUrl: missing, owner: { user: 'kennwilliamson', password: 'password' } })],
    ['provisionAppRole', 'ADMIN_DATABASE_URL', () => provisionAppRole({ adminUrl: missing, user: 'kennwilliamson_app', password: 'password' })],
    ['ensureAppRole', 'databaseUrl', () => ensureAppRole({ databaseUrl: missing, user: 'kennwilliamson_app' })],
  ])('%s: a ConfigError naming %s, before it connects', async (_name, variable, call) => {
    vi.stubEnv('MIGRATION_DATABASE_URL', '');
    vi.stubEnv('DATABASE_URL', '');
    try {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toBeInstanceOf(DbError);
      expect(error).toMatchObject({ variable, message: `${variable} is not set (no URL was given)` });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('provisionDatabase without its owner: a ConfigError naming DB_OWNER_USER', async () => {
    const error = await provisionDatabase({ adminUrl: 'postgresql://postgres@127.0.0.1:1/kennwilliamson', owner: missing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ variable: 'DB_OWNER_USER' });
  });
});
