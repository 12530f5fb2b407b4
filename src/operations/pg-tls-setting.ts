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
