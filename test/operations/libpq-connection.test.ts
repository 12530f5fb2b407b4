import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { libpqConnection } from '../../src/operations/libpq-connection.js';

describe('libpqConnection', () => {
  it('passes host, port, user and database as arguments and the password only in the environment', () => {
    const connection = libpqConnection('postgresql://app%40corp:p%40ss%20w0rd@db.example.org:6432/kenn%20william?sslmode=require', { env: {} });

    expect(connection.args).toEqual(['--host', 'db.example.org', '--port', '6432', '--username', 'app@corp', '--dbname', 'kenn william']);
    expect(connection.env).toEqual({ PGPASSWORD: 'p@ss w0rd', PGSSLMODE: 'require', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'kennwilliamson-db' });
    expect(connection.description).toBe('app@corp@db.example.org:6432/kenn william');
    expect(JSON.stringify(connection.args) + connection.description).not.toContain('w0rd');
  });

  it("names the program's connection (PGAPPNAME) as asked, unless the URL names it itself", () => {
    expect(libpqConnection('postgresql://u@h/db', { env: {}, applicationName: 'kennwilliamson-backup' }).env.PGAPPNAME).toBe('kennwilliamson-backup');
    expect(libpqConnection('postgresql://u@h/db?application_name=nightly', { env: {}, applicationName: 'kennwilliamson-backup' }).env.PGAPPNAME).toBe(
      'nightly',
    );
  });

  it('refuses a URL without a database, without echoing it', () => {
    expect(() => libpqConnection('postgresql://u:secret@host:5432/')).toThrow(ConfigError);
    expect(() => libpqConnection('postgresql://u:secret@host:5432/')).not.toThrow(/secret/);
  });
});
