import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { libpqSslMode, pgTlsSetting } from '../../../src/operations/pg-tools/pg-tls-setting.js';
import { wasmPgDumpRefusal } from '../../../src/operations/wasm-pg-dump/wasm-pg-dump.js';

// pg's own reading of a URL, as the oracle: whatever pg would connect to with TLS, the
// WebAssembly pg_dump (which has none) must refuse.
const ConnectionParameters = createRequire(import.meta.url)('pg/lib/connection-parameters.js') as new (url: string) => { ssl: unknown };

function pgUsesTls(url: string, pgsslmode: string | undefined): boolean {
  const saved = process.env.PGSSLMODE;
  if (pgsslmode === undefined) delete process.env.PGSSLMODE;
  else process.env.PGSSLMODE = pgsslmode;
  try {
    return Boolean(new ConnectionParameters(url).ssl);
  } finally {
    if (saved === undefined) delete process.env.PGSSLMODE;
    else process.env.PGSSLMODE = saved;
  }
}

const base = 'postgresql://app:secret@db.example.org:5432/kennwilliamson';

describe('which URLs pg connects to with TLS', () => {
  it.each([
    ['', undefined, undefined],
    ['?sslmode=disable', undefined, undefined],
    ['?sslmode=allow', undefined, 'sslmode=allow'],
    ['?sslmode=prefer', undefined, 'sslmode=prefer'],
    ['?sslmode=require', undefined, 'sslmode=require'],
    ['?sslmode=verify-ca', undefined, 'sslmode=verify-ca'],
    ['?sslmode=verify-full', undefined, 'sslmode=verify-full'],
    ['?sslmode=no-verify', undefined, 'sslmode=no-verify'],
    ['?sslmode=prefer&uselibpqcompat=true', undefined, 'sslmode=prefer'],
    ['?ssl=true', undefined, 'ssl=true'],
    ['?ssl=1', undefined, 'ssl=1'],
    ['?ssl=no-verify', undefined, 'ssl=no-verify'],
    ['?ssl=false', undefined, 'ssl=false'],
    ['?ssl=0', undefined, undefined],
    ['?ssl=', 'require', undefined],
    ['?ssl=0&sslmode=require', undefined, 'sslmode=require'],
    ['?ssl=true&sslmode=disable', undefined, undefined],
    ['?sslmode=require&sslmode=disable', undefined, undefined],
    ['?sslnegotiation=direct', undefined, 'sslnegotiation=direct'],
    ['', 'disable', undefined],
    ['', 'allow', undefined],
    ['', 'prefer', 'PGSSLMODE=prefer'],
    ['', 'require', 'PGSSLMODE=require'],
    ['', 'verify-ca', 'PGSSLMODE=verify-ca'],
    ['', 'verify-full', 'PGSSLMODE=verify-full'],
    ['', 'no-verify', 'PGSSLMODE=no-verify'],
    ['?sslmode=disable', 'require', undefined],
    ['?ssl=0', 'require', undefined],
  ])('%s with PGSSLMODE=%s: %s, as pg itself decides', (query, pgsslmode, setting) => {
    const url = `${base}${query}`;
    const env = pgsslmode === undefined ? {} : { PGSSLMODE: pgsslmode };

    expect(pgTlsSetting(url, env)).toBe(setting);
    expect(pgUsesTls(url, pgsslmode)).toBe(setting !== undefined);
  });

  it('refuses the WebAssembly pg_dump for such a URL, saying to install a native pg_dump', () => {
    const env = { PGSSLMODE: 'prefer' };
    expect(wasmPgDumpRefusal(libpqConnection(base, { env }), env)).toBe(
      'the WebAssembly pg_dump has no TLS support and cannot honour PGSSLMODE=prefer, with which pg connects to this server over TLS; ' +
        "it is meant for local servers: to back up over TLS, install PostgreSQL's client tools (a native pg_dump at least as new as the server) " +
        'and put them on PATH or in PG_DUMP',
    );
    expect(wasmPgDumpRefusal(libpqConnection(base, { env: {} }), {})).toBeUndefined();
  });
});

describe('how a native pg_dump or pg_restore connects where pg uses TLS', () => {
  it.each([
    ['', {}, undefined],
    ['?sslmode=disable', {}, 'disable'],
    ['?ssl=0', {}, 'disable'],
    ['?ssl=true', {}, 'require'],
    ['?ssl=1', {}, 'require'],
    ['?ssl=no-verify', {}, 'require'],
    ['?sslmode=no-verify', {}, 'require'],
    ['?sslmode=allow', {}, 'require'],
    ['?sslmode=prefer', {}, 'require'],
    ['?sslmode=require', {}, 'require'],
    ['?sslmode=verify-ca', {}, 'verify-full'],
    ['?sslmode=verify-full', {}, 'verify-full'],
    ['?ssl=true&sslrootcert=/etc/ssl/db-ca.pem', {}, 'verify-full'],
    ['?sslmode=require&sslrootcert=/etc/ssl/db-ca.pem', {}, 'verify-full'],
    ['?ssl=true', { PGSSLROOTCERT: '/etc/ssl/db-ca.pem' }, 'verify-full'],
    ['', { PGSSLMODE: 'prefer' }, 'require'],
    ['', { PGSSLMODE: 'no-verify' }, 'require'],
    ['?sslmode=prefer&uselibpqcompat=true', {}, 'require'],
    ['?sslmode=allow&uselibpqcompat=true', {}, 'require'],
    ['?ssl=true&uselibpqcompat=true', {}, 'require'],
    ['?sslmode=verify-ca&uselibpqcompat=true&sslrootcert=/etc/ssl/db-ca.pem', {}, 'verify-ca'],
    ['?sslmode=require&uselibpqcompat=true', {}, 'require'],
    ['?sslmode=disable&uselibpqcompat=true', {}, 'disable'],
    ['?uselibpqcompat=true', {}, undefined],
  ])('%s with %o: PGSSLMODE=%s, never a mode that falls back to cleartext', (query, env, mode) => {
    const connection = libpqConnection(`${base}${query}`, { env });
    expect(connection.env.PGSSLMODE).toBe(mode);
    expect(libpqSslMode(`${base}${query}`, env)).toBe(mode);
  });
});
