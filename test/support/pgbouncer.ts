import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/embedded/free-port.js';
import { eventually } from './eventually.js';

/** Debian's PgBouncer (package `pgbouncer`, 1.18 on bookworm), which .ci/run installs. */
export const pgBouncerPath = '/usr/sbin/pgbouncer';

/**
 * PgBouncer 1.24.1, built from Debian trixie's source package by `.ci/build-pgbouncer` (which
 * .ci/run calls) into its cache: the first version line that keeps named statements in
 * transaction mode (1.21+), beside bookworm's 1.18, which loses them.
 */
export const pgBouncer124Path = path.join(
  process.getuid?.() === 0
    ? '/var/cache/kennwilliamson-db'
    : path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'kennwilliamson-db'),
  'pgbouncer-1.24.1',
  'bin',
  'pgbouncer',
);

/** The PgBouncers the tests run through: Debian bookworm's, and 1.24 built by .ci/build-pgbouncer. */
export const pgBouncerVersions = { '1.18': pgBouncerPath, '1.24': pgBouncer124Path } as const;
export type PgBouncerVersion = keyof typeof pgBouncerVersions;

/** A PgBouncer in front of a test server, on a free port of 127.0.0.1. */
export interface PgBouncer {
  port: number;
  /** The server URL (credentials and parameters kept) pointed at the pooler instead. */
  url(serverUrl: string): string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** A URL of the server to pool; its user and password are the only login the pooler knows. */
  serverUrl: string;
  /** `transaction` by default: what services run behind (PgBouncer, RDS Proxy, Supavisor). */
  poolMode?: 'transaction' | 'session' | 'statement';
  /** Server connections per database and user (PgBouncer's default is 20). */
  poolSize?: number;
  /** Which PgBouncer: '1.18' (Debian bookworm's, the default) or '1.24'. */
  version?: PgBouncerVersion;
  /**
   * `max_prepared_statements` (1.21+; unset: PgBouncer's default, 200 since 1.22). 0 turns
   * the tracking of named statements off.
   */
  maxPreparedStatements?: number;
  /** `query_wait_timeout` in seconds: how long a client waits for a server connection (default 120). */
  queryWaitTimeoutSeconds?: number;
  /**
   * More startup parameters PgBouncer accepts and drops without a word (`ignore_startup_parameters`,
   * beside `extra_float_digits` and `search_path`): with the bounds listed here, it no longer
   * refuses the pool's startup bounds (08P01), it ignores them.
   */
  ignoreStartupParameters?: readonly string[];
  /** `connect_query`: SQL each new server connection runs first (session state that every one carries). */
  connectQuery?: string;
}

/**
 * Starts PgBouncer (Debian's, or `version: '1.24'`) in front of `serverUrl`: every database of that server, reached
 * as its user, `auth_type = trust` on loopback (the pooler logs in to the server with the
 * password from its auth_file, over SCRAM), no Unix socket. As root it runs as the
 * `postgres` account, since PgBouncer refuses to run as root.
 *
 * @example
 * const pooler = await startPgBouncer({ serverUrl })
 * const db = createDb({ databaseUrl: pooler.url(databaseUrl) })
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const server = new URL(options.serverUrl);
  const user = decodeURIComponent(server.username);
  const password = decodeURIComponent(server.password);
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kw-pgbouncer-'));
  const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;
  await writeFile(path.join(dir, 'userlist.txt'), `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
  await writeFile(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}${options.connectQuery ? ` connect_query='${options.connectQuery.replaceAll("'", "''")}'` : ''}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      `pool_mode = ${options.poolMode ?? 'transaction'}`,
      `default_pool_size = ${options.poolSize ?? 20}`,
      'max_client_conn = 1000',
      'max_db_connections = 0',
      // pg sends none of these today; drivers that do must not be refused.
      `ignore_startup_parameters = ${['extra_float_digits', 'search_path', ...(options.ignoreStartupParameters ?? [])].join(',')}`,
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'server_login_retry = 1',
      ...(options.maxPreparedStatements === undefined ? [] : [`max_prepared_statements = ${options.maxPreparedStatements}`]),
      ...(options.queryWaitTimeoutSeconds === undefined ? [] : [`query_wait_timeout = ${options.queryWaitTimeoutSeconds}`]),
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  const account = asRoot ? postgresAccount() : undefined;
  if (account) {
    await chown(dir, account.uid, account.gid);
    for (const file of ['userlist.txt', 'pgbouncer.ini']) await chown(path.join(dir, file), account.uid, account.gid);
  }
  const child: ChildProcess = spawn(pgBouncerVersions[options.version ?? '1.18'], [path.join(dir, 'pgbouncer.ini')], {
    ...(account ?? {}),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let exited: number | null | undefined;
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = code;
      resolve();
    }),
  );
  try {
    await eventually(
      async () => {
        if (exited !== undefined) throw new Error(`pgbouncer exited with ${exited}: ${stderr}${await logTail(dir)}`);
        return accepts(port);
      },
      `pgbouncer listens on 127.0.0.1:${port}`,
      { timeoutMs: 15_000, intervalMs: 20 },
    );
  } catch (error) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    url: (serverUrl) => {
      const url = new URL(serverUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    stop: async () => {
      if (exited === undefined) {
        // SIGINT: PgBouncer's immediate shutdown, closing its server connections.
        child.kill('SIGINT');
        await exit;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function postgresAccount(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function logTail(dir: string): Promise<string> {
  const text = await readFile(path.join(dir, 'pgbouncer.log'), 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-5).join('\n');
}
