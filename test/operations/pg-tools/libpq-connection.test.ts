import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';

const psql = path.join(debianPostgresBinDir, 'psql');

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

// pg reads `?ssl=true` as TLS; libpq knows no `ssl` parameter and, left to its default
// `prefer`, would talk in the clear to a server (or a man in the middle) without TLS.
describe.skipIf(!toolsAvailable([psql], 'the TLS test of the PostgreSQL programs (psql 15)'))('a PostgreSQL program given a URL that pg reads as TLS', () => {
  const run = (url: string) => {
    const connection = libpqConnection(url, { env: {} });
    const { PGSSLMODE: _ignored, ...inherited } = process.env;
    return spawnSync(psql, [...connection.args, '--no-psqlrc', '--tuples-only', '--command', 'SELECT 1'], {
      env: { ...inherited, ...connection.env },
      encoding: 'utf8',
    });
  };

  it('refuses a server without TLS rather than falling back to cleartext', () => {
    // The control: the same server, without ?ssl=true, is reached in the clear.
    const plain = run(inject('serverUrl'));
    expect(plain.status, plain.stderr).toBe(0);

    const tls = run(`${inject('serverUrl')}?ssl=true`);

    expect(tls.status).not.toBe(0);
    expect(tls.stderr).toMatch(/server does not support SSL, but SSL was required/);
  });
});
