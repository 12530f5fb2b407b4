import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { createGzip } from 'node:zlib';
import { killProcessTree } from '../../process-tree.js';
import { answeringWithin, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { endServerSessions } from '../../db/end-server-sessions.js';
import { databaseTarget, type DatabaseTarget } from '../../db/database-target.js';
import { openClient } from '../../db/with-client.js';
import { requireDirectConnection } from '../../db/direct-connection.js';
import { BackupError, DirectConnectionRequiredError, PgToolNotFoundError, RestoreError } from '../../errors.js';
import { migrationUrlName, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { backupFileName, type BackupFormat } from './backup-name.js';
import { pruneBackups } from './backup-retention.js';
import { writeChecksumFile } from '../files/checksum-file.js';
import { libpqConnection, libpqSilenceLimitSeconds } from '../pg-tools/libpq-connection.js';
import { spawnPgTool, toolErrorText } from '../pg-tools/pg-tool-process.js';
import { findPgTool, type FindPgToolOptions, type PgTool } from '../pg-tools/pg-tools.js';
import { byteProgress, formatBytes } from '../files/progress-reporter.js';
import { pgliteToolsAvailability } from '../wasm-pg-dump/pglite-pg-dump-module.js';
import { publishFile } from '../files/publish-file.js';
import { verifyArchive } from '../vetting/verify-archive.js';
import { verifySqlDump } from '../vetting/verify-sql-dump.js';
import { startWasmPgDump, WasmPgDumpConnectError } from '../wasm-pg-dump/wasm-pg-dump.js';
import { stallWatch, type StallWatch } from '../files/stall-watch.js';
import { writeStreamToFile } from '../files/write-stream-to-file.js';
import { maxDurationMs } from '../../db/duration.js';
import { optionMs } from '../../db/option-ms.js';

/** What {@link backupDatabase} backs up, where to, and how many to keep. */
export interface BackupOptions {
  /**
   * The database to dump, as its owner, directly (its password is handed to pg_dump through
   * the environment only). A URL that reaches a connection pooler is refused with
   * `DirectConnectionRequiredError` before pg_dump runs.
   */
  databaseUrl: string;
  /** Folder of the backups; created if missing. */
  backupDir: string;
  /** The `<env>` in `<database>_<env>_<timestamp>.dump` (or `.sql.gz`); retention only counts this database's files of this environment. */
  environment: string;
  /** Keep the newest this many backups of the database and environment (at least 1), deleting older ones after this one is verified. */
  keep: number;
  /** Receives progress lines (tables dumped, bytes written, verification). */
  log?: ((line: string) => void) | undefined;
  /** Aborting stops pg_dump and removes the temporary file. */
  signal?: AbortSignal | undefined;
  /** Where to look for pg_dump and pg_restore (tests narrow it); see `findPgTool`. The server is the backup's own, so no `target`. */
  toolSearch?: Omit<FindPgToolOptions, 'minMajor' | 'preferDir' | 'target'> | undefined;
  /**
   * Longest wait for the lock on one table (default 30 s, as a restore's), given to pg_dump as
   * `--lock-wait-timeout`: pg_dump turns `lock_timeout` off for its session, and would wait
   * without end behind a session that holds a table (a migration, an idle transaction) while
   * it keeps the tables it already locked, blocking the next migration in turn.
   */
  lockTimeoutMs?: number | undefined;
  /**
   * Longest time pg_dump may go without a sign of life, neither output nor a progress line
   * (default: the lock wait and a minute). Then it is stopped, and the backup fails: TCP's
   * bounds never fire where the server's backend is stuck while its kernel still
   * acknowledges, nor for a pg_dump that stopped itself.
   */
  stallTimeoutMs?: number | undefined;
}

const defaultLockTimeoutMs = 30_000;


// The failures of a pg_dump stopped for a stall: its server session may outlive it.
const stalls = new WeakSet<Error>();

function stalledPgDump(stallTimeoutMs: number, description: string): BackupError {
  const error = new BackupError(
    `pg_dump showed no sign of life (no output, no progress line) for ${stallTimeoutMs / 1000} s while dumping ${description}: ` +
      'the server stopped answering it while its host still acknowledged (a stuck backend, or a network path that stalls), ' +
      'or pg_dump itself stopped; it was stopped, and no file is kept',
    'pg_dump',
  );
  stalls.add(error);
  return error;
}
// pg_dump's --lock-wait-timeout, in milliseconds as statement_timeout reads a bare number.
const lockWaitArg = (lockTimeoutMs: number) => `--lock-wait-timeout=${lockTimeoutMs}`;

// pg_dump ends a LOCK TABLE that outwaits --lock-wait-timeout as a statement timeout (it
// sets statement_timeout only around its LOCK TABLEs, and turns it off otherwise), and says
// only that and, natively, the query: which wait ran out, and what to do, is said first.
function lockWaitRanOut(stderr: string, lockTimeoutMs: number): string[] {
  if (!stderr.includes('canceling statement due to statement timeout')) return [];
  const table = /Query was: LOCK TABLE (\S+) IN ACCESS SHARE MODE/.exec(stderr)?.[1];
  return [
    `pg_dump waited more than ${lockTimeoutMs} ms for a lock on ${table ? `table ${table}` : 'a table'}, which another session holds ` +
      '(a migration, or a transaction left open); run the backup again once that session is done',
  ];
}

// libpq reports a connection that TCP keepalive (or its unacknowledged-data limit) ended as
// the system's ETIMEDOUT, in a sentence that does not say what happened to the server.
function serverWentSilent(stderr: string): string[] {
  // Over TLS, libpq says it as "SSL SYSCALL error: Connection timed out".
  if (!/(could not (receive|send) data (from|to) server|SSL SYSCALL error): Connection timed out/.test(stderr)) return [];
  return [
    `the server stopped answering pg_dump for ${libpqSilenceLimitSeconds} s (no reply to TCP keepalive): a network partition, or a ` +
      'failover that left the connection behind; run the backup again once the server is reachable',
  ];
}

/** A verified backup. */
export interface BackupResult {
  /** Absolute path of the backup: a `.dump` from a native pg_dump, a `.sql.gz` from the WebAssembly one. */
  file: string;
  format: BackupFormat;
  /** Absolute path of the `.sha256` file beside it. */
  checksumFile: string;
  sha256: string;
  bytes: number;
  /** Tables whose data the backup holds (from `pg_restore --list`, or pg_dump's progress for `.sql.gz`). */
  tables: number;
  /** The pg_dump that made it: `15.18 at /usr/lib/postgresql/15/bin/pg_dump`, or `18.3 (WebAssembly, @electric-sql/pglite-tools 0.4.8)`. */
  pgDump: string;
  /** Older backups removed by retention. */
  deleted: string[];
}

const backupApplicationName = 'kennwilliamson-backup';

interface ServerFacts {
  major: number;
  tables: number;
  /** The sessions of this role named as backups in the database before pg_dump ran (another backup's). */
  backupsBefore: number[];
}

// Answers at login that pg_dump would get as well and report in its own words: nothing
// listens there, no such host, wrong password or no pg_hba entry, no such database.
const refusedAtLogin = new Set(['ECONNREFUSED', 'ENOTFOUND', '28P01', '28000', '3D000']);

const failureCode = (error: unknown): string | undefined =>
  ((error as { cause?: { code?: unknown } }).cause?.code as string | undefined) ?? ((error as { code?: unknown }).code as string | undefined);

// The URL asks for TLS and the server answered the SSLRequest with 'N': pg_dump, asked for
// TLS too (see libpqSslMode), is refused the same way, before any session. pg says so only
// in words, with no code.
const refusedTls = (error: unknown): boolean =>
  [error, (error as { cause?: unknown }).cause].some((e) => (e as Error | undefined)?.message === 'The server does not support SSL connections');

// The server's major version decides which pg_dump fits, and the same connection refuses a
// pooler first: pg_dump empties search_path for its session, and a pooler in transaction
// mode would hand that server connection to the services. pg_dump runs only once this check
// has run: a pooler that lets the login through but answers no query (every server
// connection busy, query_wait_timeout) is exactly where it must not. Only a login that is
// refused outright (wrong password, nothing listening, no such database) lets pg_dump run
// unchecked, since it is refused the same way and says so in its own words (as is a server
// without TLS where the URL asks for it); any other failure is reported here and pg_dump is
// not run.
async function serverFacts(databaseUrl: string, target: DatabaseTarget): Promise<ServerFacts | undefined> {
  let client: pg.Client;
  try {
    client = await openClient(databaseUrl, backupApplicationName);
  } catch (error) {
    const code = failureCode(error);
    if ((code !== undefined && refusedAtLogin.has(code)) || refusedTls(error)) return undefined;
    throw new BackupError(
      `could not connect to ${target.description} to check it before running pg_dump: ${(error as Error).message}; pg_dump was not run`,
      undefined,
      { cause: error },
    );
  }
  try {
    // First, under its deadline: a server that lets the login in and then says nothing.
    await requireDirectConnection(client, { operation: 'backup', variable: migrationUrlVariable(databaseUrl) });
    // The looks after it under a round trip's deadline too: pg_dump's stall watch starts only
    // with pg_dump, and a server silent from here on held the command before it for ever.
    const bounded = answeringWithin(client, roundTripDeadlineMs);
    // Maybe a superuser's session, in a database whose public schema a restored backup may
    // have filled: names resolve in pg_catalog only, so nothing planted there runs with it.
    await bounded.query('SET search_path = pg_catalog');
    const { rows } = await bounded.query<ServerFacts>(
      `SELECT pg_catalog.current_setting('server_version_num')::int / 10000 AS major,
              (SELECT count(*)::int FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\\_toast%') AS tables,
              ${backupSessionsQuery} AS "backupsBefore"`,
      [backupApplicationName],
    );
    return rows[0];
  } catch (error) {
    if (error instanceof DirectConnectionRequiredError) throw error;
    throw new BackupError(
      `could not check that ${target.description} is PostgreSQL itself and not a connection pooler, which pg_dump must never go ` +
        `through (it empties search_path for its session, and a pooler in transaction mode hands that connection to the services): ` +
        `${(error as Error).message}; pg_dump was not run`,
      undefined,
      { cause: error },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

// This role's sessions in this database named as backups, but the one asking.
const backupSessionsQuery = `ARRAY(SELECT pid FROM pg_catalog.pg_stat_activity
   WHERE application_name = $1 AND datname = pg_catalog.current_database() AND usename = current_user AND pid <> pg_catalog.pg_backend_pid())`;

// pg_dump stopped (a stall, Ctrl-C) closes its end of the connection; a server that stalled
// with it, or a hung proxy between them, may never tell its session, which then holds every
// table's lock (pg_dump turns idle_in_transaction_session_timeout off): an audit's blocked a
// migration and a restore for 3 minutes, until ended by hand. Ended here, from a connection of
// its own: the backup sessions of this role that were not there before pg_dump ran. Says what
// could not be ended, or undefined.
function endStrandedBackupSession(databaseUrl: string, before: readonly number[]): Promise<string | undefined> {
  return endServerSessions({
    url: databaseUrl,
    which: `pid = ANY (${backupSessionsQuery}) AND pid <> ALL ($2::int[])`,
    params: [backupApplicationName, before],
    applicationName: 'kennwilliamson-backup-stop',
    what: "ending the stopped pg_dump's session",
  });
}

async function runPgDump(
  pgDump: PgTool,
  databaseUrl: string,
  lockTimeoutMs: number,
  stallTimeoutMs: number,
  temporary: string,
  tables: number | undefined,
  log: (line: string) => void,
  signal: AbortSignal | undefined,
): Promise<{ bytes: number; sha256: string }> {
  const connection = libpqConnection(databaseUrl, { inContainer: pgDump.inContainer, applicationName: backupApplicationName, tcpKeepalive: true });
  let dumped = 0;
  let stalled = false;
  // Armed once pg_dump runs; time its output waits for our disk (stdout paused) does not count.
  let watch: StallWatch | undefined;
  const { child, exited, stop } = spawnPgTool(
    pgDump,
    // --no-password: never wait for a password prompt; fail at once instead.
    ['--format=custom', '--verbose', '--no-password', lockWaitArg(lockTimeoutMs), ...connection.args],
    {
      env: connection.env,
      stdio: ['ignore', 'pipe'],
      ...(signal ? { signal } : {}),
      onStderrLine: (line) => {
        watch?.progress();
        const table = /dumping contents of table "([^"]+)"/.exec(line)?.[1];
        if (table) log(`dumping table ${table} (${++dumped}${tables ? ` of ${tables}` : ''})`);
      },
    },
  );
  // SIGKILL: a stopped pg_dump never acts on SIGTERM. To a wrapper's children too, and its pipes
  // let go of (see killProcessTree).
  watch = stallWatch(stallTimeoutMs, () => ((stalled = true), killProcessTree(child)), () => !child.stdout!.isPaused());
  child.stdout!.on('data', watch.progress);
  const written = writeStreamToFile(child.stdout!, temporary, {
    onBytes: byteProgress('written', undefined, log),
    ...(signal ? { signal } : {}),
  }).then(
    (result) => ({ result }),
    (error: Error) => {
      // Disk full or similar: stop pg_dump rather than let it block on a full pipe.
      stop();
      return { error };
    },
  );
  const [outcome, exit] = await Promise.all([written, exited]).finally(() => watch.stop());
  signal?.throwIfAborted();
  if (stalled) throw stalledPgDump(stallTimeoutMs, connection.description);
  if (exit.spawnError) {
    throw new BackupError(`could not run pg_dump at ${pgDump.location}: ${exit.spawnError.message}`, 'pg_dump', { cause: exit.spawnError });
  }
  if (exit.code !== 0) {
    const reason =
      'error' in outcome
        ? `writing the backup failed: ${outcome.error.message}`
        : [...lockWaitRanOut(exit.stderr, lockTimeoutMs), ...serverWentSilent(exit.stderr), toolErrorText(exit.stderr)].join('\n');
    throw new BackupError(`pg_dump failed (exit ${exit.code ?? exit.signal}) for ${connection.description}:\n${reason}`, 'pg_dump');
  }
  if ('error' in outcome) {
    throw new BackupError(`writing the backup failed: ${outcome.error.message}`, 'pg_dump', { cause: outcome.error });
  }
  return outcome.result;
}

// Plain SQL, because no pg_restore on these machines reads the custom archives of pg_dump
// 18 (archive version 1.16). Objects are dumped without owners, as a custom archive is
// restored (`pg_restore --no-owner`): they end up owned by whoever restores.
const wasmPgDumpArgs = ['--format=plain', '--no-owner', '--verbose'];
// zlib's fastest level: it keeps up with pg_dump on one core and still shrinks SQL about 4x.
const gzipLevel = 1;

async function runWasmPgDump(
  fallback: PgToolNotFoundError,
  facts: ServerFacts | undefined,
  databaseUrl: string,
  lockTimeoutMs: number,
  stallTimeoutMs: number,
  temporary: string,
  log: (line: string) => void,
  signal: AbortSignal | undefined,
): Promise<{ bytes: number; sha256: string; tables: number; pgDump: string }> {
  const connection = libpqConnection(databaseUrl, { applicationName: backupApplicationName });
  let dumped = 0;
  let pgDump = 'WebAssembly pg_dump';
  // Its sockets are Node's, with keepalive, which a server whose kernel acknowledges while its
  // backend is stuck always answers: a watch on its output stops it (through the run's signal).
  const stall = new AbortController();
  let watch: StallWatch | undefined;
  const run = await startWasmPgDump({
    connection,
    args: [...wasmPgDumpArgs, lockWaitArg(lockTimeoutMs)],
    onVersion: (version) => {
      pgDump = `${version.pgDump} (WebAssembly, ${version.package})`;
      const found = fallback.found.length > 0 ? `found ${fallback.found.join(', ')}` : 'found none';
      log(
        `no native pg_dump fits${facts ? ` this PostgreSQL ${facts.major} server` : ''} (${found}); ` +
          `using the WebAssembly pg_dump ${version.pgDump} of ${version.package}: plain SQL, gzip-compressed`,
      );
    },
    onStderrLine: (line) => {
      watch?.progress();
      const table = /dumping contents of table "([^"]+)"/.exec(line)?.[1];
      if (table) log(`dumping table ${table} (${++dumped}${facts ? ` of ${facts.tables}` : ''})`);
    },
    signal: signal ? AbortSignal.any([signal, stall.signal]) : stall.signal,
  }).catch((error: Error) => {
    if (error instanceof WasmPgDumpConnectError) {
      throw new BackupError(`pg_dump could not connect to ${connection.description}: ${error.message}`, 'pg_dump', { cause: error });
    }
    throw new BackupError(`${error.message}`, 'pg_dump', { cause: error });
  });
  const compressed = createGzip({ level: gzipLevel });
  // pg_dump waits for us, not we for it, while any of its output waits to go into gzip and the file.
  watch = stallWatch(stallTimeoutMs, () => stall.abort(), () => compressed.writableLength === 0);
  compressed.on('data', watch.progress);
  // A failed or aborted write ends in writeStreamToFile's error; the feeding side stops pg_dump.
  const fed = run.pipeTo(compressed).catch((error: Error) => compressed.destroy(error));
  const written = writeStreamToFile(compressed, temporary, {
    onBytes: byteProgress('written (compressed)', undefined, log),
    ...(signal ? { signal } : {}),
  }).then(
    (result) => ({ result }),
    (error: Error) => ({ error }),
  );
  const [outcome, exit] = await Promise.all([written, run.exited, fed]).finally(() => watch.stop());
  signal?.throwIfAborted();
  if (stall.signal.aborted) throw stalledPgDump(stallTimeoutMs, connection.description);
  if (exit.code !== 0) {
    const reason =
      exit.code === null
        ? // The run's own error (its connection's thread died) also fails the write it fed: not a write failure.
          'error' in outcome && outcome.error !== exit.error
          ? `writing the backup failed: ${outcome.error.message}`
          : (exit.error?.message ?? 'pg_dump stopped')
        : [...lockWaitRanOut(exit.stderr, lockTimeoutMs), toolErrorText(exit.stderr), exit.connectionError ? `(the connection: ${exit.connectionError})` : '']
            .filter(Boolean)
            .join('\n');
    throw new BackupError(`pg_dump ${pgDump} failed (exit ${exit.code ?? 'none'}) for ${connection.description}:\n${reason}`, 'pg_dump', {
      cause: exit.error,
    });
  }
  if ('error' in outcome) {
    throw new BackupError(`writing the backup failed: ${outcome.error.message}`, 'pg_dump', { cause: outcome.error });
  }
  return { ...outcome.result, tables: dumped, pgDump };
}

// The WebAssembly pg_dump is an optional peer dependency: without it, say what would do.
function requireWasmPgDump(fallback: PgToolNotFoundError, facts: ServerFacts | undefined): void {
  const { installed, wanted } = pgliteToolsAvailability();
  if (installed) return;
  const found = fallback.found.length > 0 ? `found ${fallback.found.join(', ')}` : 'found none';
  throw new BackupError(
    `no native pg_dump fits${facts ? ` this PostgreSQL ${facts.major} server` : ''} (${found}), and the WebAssembly ` +
      `pg_dump is not installed: install the PostgreSQL${facts ? ` ${facts.major}` : ''} client tools (or point PG_DUMP ` +
      `at a newer pg_dump), or add the optional ${wanted} to the service (npm install ${wanted})`,
    'pg_dump',
    { cause: fallback },
  );
}

// A native pg_dump that fits the server, or why there is none (then the WebAssembly one runs).
async function choosePgDump(
  options: BackupOptions,
  target: DatabaseTarget,
  facts: ServerFacts | undefined,
): Promise<PgTool | PgToolNotFoundError> {
  return findPgTool('pg_dump', { ...options.toolSearch, target, ...(facts ? { minMajor: facts.major } : {}) }).catch((error: unknown) => {
    if (error instanceof PgToolNotFoundError) return error;
    throw error;
  });
}

/**
 * Backs up one database into `<backupDir>/<database>_<environment>_<UTC timestamp>.dump`
 * (`pg_dump --format=custom`) plus a `.sha256` beside it, never leaving a half-written file
 * under a final name: pg_dump writes to a temporary dot file, which is read back whole, then
 * fsynced and only then linked to its final name. When no native pg_dump fits the server
 * (none at least its major version in `PG_DUMP`, `PATH`, `/usr/lib/postgresql/<major>/bin`
 * or the compose container), the WebAssembly pg_dump of `@electric-sql/pglite-tools` makes
 * a gzip-compressed plain SQL dump instead, `….sql.gz`, checked by a full decompression and
 * pg_dump's completion trailer; it says so through `log`. On any failure (wrong password,
 * server down, disk full, Ctrl-C) it throws {@link BackupError} with pg_dump's, libpq's or
 * Node's own message and leaves neither a temporary nor a final file. Older backups of the
 * environment beyond `keep` are deleted only after the new one is verified.
 *
 * @example
 * const { file } = await backupDatabase({ databaseUrl, backupDir: 'backups', environment: 'production', keep: 14, log: console.error })
 * // file: /srv/app/backups/kennwilliamson_production_20250914T134643.512Z.dump
 */
export async function backupDatabase(options: BackupOptions): Promise<BackupResult> {
  const log = options.log ?? (() => undefined);
  // Bounds no timer can hold are refused before anything is done. The stall bound's default
  // follows the lock wait, up to the longest a timer holds.
  const lockTimeoutMs = optionMs('lockTimeoutMs', options.lockTimeoutMs ?? defaultLockTimeoutMs);
  const stallTimeoutMs =
    options.stallTimeoutMs === undefined ? Math.min(lockTimeoutMs + 60_000, maxDurationMs) : optionMs('stallTimeoutMs', options.stallTimeoutMs);
  // The server pg reaches with this URL (the version probe) is the one pg_dump is pointed at.
  const target = databaseTarget(options.databaseUrl, process.env, migrationUrlName(options.databaseUrl));
  const facts = await serverFacts(options.databaseUrl, target);
  const pgDump = await choosePgDump(options, target, facts);
  const native = !(pgDump instanceof PgToolNotFoundError);
  if (native) {
    log(
      `using pg_dump ${pgDump.version} at ${pgDump.location}` +
        `${facts ? ` for the PostgreSQL ${facts.major} server` : ''} at ${target.description}`,
    );
  }
  if (!native) requireWasmPgDump(pgDump, facts);
  const format: BackupFormat = native ? 'custom' : 'sql-gzip';

  // Owner only, like the files in it: a backup holds password hashes.
  await mkdir(options.backupDir, { recursive: true, mode: 0o700 });
  const name = backupFileName(target.database, options.environment, new Date(), format);
  const file = path.join(path.resolve(options.backupDir), name);
  if (existsSync(file)) throw new BackupError(`${file} already exists`);
  // A dot name that no retention pattern or restore listing matches, unique per process.
  const temporary = path.join(path.dirname(file), `.${name}.${process.pid}.tmp`);

  let published = false;
  let verified: Omit<BackupResult, 'deleted'>;
  try {
    let made: { bytes: number; sha256: string; tables: number; pgDump: string };
    if (native) {
      const { bytes, sha256 } = await runPgDump(pgDump, options.databaseUrl, lockTimeoutMs, stallTimeoutMs, temporary, facts?.tables, log, options.signal);
      log(`wrote ${formatBytes(bytes)}; verifying with pg_restore`);
      const pgRestore = await findPgTool('pg_restore', {
        ...options.toolSearch,
        minMajor: pgDump.major,
        ...(pgDump.inContainer ? {} : { preferDir: path.dirname(pgDump.location) }),
      });
      // Vetted as a restore into this same database will vet it.
      const vetting = { database: target.database, ...(options.signal ? { signal: options.signal } : {}) };
      const { tables } = await verifyArchive(pgRestore, temporary, vetting).catch(
        (error: Error) => {
          throw new BackupError(`the new backup does not read back: ${error.message}`, 'pg_restore', { cause: error });
        },
      );
      made = { bytes, sha256, tables, pgDump: `${pgDump.version} at ${pgDump.location}` };
    } else {
      made = await runWasmPgDump(pgDump, facts, options.databaseUrl, lockTimeoutMs, stallTimeoutMs, temporary, log, options.signal);
      log(`wrote ${formatBytes(made.bytes)}; verifying: full decompression, pg_dump's completion trailer, the restore's vetting`);
      const vetting = { database: target.database, ...(options.signal ? { signal: options.signal } : {}) };
      const { sqlBytes } = await verifySqlDump(temporary, vetting).catch((error: Error) => {
        const problem = error instanceof RestoreError ? 'holds what a restore refuses' : 'does not read back';
        throw new BackupError(`the new backup ${problem}: ${error.message}`, 'gzip', { cause: error });
      });
      log(`read back ${formatBytes(sqlBytes)} of SQL`);
    }
    await publishFile(temporary, file);
    published = true;
    const checksumFile = await writeChecksumFile(file, made.sha256);
    log(`backup verified: ${file} (${formatBytes(made.bytes)}, ${made.tables} tables, sha256 ${made.sha256.slice(0, 12)}…)`);
    verified = { file, format, checksumFile, sha256: made.sha256, bytes: made.bytes, tables: made.tables, pgDump: made.pgDump };
  } catch (error) {
    await rm(temporary, { force: true });
    // A dump without its checksum breaks the promise "a backup is a .dump plus its .sha256".
    if (published) await rm(file, { force: true });
    const stopped = options.signal?.aborted === true || stalls.has(error as Error);
    const notEnded = stopped && facts !== undefined ? await endStrandedBackupSession(options.databaseUrl, facts.backupsBefore) : undefined;
    const holding = notEnded === undefined ? '' : `\n${notEnded}: it holds the tables' locks until it ends (SELECT pg_terminate_backend(pid), as its role or a superuser)`;
    if (options.signal?.aborted) throw new BackupError(`backup interrupted; no file was kept${holding}`, undefined, { cause: error });
    if (holding !== '') throw new BackupError(`${(error as Error).message}${holding}`, (error as BackupError).tool, { cause: error });
    throw error;
  }

  // Outside the try: the new backup is complete and verified, so a failure to delete old
  // ones must never take it with them. It fails the command, naming what was kept.
  try {
    const deleted = await pruneBackups({ backupDir: path.dirname(file), database: target.database, environment: options.environment, keep: options.keep, made: path.basename(file), log });
    for (const old of deleted) log(`deleted old backup ${old} (keeping the newest ${options.keep})`);
    return { ...verified, deleted };
  } catch (error) {
    throw new BackupError(
      `the backup ${file} is complete and verified, but deleting older backups failed: ${(error as Error).message}`,
      undefined,
      { cause: error },
    );
  }
}
