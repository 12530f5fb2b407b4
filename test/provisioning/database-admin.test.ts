import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { databaseUrlWith, ensureDatabase, isLocalDatabaseUrl, recreateDatabase, requireLocalDatabase } from '../../src/provisioning/database-admin.js';

describe('isLocalDatabaseUrl', () => {
  it.each([
    'postgresql://u:p@127.0.0.1:5432/db',
    'postgresql://u:p@localhost/db',
    'postgresql://u:p@[::1]/db',
    'postgresql:///db',
    'postgresql:///db?host=/var/run/postgresql',
    'postgresql://u:p@/db?host=/var/run/postgresql',
    // ?host= is where pg and libpq connect: the URL's own host is then not used.
    'postgresql://u:p@db.example.com/db?host=127.0.0.1',
  ])('treats %s as local', (url) => {
    expect(isLocalDatabaseUrl(url, {})).toBe(true);
  });

  it.each([
    'postgresql://u:p@db.example.com/db',
    'postgresql://u:p@10.0.0.5/db',
    'postgresql:///db?host=prod.example.com',
    'postgresql://u:p@127.0.0.1/db?host=prod.example.com',
  ])('treats %s as non-local', (url) => {
    expect(isLocalDatabaseUrl(url, {})).toBe(false);
  });

  it('follows PGHOST for a URL without a host, as pg does', () => {
    expect(isLocalDatabaseUrl('postgresql:///kennwilliamson', { PGHOST: 'db.example.org' })).toBe(false);
    expect(isLocalDatabaseUrl('postgresql:///kennwilliamson', { PGHOST: '/var/run/postgresql' })).toBe(true);
    expect(isLocalDatabaseUrl('postgresql://127.0.0.1/kennwilliamson', { PGHOST: 'db.example.org' })).toBe(true);
  });
});

describe('requireLocalDatabase', () => {
  it('names the host and where it came from, and lets --force through', () => {
    const url = 'postgresql://u:secret@/kennwilliamson';
    const env = { PGHOST: 'db.example.org' };
    expect(() => requireLocalDatabase(url, { force: false, action: 'reset', env })).toThrow(ConfigError);
    expect(() => requireLocalDatabase(url, { force: false, action: 'reset', env })).toThrow(
      "refusing to reset a database on the non-local host 'db.example.org' (from PGHOST); pass --force if you mean it",
    );
    expect(requireLocalDatabase(url, { force: true, action: 'reset', env })).toMatchObject({ host: 'db.example.org', database: 'kennwilliamson' });
  });

  it('reports a URL under the variable it came from', () => {
    const refusal = (url: string) => {
      try {
        requireLocalDatabase(url, { force: false, action: 'reset', env: {}, variable: 'ADMIN_DATABASE_URL' });
      } catch (error) {
        return error as ConfigError;
      }
      throw new Error('not refused');
    };
    expect(refusal('postgresql://u:secret@db.example.org/kennwilliamson')).toMatchObject({ variable: 'ADMIN_DATABASE_URL' });
    expect(refusal('postgresql://u:secret@127.0.0.1:99999/kennwilliamson').message).toContain('the port of ADMIN_DATABASE_URL');
  });
});

// The database a URL names is read by the one URL parser, and a fault is reported under the
// variable the URL came from, before any connection (nothing listens on port 1).
describe.each([
  ['ensureDatabase', ensureDatabase],
  ['recreateDatabase', recreateDatabase],
] as const)('%s', (_, act) => {
  it('reports a URL that names no database under the variable it came from', async () => {
    await expect(act('postgresql://u:secret@127.0.0.1:1/', { variable: 'MIGRATION_DATABASE_URL' })).rejects.toMatchObject({
      variable: 'MIGRATION_DATABASE_URL',
      message: 'MIGRATION_DATABASE_URL names no database',
    });
  });
});

describe('databaseUrlWith', () => {
  it('keeps a URL without a host (a Unix socket in ?host=) without one', () => {
    expect(databaseUrlWith('postgresql://u:p@/app?host=/var/run/postgresql', 'postgres')).toBe(
      'postgresql://u:p@/postgres?host=/var/run/postgresql',
    );
    expect(databaseUrlWith('postgresql://u:p@127.0.0.1:5432/app', 'postgres')).toBe('postgresql://u:p@127.0.0.1:5432/postgres');
  });
});
