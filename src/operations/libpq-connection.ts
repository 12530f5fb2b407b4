import { ConfigError } from '../errors.js';

/** How to point a PostgreSQL client program (pg_dump, pg_restore, psql) at a database. */
export interface LibpqConnection {
  /** `--host … --port … --username … --dbname …`: never the password. */
  args: string[];
  /** `PGPASSWORD`, `PGSSLMODE`, `PGCONNECT_TIMEOUT` …, added to the program's environment. */
  env: Record<string, string>;
  /** `user@host:port/database`, for messages (no password). */
  description: string;
  host: string;
  port: string;
  database: string;
}

// URL query parameters that libpq also reads from the environment; anything else in the
// URL's query is ignored rather than passed on the command line.
const queryParameterVariables: Record<string, string> = {
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
};

/**
 * Splits a `postgresql://` URL into separate command-line arguments and environment
 * variables for a libpq program. The password goes into `PGPASSWORD` in the child's
 * environment only, so it never shows in `ps`, on a command line or in a message.
 * `inContainer` connects as a program inside the docker-compose `postgres` container sees
 * the server: on its own port 5432 over loopback.
 *
 * @example
 * const { args, env } = libpqConnection('postgresql://app:secret@127.0.0.1:5432/kennwilliamson')
 * // args: ['--host', '127.0.0.1', '--port', '5432', '--username', 'app', '--dbname', 'kennwilliamson']
 * // env:  { PGPASSWORD: 'secret', PGCONNECT_TIMEOUT: '10' }
 */
export function libpqConnection(databaseUrl: string, options: { inContainer?: boolean } = {}): LibpqConnection {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    throw new ConfigError('DATABASE_URL', 'DATABASE_URL is not a valid postgresql:// URL');
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw new ConfigError('DATABASE_URL', `DATABASE_URL must start with postgresql://, not ${url.protocol}//`);
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) throw new ConfigError('DATABASE_URL', 'DATABASE_URL names no database');
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  // `postgresql://user@/db?host=/var/run/postgresql` names a Unix socket folder.
  let host = url.hostname.replace(/^\[|\]$/g, '') || url.searchParams.get('host') || 'localhost';
  let port = url.port || url.searchParams.get('port') || '5432';
  if (options.inContainer) {
    host = '127.0.0.1';
    port = '5432';
  }

  const env: Record<string, string> = { PGCONNECT_TIMEOUT: '10' };
  for (const [parameter, variable] of Object.entries(queryParameterVariables)) {
    const value = url.searchParams.get(parameter);
    if (value !== null) env[variable] = value;
  }
  if (password) env.PGPASSWORD = password;

  const args = ['--host', host, '--port', port];
  if (user) args.push('--username', user);
  // A database name containing '=' or starting with postgres:// would be read as a
  // connection string by libpq; ours never do, but refuse rather than guess.
  if (database.includes('=') || /^postgres(ql)?:\/\//.test(database)) {
    throw new ConfigError('DATABASE_URL', `database name '${database}' cannot be passed to the PostgreSQL tools`);
  }
  args.push('--dbname', database);
  return {
    args,
    env,
    description: `${user ? `${user}@` : ''}${host}:${port}/${database}`,
    host,
    port,
    database,
  };
}
