import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { isProcessAlive } from '../process-alive.js';
import { acceptsConnections } from './accepts-connections.js';
import { embeddedDatabaseUrl, type EmbeddedServerOptions } from './embedded-server.js';

/**
 * The development server `npm run db:start` manages: data in `.data/postgres` (git-ignored;
 * `EMBEDDED_PG_DATA_DIR` moves it), on 127.0.0.1 at `EMBEDDED_PG_PORT` (default 54320, away
 * from a system server on 5432), superuser `postgres` with the password of
 * {@link localSuperuserPassword}.
 */
export function localServerOptions(env: NodeJS.ProcessEnv = process.env): EmbeddedServerOptions {
  const { dataDir, port } = localServerLocation(env);
  return {
    dataDir,
    port,
    user: 'postgres',
    password: localSuperuserPassword(dataDir),
    database: 'kennwilliamson',
  };
}

/**
 * Where the development server lives: its data folder and port, as {@link localServerOptions}
 * takes them from the environment, without its password (reading that makes the password
 * file of a data folder that has none, which a command that refuses must not leave behind).
 *
 * @example await requireLocalServerPort(localServerLocation()) // before anything is written
 */
export function localServerLocation(env: NodeJS.ProcessEnv = process.env): Pick<EmbeddedServerOptions, 'dataDir' | 'port'> {
  const port = Number(env.EMBEDDED_PG_PORT ?? 54320);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`EMBEDDED_PG_PORT must be a port number, got '${env.EMBEDDED_PG_PORT}'`);
  }
  const dataDir = env.EMBEDDED_PG_DATA_DIR?.trim() || path.join(packageRoot(), '.data', 'postgres');
  return { dataDir, port };
}

/**
 * Refuses when `EMBEDDED_PG_PORT` would reach another server than the data folder's: when that
 * server is running on another port (its `postmaster.pid` names the port it listens on), or is
 * not running while something else accepts connections on the port. Each command takes the
 * port from its own environment: in a shell without the variable the server was started with,
 * or in a checkout whose server is stopped, a command would reach whatever listens on the port
 * it names, such as another checkout's server, whose owner login is the same, and back up,
 * migrate or revert that database instead. Where nothing listens, it lets the command go on
 * (to start the server, or to fail to connect as it would anyway).
 *
 * @example await requireLocalServerPort(localServerLocation()) // throws if .data/postgres's server listens elsewhere, or another server on its port
 */
export async function requireLocalServerPort(options: Pick<EmbeddedServerOptions, 'dataDir' | 'port'>): Promise<void> {
  let lines: string[] | undefined;
  try {
    lines = readFileSync(path.join(options.dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch (error) {
    // Not readable (another account's data folder): the server would say so itself.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return;
  }
  if (lines) {
    // postmaster.pid: the server's process id on the first line, its port on the fourth.
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    if (!Number.isInteger(pid) || pid < 1 || !Number.isInteger(port)) return;
    if (isProcessAlive(pid)) {
      if (port === options.port) return;
      throw new ConfigError(
        'EMBEDDED_PG_PORT',
        `the embedded server of ${options.dataDir} is running on port ${port}, but EMBEDDED_PG_PORT says ${options.port}: ` +
          `set EMBEDDED_PG_PORT=${port} for this data folder (or stop its server first: npm run db:stop); nothing was done`,
      );
    }
    // Left by a server that is gone: as if not running.
  }
  // Only while the data folder's server is not running: the commands after db:start never get
  // here, and db:start itself pays one refused connect. A port whose packets are dropped counts
  // as free, and the command meets its own connection's bound, as it would without this check.
  if (await acceptsConnections(options.port)) {
    throw new ConfigError(
      'EMBEDDED_PG_PORT',
      `port ${options.port} is taken by a server that is not the embedded server of ${options.dataDir} (which is not running): ` +
        `start this data folder's server on a free port (EMBEDDED_PG_PORT=<port> npm run db:start, and the same EMBEDDED_PG_PORT for its commands), ` +
        `or stop what listens on ${options.port}; nothing was done`,
    );
  }
}

/** The file beside the data folder that keeps the local superuser's password: `.data/postgres.password`. */
export function localPasswordFile(dataDir: string): string {
  return `${path.resolve(dataDir)}.password`;
}

/**
 * The local server's superuser password. The server listens on 127.0.0.1, where every
 * account of the machine can reach it, and a superuser can run programs on the server
 * (`COPY … FROM PROGRAM`) as the account it runs as: so not `postgres`, but a random
 * password made when the cluster is made, kept in {@link localPasswordFile} (mode 0600,
 * readable by whoever ran `db:setup`) and read from there every time. A cluster made before
 * the file existed keeps the password it was made with, `postgres`.
 *
 * @example localSuperuserPassword('.data/postgres') // 'n4Qx…' (24 URL-safe characters)
 */
export function localSuperuserPassword(dataDir: string): string {
  const file = localPasswordFile(dataDir);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) return 'postgres';
  // URL-safe, so the URL that db:setup prints needs no percent-encoding.
  const password = randomBytes(18).toString('base64url');
  mkdirSync(path.dirname(file), { recursive: true });
  // Written whole under another name, then linked (which never replaces a file): two commands
  // starting at once agree on one password, and neither reads a half-written file.
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${password}\n`, { mode: 0o600 });
  try {
    linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readFileSync(file, 'utf8').trim();
  } finally {
    rmSync(temporary, { force: true });
  }
  return password;
}

/**
 * The owner role of the local database (`DB_OWNER_USER`/`DB_OWNER_PASSWORD`, default
 * `kennwilliamson`/`kennwilliamson`): not a superuser, so migrations, backups and restores on
 * the embedded default run as production's do. `npm run db:setup` creates it.
 */
export function localOwner(env: NodeJS.ProcessEnv = process.env): { user: string; password: string } {
  return { user: env.DB_OWNER_USER?.trim() || 'kennwilliamson', password: env.DB_OWNER_PASSWORD || 'kennwilliamson' };
}

/** The local database as its superuser (`postgres`, with its password from the data folder): for the admin step (`setup --admin`, `db:reset`) only. */
export function localAdminUrl(env: NodeJS.ProcessEnv = process.env): string {
  return embeddedDatabaseUrl(localServerOptions(env));
}

/** `DATABASE_URL` when set, else the local embedded database as its owner role (see {@link localOwner}). */
export function cliDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const url = env.DATABASE_URL?.trim();
  return url ? url : embeddedDatabaseUrl({ ...localServerOptions(env), ...localOwner(env) });
}
