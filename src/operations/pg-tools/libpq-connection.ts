import { databaseTarget, parsePostgresUrl, type DatabaseTarget } from '../../db/database-target.js';
import { silentClientBoundsOptions } from '../../db/silent-client-bounds.js';
import { ConfigError } from '../../errors.js';
import { libpqSslMode, pgTlsSetting } from './pg-tls-setting.js';

/** How to point a PostgreSQL client program (pg_dump, pg_restore, psql) at a database. */
export interface LibpqConnection {
  /** `--host … --port … --username … --dbname …`: never the password (with `tcpKeepalive`, `--dbname` is a connection string). */
  args: string[];
  /** `PGPASSWORD`, `PGSSLMODE` (see `libpqSslMode`), `PGCONNECT_TIMEOUT`, `PGOPTIONS` …, added to the program's environment. */
  env: Record<string, string>;
  /** The server the URL reaches, as pg reaches it (see `databaseTarget`). */
  target: DatabaseTarget;
  /** `user@host:port/database` of that server, for messages (no password). */
  description: string;
  /** What makes pg connect to this URL with TLS (`sslmode=require`, `ssl=true`, `PGSSLMODE=prefer` …), if anything (see `pgTlsSetting`). */
  tls: string | undefined;
}

// URL query parameters that libpq also reads from the environment; anything else in the
// URL's query is ignored rather than passed on the command line.
const queryParameterVariables: Record<string, string> = {
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
};

// The library's rule for a dead peer (see connectionOptions in src/db/library-client.ts):
// probes after 5 s of silence, then every second, ten times; and sent data left unacknowledged
// as long as that ends the connection too, since Linux sends no keepalive probe while data waits
// for its acknowledgement. libpq reads none of these from the environment: only a connection
// string carries them.
/** Seconds of silence after which a connection opened with `tcpKeepalive` ends (see keepaliveKeywords). */
export const libpqSilenceLimitSeconds = 15;

const keepaliveKeywords = `keepalives=1 keepalives_idle=5 keepalives_interval=1 keepalives_count=10 tcp_user_timeout=${libpqSilenceLimitSeconds * 1000}`;

// A value in a libpq connection string: quoted, with backslash and quote escaped.
const conninfoValue = (value: string) => `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;

/**
 * Splits a `postgresql://` URL into separate command-line arguments and environment
 * variables for a libpq program. Host, port and user are those {@link databaseTarget}
 * decides (the server pg reaches with the same URL and environment), passed explicitly so
 * that libpq's own defaults (its Unix socket, `PGHOST`) cannot send the program elsewhere.
 * The password goes into `PGPASSWORD` in the child's environment only, so it never shows
 * in `ps`, on a command line or in a message. `inContainer` is for a program that
 * `findPgTool` found in the docker-compose container because the URL reaches that
 * container's published port: inside, the same server is on loopback port 5432.
 * `tcpKeepalive` makes `--dbname` a connection string that also turns on TCP keepalive with
 * the library's short timings, so that a program cut off by a silent partition ends within
 * {@link libpqSilenceLimitSeconds} instead of waiting for the kernel's two hours (or, with data
 * unacknowledged, its quarter of an hour); for a native program only, since the WebAssembly
 * pg_dump's sockets are Node's and keep alive on their own.
 *
 * @example
 * const { args, env } = libpqConnection('postgresql://app:secret@127.0.0.1:5432/kennwilliamson')
 * // args: ['--host', '127.0.0.1', '--port', '5432', '--username', 'app', '--dbname', 'kennwilliamson']
 * // env:  { PGPASSWORD: 'secret', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'kennwilliamson-db', PGOPTIONS: '-c tcp_keepalives_idle=5 …' }
 */
export function libpqConnection(
  databaseUrl: string,
  options: { inContainer?: boolean; env?: NodeJS.ProcessEnv; applicationName?: string; tcpKeepalive?: boolean } = {},
): LibpqConnection {
  const target = databaseTarget(databaseUrl, options.env ?? process.env);
  const { url } = parsePostgresUrl(databaseUrl);
  // As pg: `?password=` over the URL's own.
  const password = url.searchParams.get('password') || decodeURIComponent(url.password);

  // The program's connection names itself in pg_stat_activity, as every connection of the
  // tools does; the URL's own `?application_name=` wins.
  const env: Record<string, string> = { PGCONNECT_TIMEOUT: '10', PGAPPNAME: options.applicationName ?? 'kennwilliamson-db' };
  for (const [parameter, variable] of Object.entries(queryParameterVariables)) {
    const value = url.searchParams.get(parameter);
    if (value !== null) env[variable] = value;
  }
  if (password) env.PGPASSWORD = password;
  // The program's session is ended by the server when this host goes silent, rather than
  // keeping its locks and snapshot for hours (see silentClientBoundsOptions); after any
  // options of the caller's own environment, so these win.
  const inheritedOptions = (options.env ?? process.env).PGOPTIONS?.trim();
  env.PGOPTIONS = inheritedOptions ? `${inheritedOptions} ${silentClientBoundsOptions}` : silentClientBoundsOptions;
  // TLS as pg connects: pg's spellings (`ssl=true`, `sslmode=no-verify`, pg's `prefer` that
  // checks the certificate) in libpq's words, so that no program falls back to cleartext.
  const sslmode = libpqSslMode(databaseUrl, options.env ?? process.env);
  if (sslmode !== undefined) env.PGSSLMODE = sslmode;

  const [host, port] = options.inContainer ? ['127.0.0.1', '5432'] : [target.host, String(target.port)];
  const args = ['--host', host, '--port', port];
  if (target.user) args.push('--username', target.user);
  // A database name containing '=' or starting with postgres:// would be read as a
  // connection string by libpq; ours never do, but refuse rather than guess.
  if (target.database.includes('=') || /^postgres(ql)?:\/\//.test(target.database)) {
    throw new ConfigError('DATABASE_URL', `database name '${target.database}' cannot be passed to the PostgreSQL tools`);
  }
  args.push('--dbname', options.tcpKeepalive ? `dbname=${conninfoValue(target.database)} ${keepaliveKeywords}` : target.database);
  return { args, env, target, description: target.description, tls: pgTlsSetting(databaseUrl, options.env ?? process.env) };
}
