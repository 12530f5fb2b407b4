import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { silentClientBoundsOptions } from '../../../src/db/silent-client-bounds.js';
import { ConfigError } from '../../../src/errors.js';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { withMaintenanceClient } from '../../../src/provisioning/database-admin.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';

const psql = path.join(debianPostgresBinDir, 'psql');

describe('libpqConnection', () => {
  it('passes host, port, user and database as arguments and the password only in the environment', () => {
    const connection = libpqConnection('postgresql://app%40corp:p%40ss%20w0rd@db.example.org:6432/kenn%20william?sslmode=require', { env: {} });

    expect(connection.args).toEqual(['--host', 'db.example.org', '--port', '6432', '--username', 'app@corp', '--dbname', 'kenn william']);
    expect(connection.env).toEqual({
      PGPASSWORD: 'p@ss w0rd',
      PGSSLMODE: 'require',
      PGCONNECT_TIMEOUT: '10',
      PGAPPNAME: 'kennwilliamson-db',
      PGOPTIONS: silentClientBoundsOptions,
    });
    expect(connection.description).toBe('app@corp@db.example.org:6432/kenn william');
    expect(JSON.stringify(connection.args) + connection.description).not.toContain('w0rd');
  });

  it("names the program's connection (PGAPPNAME) as asked, unless the URL names it itself", () => {
    expect(libpqConnection('postgresql://u@h/db', { env: {}, applicationName: 'kennwilliamson-backup' }).env.PGAPPNAME).toBe('kennwilliamson-backup');
    expect(libpqConnection('postgresql://u@h/db?application_name=nightly', { env: {}, applicationName: 'kennwilliamson-backup' }).env.PGAPPNAME).toBe(
      'nightly',
    );
  });

  it('with tcpKeepalive, names the database in a connection string that turns on TCP keepalive, which libpq reads from no variable', () => {
    const connection = libpqConnection("postgresql://u@db.example.org/it's%20a%5Cdb", { env: {}, tcpKeepalive: true });

    expect(connection.args).toEqual([
      '--host',
      'db.example.org',
      '--port',
      '5432',
      '--username',
      'u',
      '--dbname',
      "dbname='it\\'s a\\\\db' keepalives=1 keepalives_idle=5 keepalives_interval=1 keepalives_count=10 tcp_user_timeout=15000",
    ]);
  });

  // No tcp_user_timeout: Linux would end a live pg_dump that stops reading while its output
  // waits for a slow disk (a 14 s pause ended a 100 MB COPY at 10 s).
  it("gives the program's session the server-side bounds for a silent client, after the caller's own PGOPTIONS, and no limit on unacknowledged data", () => {
    expect(libpqConnection('postgresql://u@h/db', { env: {} }).env.PGOPTIONS).toBe(
      '-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=5 -c client_connection_check_interval=1000',
    );
    expect(libpqConnection('postgresql://u@h/db', { env: { PGOPTIONS: '-c work_mem=64MB' } }).env.PGOPTIONS).toBe(`-c work_mem=64MB ${silentClientBoundsOptions}`);
  });

  it('refuses a URL without a database, without echoing it', () => {
    expect(() => libpqConnection('postgresql://u:secret@host:5432/')).toThrow(ConfigError);
    expect(() => libpqConnection('postgresql://u:secret@host:5432/')).not.toThrow(/secret/);
  });
});

// pg reads `?ssl=true` as TLS; libpq knows no `ssl` parameter and, left to its default
// `prefer`, would talk in the clear to a server (or a man in the middle) without TLS.
// pg reads `?ssl=true` as TLS; libpq knows no `ssl` parameter and, left to its default
// `prefer`, would talk in the clear to a server (or a man in the middle) without TLS.
describe.skipIf(!toolsAvailable([psql], 'the keepalive test of the PostgreSQL programs (psql 15)'))('a PostgreSQL program given the connection string of tcpKeepalive', () => {
  it('reaches the database of that name, however it is quoted', async () => {
    const name = `kw it's a \\ db ${Date.now().toString(36)}`;
    const url = new URL(inject('serverUrl'));
    await withMaintenanceClient(url.toString(), (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
    try {
      url.pathname = `/${encodeURIComponent(name)}`;
      const connection = libpqConnection(url.toString(), { env: {}, tcpKeepalive: true });

      const result = spawnSync(psql, [...connection.args, '--no-psqlrc', '--tuples-only', '--no-align', '--command', 'SELECT current_database()'], {
        env: { ...process.env, ...connection.env },
        encoding: 'utf8',
      });

      expect(result.stderr).toBe('');
      expect(result.stdout.trim()).toBe(name);
    } finally {
      await withMaintenanceClient(inject('serverUrl'), (client) => client.query(`DROP DATABASE ${client.escapeIdentifier(name)}`));
    }
  });
});

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


