import { parsePostgresUrl } from '../db/database-target.js';

/**
 * What makes pg (8.23: pg-connection-string, then ConnectionParameters) connect to
 * `databaseUrl` with TLS, said as the setting that does it (`ssl=true`, `sslmode=prefer`,
 * `PGSSLMODE=require` …), or undefined when pg connects in the clear. pg's rules, in order:
 * `?ssl=true|1` is on and `?ssl=0` off, any other non-empty `?ssl=` value is on (`no-verify`
 * among them); any of `sslmode`, `sslcert`, `sslkey`, `sslrootcert` turns it on, whatever
 * `ssl` said, unless `sslmode=disable` (every other mode, `prefer` and `allow` included, is
 * TLS to pg); `sslnegotiation=direct` turns it on when nothing else set it; and only when the
 * URL sets none of these does `PGSSLMODE` count (`prefer`, `require`, `verify-ca`,
 * `verify-full`, `no-verify`). A later duplicate parameter wins, as in pg.
 *
 * @example
 * pgTlsSetting('postgresql://u:p@db.example.org/app?ssl=true') // 'ssl=true'
 * pgTlsSetting('postgresql://u:p@127.0.0.1/app', { PGSSLMODE: 'prefer' }) // 'PGSSLMODE=prefer'
 */
export function pgTlsSetting(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const { url } = parsePostgresUrl(databaseUrl);
  const parameter = (name: string) => url.searchParams.getAll(name).at(-1);
  const ssl = parameter('ssl');
  const sslmode = parameter('sslmode');
  const files = ['sslcert', 'sslkey', 'sslrootcert'].find((name) => parameter(name));

  let setting: string | undefined;
  let decided = ssl !== undefined;
  if (ssl !== undefined && ssl !== '' && ssl !== '0') setting = `ssl=${ssl}`;
  if (sslmode || files) {
    decided = true;
    setting = sslmode === 'disable' ? undefined : sslmode ? `sslmode=${sslmode}` : files;
  }
  if (!decided && parameter('sslnegotiation') === 'direct') return 'sslnegotiation=direct';
  if (decided) return setting;
  const fromEnv = env.PGSSLMODE;
  return fromEnv && ['prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'].includes(fromEnv) ? `PGSSLMODE=${fromEnv}` : undefined;
}

/**
 * The libpq `sslmode` under which a native PostgreSQL program (pg_dump) connects to
 * `databaseUrl` as pg does, or undefined to leave libpq its own (and `PGSSLMODE`'s) choice
 * where pg connects in the clear without the URL saying so. pg's spellings are not libpq's:
 * `?ssl=true` means nothing to libpq, whose default `prefer` falls back to cleartext, and pg
 * 8 reads `sslmode=prefer`, `require` and `verify-ca` as `verify-full` (certificate and host
 * name checked). So: whatever makes pg connect with TLS and check the server (see
 * {@link pgTlsSetting}) is `verify-full`; `no-verify` (TLS, unchecked) is `require`;
 * `sslmode=disable` and `ssl=0` are `disable`. With `uselibpqcompat=true`, pg reads `sslmode`
 * as libpq does, and it is passed on as it is.
 *
 * @example
 * libpqSslMode('postgresql://u:p@db.example.org/app?ssl=true') // 'verify-full'
 * libpqSslMode('postgresql://u:p@db.example.org/app?sslmode=no-verify') // 'require'
 */
export function libpqSslMode(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const { url } = parsePostgresUrl(databaseUrl);
  const parameter = (name: string) => url.searchParams.getAll(name).at(-1);
  const sslmode = parameter('sslmode');
  if (parameter('uselibpqcompat') === 'true') return sslmode;
  const setting = pgTlsSetting(databaseUrl, env);
  if (setting === undefined) return sslmode === 'disable' || parameter('ssl') === '0' ? 'disable' : undefined;
  return /^(?:sslmode|ssl|PGSSLMODE)=no-verify$/.test(setting) ? 'require' : 'verify-full';
}
