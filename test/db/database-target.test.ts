import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseTarget } from '../../src/db/database-target.js';
import { ConfigError } from '../../src/errors.js';
import { libpqConnection } from '../../src/operations/pg-tools/libpq-connection.js';

describe('databaseTarget: the server a URL reaches, decided once', () => {
  it.each([
    // [url, environment, host, port, where the host came from]
    ['postgresql://u:p@db.example.org:6432/app', {}, 'db.example.org', 6432, 'url'],
    ['postgresql:///app', {}, 'localhost', 5432, 'default'],
    ['postgresql:///app', { PGHOST: 'db.example.org', PGPORT: '6543' }, 'db.example.org', 6543, 'PGHOST'],
    ['postgresql://u:p@/app?host=/var/run/postgresql', { PGHOST: 'db.example.org' }, '/var/run/postgresql', 5432, 'host parameter'],
    ['postgresql://127.0.0.1/app?host=db.example.org', {}, 'db.example.org', 5432, 'host parameter'],
    ['postgresql://db.example.org/app?host=127.0.0.1&port=6000', {}, '127.0.0.1', 6000, 'host parameter'],
    ['postgresql://h/app?host=first&host=last', {}, 'last', 5432, 'host parameter'],
    ['postgresql://%2Fvar%2Frun%2Fpostgresql/app', { PGHOST: 'db.example.org' }, '/var/run/postgresql', 5432, 'url'],
    ['postgresql://[::1]:5433/app', { PGPORT: '1' }, '::1', 5433, 'url'],
  ] as const)('%s with %j reaches %s:%s (from %s)', (url, env, host, port, hostFrom) => {
    expect(databaseTarget(url, env)).toMatchObject({ host, port, hostFrom, database: 'app' });
  });

  // The same decisions as pg itself makes, read from the client pg builds for the URL.
  describe('agrees with pg', () => {
    const saved = { PGHOST: process.env.PGHOST, PGPORT: process.env.PGPORT };
    afterEach(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    it.each([
      'postgresql:///app',
      'postgresql://u:p@/app?host=/var/run/postgresql',
      'postgresql://127.0.0.1/app?host=db.example.org',
      'postgresql://db.example.org:7000/app?port=6000',
      'postgresql://h/app?host=first&host=last',
      'postgresql://%2Fvar%2Frun%2Fpostgresql/app',
      'postgresql://u@db.example.org/app',
    ])('%s', (url) => {
      process.env.PGHOST = 'pghost.example.org';
      process.env.PGPORT = '6543';
      const client = new pg.Client({ connectionString: url });
      const target = databaseTarget(url);
      expect({ host: target.host, port: target.port }).toEqual({ host: client.host, port: client.port });
    });
  });

  it.each([
    ['postgresql://u:p@127.0.0.1/app?hostaddr=192.0.2.10', 'hostaddr'],
    ['postgresql://u:p@127.0.0.1/app?host=localhost,db.example.org', 'several hosts'],
    ['postgresql://u:p@a,b/app', 'several hosts'],
    ['postgresql://u:p@127.0.0.1/app?port=5432,5433', 'port'],
    ['postgresql://u:secret@127.0.0.1:5432/', 'names no database'],
    ['mysql://u:secret@127.0.0.1/app', 'postgresql://'],
  ])('refuses %s, which pg and libpq read differently (or not at all), without echoing it', (url, message) => {
    expect(() => databaseTarget(url, {})).toThrow(ConfigError);
    expect(() => databaseTarget(url, {})).toThrow(message);
    expect(() => databaseTarget(url, {})).not.toThrow(/secret/);
  });

  // Unencoded, these end the user information early: the rest of the password becomes a port
  // (`Invalid URL`), a path or a fragment, and the host the user name (`ENOTFOUND`).
  it.each([
    ['postgresql://owner:12#secret@db.example.org/app', "holds a '#'"],
    ['postgresql://owner:se#cret@db.example.org/app', "holds a '#'"],
    ['postgresql://owner:12/secret@db.example.org/app', "has an '@' after its host part ended"],
    ['postgresql://owner:12?secret@db.example.org/app', "has an '@' after its host part ended"],
    ['postgresql://owner:secret@db.example.org:99999/app', 'the port of MIGRATION_DATABASE_URL must be one number from 1 to 65535'],
    ['postgresql://owner:secret@db.example.org:54x/app', 'the port of MIGRATION_DATABASE_URL must be one number from 1 to 65535'],
  ])('explains %s under the variable it came from, without echoing it', (url, message) => {
    const attempt = () => databaseTarget(url, {}, 'MIGRATION_DATABASE_URL');
    expect(attempt).toThrow(message);
    expect(attempt).toThrow(expect.objectContaining({ variable: 'MIGRATION_DATABASE_URL' }));
    expect(attempt).not.toThrow(/secret|(?<!MIGRATION_)DATABASE_URL/);
  });

  it('reads an @ in a query value (?user=a@b) and an encoded password as they are', () => {
    expect(databaseTarget('postgresql://db.example.org/app?user=kenn@corp', {})).toMatchObject({ user: 'kenn@corp' });
    expect(databaseTarget('postgresql://owner:12%23se%2Fc%3Fret@db.example.org/app', {})).toMatchObject({ host: 'db.example.org' });
  });

  it('hands the libpq tools that same server explicitly, so PGHOST and libpq defaults cannot send them elsewhere', () => {
    const connection = libpqConnection('postgresql://app:pw@/kennwilliamson', { env: { PGHOST: 'db.example.org', PGPORT: '6432' } });
    expect(connection.args).toEqual(['--host', 'db.example.org', '--port', '6432', '--username', 'app', '--dbname', 'kennwilliamson']);
    expect(connection.description).toBe('app@db.example.org:6432/kennwilliamson');
    expect(libpqConnection('postgresql://u@127.0.0.1/db?host=/tmp/sockets', { env: {} }).args.slice(0, 4)).toEqual([
      '--host', '/tmp/sockets', '--port', '5432',
    ]);
  });
});
