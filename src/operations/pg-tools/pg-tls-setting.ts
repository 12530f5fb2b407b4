import { parsePostgresUrl } from '../../db/database-target.js';

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
 * The libpq `sslmode` under which a native PostgreSQL program (pg_dump, pg_restore) connects
 * to `databaseUrl` with TLS wherever pg does, or undefined where pg connects in the clear
 * (libpq's and `PGSSLMODE`'s own choice then stands). pg's spellings are not libpq's:
 * `?ssl=true` means nothing to libpq, whose default `prefer` falls back to cleartext when the
 * server (or whoever stands in between) offers no TLS, and so does `sslmode=allow`. So
 * whatever makes pg use TLS (see {@link pgTlsSetting}) becomes a mode that never falls back:
 * - `no-verify` (TLS, certificate unchecked) is `require`;
 * - `verify-ca` and `verify-full`, which name a check, are `verify-full`, as pg 8 reads both;
 * - anything else (`ssl=true`, `ssl=1`, `sslmode=prefer|require|allow`, `PGSSLMODE=…`) is
 *   `verify-full` where a root certificate is given (`sslrootcert`, `PGSSLROOTCERT`), as pg 8
 *   checks the certificate and host name; and `require` otherwise: pg checks against Node's
 *   certificate authorities, which libpq cannot see (it would refuse every server without
 *   `~/.postgresql/root.crt`), so the program gets encryption without pg's check rather
 *   than no backup. Give `sslrootcert` (or `sslmode=verify-full` with it) for the check.
 * `sslmode=disable` and `ssl=0` are `disable`. With `uselibpqcompat=true`, pg reads `require`,
 * `verify-ca` and `verify-full` as libpq does, and they are passed on as they are; `prefer`,
 * `allow` and `ssl=true`, which pg still reads as TLS without fallback, are `require`.
 *
 * @example
 * libpqSslMode('postgresql://u:p@db.example.org/app?ssl=true') // 'require'
 * libpqSslMode('postgresql://u:p@db.example.org/app?ssl=true&sslrootcert=/etc/ssl/db-ca.pem') // 'verify-full'
 * libpqSslMode('postgresql://u:p@db.example.org/app?sslmode=no-verify') // 'require'
 */
export function libpqSslMode(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const { url } = parsePostgresUrl(databaseUrl);
  const parameter = (name: string) => url.searchParams.getAll(name).at(-1);
  const sslmode = parameter('sslmode');
  if (parameter('uselibpqcompat') === 'true') {
    // pg then reads require, verify-ca and verify-full as libpq does; but prefer, allow and
    // ?ssl=true are still TLS without fallback to pg, and would fall back in libpq.
    if (sslmode === 'disable' || sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full') return sslmode;
    return pgTlsSetting(databaseUrl, env) === undefined ? undefined : 'require';
  }
  const setting = pgTlsSetting(databaseUrl, env);
  if (setting === undefined) return sslmode === 'disable' || parameter('ssl') === '0' ? 'disable' : undefined;
  const mode = setting.replace(/^[^=]*=/, '');
  if (mode === 'no-verify') return 'require';
  if (mode === 'verify-ca' || mode === 'verify-full') return 'verify-full';
  return parameter('sslrootcert') || env.PGSSLROOTCERT ? 'verify-full' : 'require';
}
