import { databaseTarget, parsePostgresUrl, type DatabaseTarget } from '../../db/database-target.js';
import { ConfigError } from '../../errors.js';
import { libpqSslMode, pgTlsSetting } from './pg-tls-setting.js';

/** How to point a PostgreSQL client program (pg_dump, pg_restore, psql) at a database. */
export interface LibpqConnection {
  /** `--host … --port … --username … --dbname …`: never the password. */
  args: string[];
  /** `PGPASSWORD`, `PGSSLMODE` (see `libpqSslMode`), `PGCONNECT_TIMEOUT` …, added to the program's environment. */
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

/**
 * Splits a `postgresql://` URL into separate command-line arguments and environment
 * variables for a libpq program. Host, port and user are those {@link databaseTarget}
 * decides (the server pg reaches with the same URL and environment), passed explicitly so
 * that libpq's own defaults (its Unix socket, `PGHOST`) cannot send the program elsewhere.
 * The password goes into `PGPASSWORD` in the child's environment only, so it never shows
 * in `ps`, on a command line or in a message. `inContainer` is for a program that
 * `findPgTool` found in the docker-compose container because the URL reaches that
 * container's published port: inside, the same server is on loopback port 5432.
 *
 * @example
 * const { args, env } = libpqConnection('postgresql://app:secret@127.0.0.1:5432/kennwilliamson')
 * // args: ['--host', '127.0.0.1', '--port', '5432', '--username', 'app', '--dbname', 'kennwilliamson']
 * // env:  { PGPASSWORD: 'secret', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'kennwilliamson-db' }
 */
export function libpqConnection(
  databaseUrl: string,
  options: { inContainer?: boolean; env?: NodeJS.ProcessEnv; applicationName?: string } = {},
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
  args.push('--dbname', target.database);
  return { args, env, target, description: target.description, tls: pgTlsSetting(databaseUrl, options.env ?? process.env) };
}
