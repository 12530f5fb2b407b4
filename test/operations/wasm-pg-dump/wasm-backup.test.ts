import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { openClient } from '../../../src/db/with-client.js';
import { BackupError } from '../../../src/errors.js';
import { backupDatabase } from '../../../src/operations/backup/backup.js';
import { freePort } from '../../../src/embedded/free-port.js';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { ByteRingWriter } from '../../../src/operations/wasm-pg-dump/byte-ring.js';
import { startWasmPgDump } from '../../../src/operations/wasm-pg-dump/wasm-pg-dump.js';
import type { WasmPgDumpWorkerData } from '../../../src/operations/wasm-pg-dump/wasm-pg-dump-worker.js';
import { recreateDatabase } from '../../../src/provisioning/database-admin.js';
import { observeModuleWorkers } from '../../support/bundled-module-worker.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { eventually } from '../../support/eventually.js';
import { startFakePostgres } from '../../support/fake-postgres.js';
import { toolsAvailable } from '../../support/required-tools.js';
import { cliOutcome, runCli, startCli } from '../../support/run-cli.js';
import { stallingProxyFor } from '../../support/stalling-proxy.js';
import { execute, fillEveryTable, migrationsRecord, tableContents } from '../../support/table-contents.js';
import { holdTableLock } from '../../support/table-lock-holder.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// The run's shared server is PostgreSQL 17; these machines have only Debian's pg_dump 15
// (and its psql, which restores). So db:backup falls back to the WebAssembly pg_dump.
const available = toolsAvailable(
  [path.join(debianPostgresBinDir, 'pg_dump'), path.join(debianPostgresBinDir, 'psql')],
  'the WebAssembly backup tests (pg_dump 15, too old for the PostgreSQL 17 server, and psql to restore)',
);
// Named after the database it holds, then the environment.
const backupNameOf = (database: string) => new RegExp(`^${database}_development_\\d{8}T\\d{6}\\.\\d{3}Z\\.sql\\.gz$`);

// Library calls that must take the WebAssembly path whatever this machine has installed.
const noNativePgDump = { env: { PATH: '' }, installationsDir: path.join(os.tmpdir(), 'kw-no-postgres-here'), docker: false };

describe.skipIf(!available)('db:backup of PostgreSQL 17 with only pg_dump 15 installed (WebAssembly pg_dump)', () => {
  let database: TestDatabase;
  let roundTrip: TestDatabase;
  let backupDir: string;

  beforeAll(async () => {
    [database, roundTrip] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    await fillEveryTable(roundTrip.url);
  });
  afterAll(async () => Promise.all([database?.drop(), roundTrip?.drop()]));

  beforeEach(async (context) => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-wasm-backups-'));
    context.onTestFinished(() => rm(backupDir, { recursive: true, force: true }));
  });

  const env = (overrides: NodeJS.ProcessEnv = {}) => ({
    DATABASE_URL: database.url,
    BACKUP_DIR: backupDir,
    BACKUP_ENV: '',
    NODE_ENV: '',
    BACKUP_KEEP: '',
    PG_DUMP: '',
    ...overrides,
  });

  it('round trip: backup, wipe, db:restore FILE --yes gives every table and the migrations record back unchanged', async () => {
    const before = await tableContents(roundTrip.url);
    const record = await migrationsRecord(roundTrip.url);
    expect(before.users!.rows).toBe(601);

    const made = await runCli('db-backup', [], env({ DATABASE_URL: roundTrip.url }));

    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toMatch(
      /no native pg_dump fits this PostgreSQL 17 server \(found 15 at \S+pg_dump.*\); using the WebAssembly pg_dump 18\.\d+ of @electric-sql\/pglite-tools \d+\.\d+\.\d+: plain SQL, gzip-compressed/,
    );
    expect(made.stderr).toMatch(/dumping table public\.users \(\d+ of 9\)/);
    expect(made.stderr).toContain("verifying: full decompression, pg_dump's completion trailer, the restore's vetting");
    const file = made.stdout.trim();
    expect(path.basename(file)).toMatch(backupNameOf(roundTrip.name));
    expect((await readdir(backupDir)).sort()).toEqual([path.basename(file), `${path.basename(file)}.sha256`]);
    const content = await readFile(file);
    expect([...content.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    expect(await readFile(`${file}.sha256`, 'utf8')).toBe(`${createHash('sha256').update(content).digest('hex')}  ${path.basename(file)}\n`);
    expect((await stat(file)).mode & 0o077).toBe(0);

    await recreateDatabase(roundTrip.url, { owner: inject('ownerUser') });
    expect(await tableContents(roundTrip.url).catch((error: Error) => error.message)).toMatch(/relation "users" does not exist/);
    const restored = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: roundTrip.ownerUrl });

    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toContain('checksum verified');
    expect(await tableContents(roundTrip.url)).toEqual(before);
    expect(await migrationsRecord(roundTrip.url)).toEqual(record);
  });

  // A backup with no native pg_dump to find, so the WebAssembly one runs; resolves to its error.
  const wasmBackupOf = (url: URL, log?: (line: string) => void) =>
    backupDatabase({
      databaseUrl: url.toString(),
      backupDir,
      environment: 'development',
      keep: 1,
      toolSearch: noNativePgDump,
      ...(log ? { log } : {}),
    }).catch((e: unknown) => e);

  // Every spelling pg reads as TLS (pg-tls-setting.test.ts has them all, checked against pg).
  it.each([
    ['sslmode', 'require'],
    ['sslmode', 'prefer'],
    ['sslmode', 'no-verify'],
    ['ssl', 'true'],
    ['ssl', '1'],
  ])('refuses a URL with %s=%s, which pg connects to with TLS and the WebAssembly pg_dump lacks, and leaves no file', async (name, value) => {
    const url = new URL(database.url);
    url.searchParams.set(name, value);
    const error = await wasmBackupOf(url);

    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toMatch(
      new RegExp(`^the WebAssembly pg_dump has no TLS support and cannot honour ${name}=${value}, .* install PostgreSQL's client tools \\(a native pg_dump`),
    );
    expect(await readdir(backupDir)).toEqual([]);
  });

  it('publishes no backup that a restore would refuse: a SECURITY DEFINER function is refused at backup time, leaving no file', async () => {
    const refused = await createTestDatabase();
    try {
      await execute(refused.url, 'CREATE FUNCTION public.as_owner() RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$');
      const error = await wasmBackupOf(new URL(refused.url));

      expect(error).toBeInstanceOf(BackupError);
      expect((error as Error).message).toMatch(
        /^the new backup holds what a restore refuses: line \d+ of the backup's SQL: SECURITY DEFINER makes a function run with its owner's powers/,
      );
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await refused.drop();
    }
  });

  it("reports a refused port in Node's words and leaves no file", async () => {
    const url = new URL(database.url);
    url.port = String(await freePort());
    const lines: string[] = [];
    const error = await wasmBackupOf(url, (line) => lines.push(line));

    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toBe(
      `pg_dump could not connect to postgres@127.0.0.1:${url.port}/${database.name}: connect ECONNREFUSED 127.0.0.1:${url.port}`,
    );
    expect(lines[0]).toMatch(/^no native pg_dump fits \(found none\); using the WebAssembly pg_dump 18\./);
    expect(await readdir(backupDir)).toEqual([]);
  });

  it('gives up on a server that accepts the connection but never answers, after connect_timeout', async () => {
    // libpq's own connect_timeout cannot fire in this build (its poll always says ready).
    // Called directly: backupDatabase would first spend its own 10 s asking the server's version.
    const silent = await startFakePostgres('nothing');
    try {
      const url = new URL(database.url);
      url.port = String(silent.port);
      url.searchParams.set('connect_timeout', '1');
      const run = await startWasmPgDump({ connection: libpqConnection(url.toString()), args: ['--format=plain'] });
      const [exit] = await Promise.all([run.exited, run.pipeTo(new Writable({ write: (_chunk, _encoding, callback) => callback() }))]);

      expect(exit.code).toBe(1);
      expect(exit.stderr).toContain('server closed the connection unexpectedly');
      expect(exit.connectionError).toBe('the server did not answer within 1 s (connect_timeout)');
    } finally {
      await silent.close();
    }
  });

  it("reports a wrong password in libpq's words, never the password, and leaves no file", async () => {
    const url = new URL(database.url);
    url.password = 'not-the-password-4711';
    const error = await wasmBackupOf(url);

    expect(error).toBeInstanceOf(BackupError);
    const message = (error as Error).message;
    expect(message).toMatch(/^pg_dump 18\.\d+ \(WebAssembly, @electric-sql\/pglite-tools [\d.]+\) failed \(exit 1\)/);
    expect(message).toContain(
      `pg_dump: error: connection to server at "127.0.0.1", port ${url.port} failed: FATAL:  password authentication failed for user "postgres"`,
    );
    expect(message).not.toContain('not-the-password-4711');
    expect(await readdir(backupDir)).toEqual([]);
  });

  // Its sockets' keepalive is answered by a host whose backend is stuck (here: a proxy that
  // stops passing its COPY on): only the watch on its output ends the run.
  it('stops the WebAssembly pg_dump and keeps no file when the server stops answering it mid-dump', async ({ onTestFinished }) => {
    const { proxy, url: throughProxy } = await stallingProxyFor(database.url, onTestFinished);
    const stalled = proxy.stallOn(/COPY public\.users /);

    const error = await backupDatabase({
      databaseUrl: throughProxy,
      backupDir,
      environment: 'development',
      keep: 1,
      toolSearch: noNativePgDump,
      stallTimeoutMs: 3_000,
    }).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toMatch(/^pg_dump showed no sign of life \(no output, no progress line\) for 3 s/);
    expect(await readdir(backupDir)).toEqual([]);
  });

  it('gives up on a table another session holds after lockTimeoutMs, saying so, and leaves no file', async () => {
    const blocker = await holdTableLock(database.url, 'users');
    try {
      const error = await backupDatabase({ databaseUrl: database.url, backupDir, environment: 'development', keep: 1, toolSearch: noNativePgDump, lockTimeoutMs: 300 }).catch(
        (e: unknown) => e,
      );

      expect(error).toBeInstanceOf(BackupError);
      // The WebAssembly pg_dump does not print the query it ran, so the table goes unnamed.
      expect((error as Error).message).toContain('pg_dump waited more than 300 ms for a lock on a table, which another session holds');
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await blocker.release();
    }
  });

  // The backups' sessions that wait for a lock on users, as another session (not the blocker's,
  // whose transaction would see pg_stat_activity as it first read it) sees them.
  const backupsWaitingForUsers = async (observer: pg.Client) =>
    (
      await observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE NOT l.granted AND l.relation = 'users'::regclass AND a.application_name = 'kennwilliamson-backup' AND a.datname = current_database()`,
      )
    ).rows[0]!.n;

  // And a hang-up (the SSH session that ran it dropped), which ended the command at once.
  it.each(['SIGINT', 'SIGHUP'] as const)('%s while pg_dump waits for the server stops it and leaves no file', async (signal) => {
    // A session holding a lock on users makes pg_dump wait (for its LOCK TABLE) until we let
    // go, which is only after the command exited: pg_dump's thread is blocked in wasm, so
    // only the main thread, free to handle SIGINT, can end it.
    const [blocker, observer] = await Promise.all([holdTableLock(database.url, 'users'), openClient(database.url)]);
    try {
      const child = startCli('db-backup', [], env());
      const finished = cliOutcome(child);
      await eventually(async () => (await backupsWaitingForUsers(observer)) === 1, "the backup's pg_dump waits for the lock", { timeoutMs: 20_000 });

      child.kill(signal);
      const { code, stderr } = await finished;

      expect(code, stderr).toBe(1);
      expect(stderr).toContain(`${signal}: stopping and cleaning up`);
      expect(stderr).toContain('backup interrupted; no file was kept');
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await Promise.all([blocker.release(), observer.end()]);
    }
  });

  // The threads the WebAssembly pg_dump starts in this process from now on, to act on from
  // outside as a crash would; observed until the test ends.
  const threadsStarted = (context: { onTestFinished: (fn: () => void) => void }) => {
    const started: { name: string; worker: Worker; workerData: unknown }[] = [];
    context.onTestFinished(observeModuleWorkers((name, worker, { workerData }) => void started.push({ name, worker, workerData })));
    return started;
  };
  const socketThreadsOf = (started: ReturnType<typeof threadsStarted>) => started.filter(({ name }) => name === 'pg-socket-worker').map(({ worker }) => worker);

  it.for<[string, (worker: Worker) => void, RegExp]>([
    // Stopped from outside: no 'error', only the exit.
    ['is terminated', (worker: Worker) => void worker.terminate(), /\(the connection: the socket thread ended unexpectedly \(exit code 1\)\)$/],
    // An attach message without its port: the thread's handler throws, as any bug of its own
    // would (an uncaught exception ends the thread, with an 'error' and then the exit).
    ['throws', (worker: Worker) => worker.postMessage({ type: 'attach' }), /\(the connection: the socket thread failed: .*\bon\b.*\)$/],
  ])("ends the backup with a BackupError when pg_dump's socket thread %s mid-dump, and leaves no file", async ([, kill, says], context) => {
    // pg_dump waits for its LOCK TABLE on users, connected, in the middle of its queries,
    // for as long as the blocker holds the lock: the thread dies at a known point, and pg_dump
    // cannot finish first.
    const started = threadsStarted(context);
    const [blocker, observer] = await Promise.all([holdTableLock(database.url, 'users'), openClient(database.url)]);
    try {
      const backup = wasmBackupOf(new URL(database.url));
      await eventually(async () => (await backupsWaitingForUsers(observer)) === 1, "the backup's pg_dump waits for the lock", { timeoutMs: 20_000 });
      const sockets = socketThreadsOf(started);
      expect(sockets).toHaveLength(1);

      kill(sockets[0]!);
      // Without an end of its own, this waits for ever (until the test's timeout).
      const error = await backup;

      expect(error).toBeInstanceOf(BackupError);
      expect((error as Error).message).toMatch(/^pg_dump 18\.\d+ \(WebAssembly, .*\) failed \(exit 1\) for /);
      expect((error as Error).message).toContain('server closed the connection unexpectedly');
      expect((error as Error).message).toMatch(says);
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await Promise.all([blocker.release(), observer.end()]);
    }
  });

  it('stops pg_dump within its grace period when the socket thread died and pg_dump cannot read the end (its destination stalled)', async (context) => {
    // A destination that holds on to its first chunk: pg_dump fills the output ring and then
    // waits on it, so it never reads the end of the server's stream; only the grace period
    // can end the run. 10 MB of COPY output (compressed in the table) is more than the rings hold.
    const stalled = await createTestDatabase();
    context.onTestFinished(() => stalled.drop());
    await execute(stalled.url, "CREATE TABLE public.filler AS SELECT g, repeat('x', 10000) AS padding FROM generate_series(1, 1000) g");
    const started = threadsStarted(context);
    const run = await startWasmPgDump({ connection: libpqConnection(stalled.url), args: ['--format=plain'] });
    let release: (() => void) | undefined;
    const destination = new Writable({ write: (_chunk, _encoding, callback) => (release ? callback() : (release = callback)) });
    const piped = run.pipeTo(destination).catch((error: unknown) => error);
    // pg_dump is stuck for good once its output ring is full (nothing takes from it) while
    // its ring from the server holds more than it turns into one 64 kB batch of output before
    // it must write that batch out: read from the rings' shared memory, no timing involved.
    const { ring, output } = started.find(({ name }) => name === 'wasm-pg-dump-worker')!.workerData as WasmPgDumpWorkerData;
    const [fromServer, toDestination] = [new ByteRingWriter(ring!), new ByteRingWriter(output!)];
    const unread = () => ring!.data.byteLength - fromServer.free;
    await eventually(() => toDestination.free === 0 && unread() >= 256 * 1024, "pg_dump's output ring is full, with more to read", { timeoutMs: 20_000 });
    const sockets = socketThreadsOf(started);
    expect(sockets).toHaveLength(1);

    await sockets[0]!.terminate();
    const exit = await run.exited;

    expect(exit.code).toBeNull();
    expect(exit.error?.message).toBe('the connection ended: the socket thread ended unexpectedly (exit code 1)');
    expect(exit.connectionError).toBe('the socket thread ended unexpectedly (exit code 1)');
    // What pg_dump wrote before it was stopped still arrives, but its output never ends.
    release!();
    expect(await piped).toBe(exit.error);
  });
});
