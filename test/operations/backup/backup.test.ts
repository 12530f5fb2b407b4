import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openClient } from '../../../src/db/with-client.js';
import { BackupError } from '../../../src/errors.js';
import { backupDatabase } from '../../../src/operations/backup/backup.js';
import { backupFileName } from '../../../src/operations/backup/backup-name.js';
import { freePort } from '../../../src/embedded/free-port.js';
import { debianPostgresPrograms, startDebianPostgres, type DebianPostgres } from '../../support/debian-postgres.js';
import { eventually } from '../../support/eventually.js';
import { startFakePostgres } from '../../support/fake-postgres.js';
import { healAllPartitions, packetFilterAvailable, silenceConnections } from '../../support/packet-filter.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';
import { runCli } from '../../support/run-cli.js';
import { stallingProxyFor } from '../../support/stalling-proxy.js';
import { withClient } from '../../../src/db/with-client.js';
import { holdTableLock } from '../../support/table-lock-holder.js';

const available = toolsAvailable(debianPostgresPrograms, 'the backup tests (a PostgreSQL server that pg_dump 15 can dump)');
// Named after the database it holds (a test database here), then the environment.
const backupNameOf = (database: string) => new RegExp(`^${database}_development_\\d{8}T\\d{6}\\.\\d{3}Z\\.dump$`);
const packetsDroppable = available && packetFilterAvailable("the backup's silent-partition test");

describe.skipIf(!available)('npm run db:backup', () => {
  let server: DebianPostgres;
  let databaseUrl: string;
  let database: string;
  let backupDir: string;

  beforeAll(async () => {
    server = await startDebianPostgres();
    database = await server.createMigratedDatabase();
    databaseUrl = server.urlOf(database);
  });
  afterAll(async () => server?.stop());

  beforeEach(async (context) => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-backups-'));
    context.onTestFinished(() => rm(backupDir, { recursive: true, force: true }));
  });

  // The sessions of a backup in the test's database.
  const backupSessions = () =>
    withClient(databaseUrl, async (client) =>
      (await client.query<{ state: string }>("SELECT state FROM pg_stat_activity WHERE application_name = 'kennwilliamson-backup' AND datname = current_database()")).rows,
    );

  const env = (overrides: NodeJS.ProcessEnv = {}) => ({
    DATABASE_URL: databaseUrl,
    BACKUP_DIR: backupDir,
    BACKUP_ENV: '',
    NODE_ENV: '',
    BACKUP_KEEP: '',
    ...overrides,
  });

  it('writes a verified custom-format dump and a sha256sum-compatible checksum, printing the path', async () => {
    const result = await runCli('db-backup', [], env());

    expect(result.code, result.stderr).toBe(0);
    const file = result.stdout.trim();
    expect(path.dirname(file)).toBe(backupDir);
    expect(path.basename(file)).toMatch(backupNameOf(database));
    expect((await readdir(backupDir)).sort()).toEqual([path.basename(file), `${path.basename(file)}.sha256`]);
    const content = await readFile(file);
    expect(content.subarray(0, 5).toString()).toBe('PGDMP');
    const sha256 = createHash('sha256').update(content).digest('hex');
    expect(await readFile(`${file}.sha256`, 'utf8')).toBe(`${sha256}  ${path.basename(file)}\n`);
    // Backups hold password hashes: owner-only.
    expect((await stat(file)).mode & 0o077).toBe(0);
    expect(result.stderr).toMatch(/dumping table public\.users \(\d+ of 9\)/);
    expect(result.stderr).toContain('backup verified');
    expect(result.stderr + result.stdout).not.toContain(server.password);
  });

  it('creates a missing BACKUP_DIR, and its missing parents, readable by their owner only (0700)', async () => {
    const nested = path.join(backupDir, 'new', 'backups');
    // Under the usual umask 022, a plain mkdir makes 0755: every account could list the backups.
    const result = await runCli('db-backup', [], env({ BACKUP_DIR: nested }));
    expect(result.code, result.stderr).toBe(0);
    for (const dir of [path.dirname(nested), nested]) expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('700');
  });

  // pg (the version probe) ignores these; pg_dump would obey them and go elsewhere.
  it('dumps the server pg reaches, whatever PGHOSTADDR and PGSERVICE say', async () => {
    const result = await runCli('db-backup', [], env({ PGHOSTADDR: '127.0.0.2', PGSERVICE: 'kw-no-such-service', PGPORT: '1' }));

    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`for the PostgreSQL 15 server at postgres@127.0.0.1:${new URL(databaseUrl).port}/`);
  });

  // Another database's backups under the same environment (a copy's, backed up with the same
  // NODE_ENV) are no older backups of this one: deleting them would leave that database without.
  it('keeps the newest BACKUP_KEEP backups of its database and environment and leaves everything else alone', async () => {
    const old = ['20240101T000000.000Z', '20240102T000000.000Z', '20240103T000000.000Z'].map(
      (stamp) => `${database}_development_${stamp}.dump`,
    );
    const others = [`${database}_production_20240101T000000.000Z.dump`, `${database}_copy_development_20240101T000000.000Z.dump`, 'notes.txt'];
    for (const name of [...old, ...others]) await writeFile(path.join(backupDir, name), 'x');
    for (const name of old) await writeFile(path.join(backupDir, `${name}.sha256`), 'x');

    const lines: string[] = [];
    const result = await backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 2, log: (line) => lines.push(line) });

    expect(result.deleted).toEqual([old[0], old[1]]);
    expect((await readdir(backupDir)).sort()).toEqual(
      [old[2]!, `${old[2]}.sha256`, path.basename(result.file), path.basename(result.checksumFile), ...others].sort(),
    );
    expect(lines).toContain(`deleted old backup ${old[0]} (keeping the newest 2)`);
  });

  it('keeps the backup it made when another is dated later, as by a host whose clock ran ahead', async () => {
    // Ahead by less than a day: a name dated further ahead is not counted as a backup at all.
    const ahead = backupFileName(database, 'development', new Date(Date.now() + 60 * 60 * 1000));
    await writeFile(path.join(backupDir, ahead), 'x');

    const result = await backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 1 });

    expect(result.deleted).toEqual([ahead]);
    expect((await readdir(backupDir)).sort()).toEqual([path.basename(result.file), path.basename(result.checksumFile)].sort());
  });

  it('leaves a file named like a backup but dated more than a day ahead alone, uncounted, and says so', async () => {
    const planted = `${database}_development_99991231T235959.000Z.dump`;
    await writeFile(path.join(backupDir, planted), '');
    const lines: string[] = [];

    const result = await backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 1, log: (line) => lines.push(line) });

    expect(result.deleted).toEqual([]);
    expect(lines).toContain(`left alone ${planted}: named like a backup, but dated more than a day after now`);
    expect((await readdir(backupDir)).sort()).toEqual([path.basename(result.file), path.basename(result.checksumFile), planted].sort());
  });

  it('keeps the new, verified backup when deleting older ones fails', async () => {
    // A folder under an old backup's .sha256: deleting it fails the way a file we may not
    // delete would (a folder under the backup's own name is not counted as a backup).
    const old = `${database}_development_20240101T000000.000Z.dump`;
    const stuck = `${old}.sha256`;
    await writeFile(path.join(backupDir, old), 'x');
    await mkdir(path.join(backupDir, stuck));

    const error = await backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 1, log: () => undefined }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toMatch(/is complete and verified, but deleting older backups failed: could not delete .*\.sha256: .*; deleted /);
    const kept = (await readdir(backupDir)).filter((name) => name !== stuck);
    expect(kept).toHaveLength(2);
    expect(kept.some((name) => backupNameOf(database).test(name))).toBe(true);
    expect(kept.some((name) => name.endsWith('.dump.sha256'))).toBe(true);
  });

  it('refuses a BACKUP_KEEP below 1 before dumping anything', async () => {
    const result = await runCli('db-backup', [], env({ BACKUP_KEEP: '0' }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[CONFIG_INVALID]: BACKUP_KEEP must be a whole number of at least 1');
    expect(await readdir(backupDir)).toEqual([]);
  });

  it("fails on a wrong password with pg_dump's message, never the password, and leaves no file", async () => {
    const wrong = new URL(databaseUrl);
    wrong.password = 'not-the-password-4711';
    const result = await runCli('db-backup', [], env({ DATABASE_URL: wrong.toString() }));

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[BACKUP_FAILED]: pg_dump failed');
    expect(result.stderr).toContain('password authentication failed for user "postgres"');
    expect(result.stderr + result.stdout).not.toContain('not-the-password-4711');
    expect(await readdir(backupDir)).toEqual([]);
  });

  it("fails on an unreachable server with pg_dump's message and leaves no file", async () => {
    const unreachable = new URL(databaseUrl);
    unreachable.port = String(await freePort());
    const result = await runCli('db-backup', [], env({ DATABASE_URL: unreachable.toString() }));

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/pg_dump: error: connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused/);
    expect(await readdir(backupDir)).toEqual([]);
  });

  it('when pg_dump fails after it started, removes its temporary file and deletes no older backup', async () => {
    // A login that may connect but not read the tables: pg_dump starts, then fails on LOCK TABLE.
    const role = `kw_noread_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'noread-secret'`);
    await admin.end();
    const older = `${database}_development_20240101T000000.000Z.dump`;
    await writeFile(path.join(backupDir, older), 'an older backup');
    const url = new URL(databaseUrl);
    url.username = role;
    url.password = 'noread-secret';

    const result = await runCli('db-backup', [], env({ DATABASE_URL: url.toString(), BACKUP_KEEP: '1' }));

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/pg_dump: error: query failed: ERROR: {2}permission denied for table/);
    expect(await readdir(backupDir)).toEqual([older]);
  });

  // A backend stuck while its host's kernel still acknowledges (here: a proxy that stops
  // passing pg_dump's COPY on): neither keepalive nor tcp_user_timeout ever fires. And pg_dump
  // run through a wrapper that does not exec it (PG_DUMP naming a shell script, sudo -u): it
  // outlived the wrapper's SIGKILL and held the pipes, so the backup waited for ever (90 s and
  // on in an audit) with pg_dump's server session holding every table's lock.
  // And a process that leaves the tree holding pg_dump's output, as one that a SIGKILL cannot
  // reach does (run as another user through sudo -u): its pipes are let go of.
  async function wrapper(body: string, onTestFinished: (cleanup: () => Promise<void>) => void): Promise<string> {
    const bin = await mkdtemp(path.join(os.tmpdir(), 'kw-pg-dump-wrapper-'));
    onTestFinished(() => rm(bin, { recursive: true, force: true }));
    const file = path.join(bin, 'pg_dump');
    const pgDump = path.join(debianPostgresBinDir, 'pg_dump');
    await writeFile(file, `#!/bin/sh\ncase "$1" in --version) exec ${pgDump} --version ;; esac\n${body.replaceAll('PG_DUMP', pgDump)}\n`, { mode: 0o755 });
    return file;
  }
  it.for([
    { run: 'pg_dump', body: undefined },
    { run: 'pg_dump through a wrapper that does not exec it', body: 'PG_DUMP "$@"' },
    { run: 'pg_dump beside a process that leaves its tree holding its output', body: '(setsid sleep 617 &)\nexec PG_DUMP "$@"' },
  ])('stops $run and keeps no file when the server stops answering it mid-dump, after stallTimeoutMs without a sign of life', async ({ body }, { onTestFinished }) => {
    onTestFinished(() => void spawn('pkill', ['-KILL', '-f', 'sleep 617']));
    const toolSearch = body === undefined ? undefined : { env: { ...process.env, PG_DUMP: await wrapper(body, onTestFinished) }, docker: false };
    const { proxy, url: throughProxy } = await stallingProxyFor(databaseUrl, onTestFinished);
    const stalled = proxy.stallOn(/COPY public\.users /);

    const error = await backupDatabase({
      databaseUrl: throughProxy,
      backupDir,
      environment: 'development',
      keep: 1,
      stallTimeoutMs: 2_000,
      toolSearch,
    }).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toMatch(/^pg_dump showed no sign of life \(no output, no progress line\) for 2 s while dumping postgres@127\.0\.0\.1:\d+\/[^\n]*no file is kept$/);
    expect(await readdir(backupDir)).toEqual([]);
    // pg_dump's server session, whose connection the proxy keeps open, holding every table's
    // lock: ended by the backup, where it blocked a migration and a restore until ended by hand.
    expect(await backupSessions()).toEqual([]);
  });

  it('gives up on a table another session holds after lockTimeoutMs, naming the table, and leaves no file', async () => {
    const blocker = await holdTableLock(databaseUrl, 'users');
    try {
      const error = await backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 1, lockTimeoutMs: 300 }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(BackupError);
      expect((error as Error).message).toContain('pg_dump waited more than 300 ms for a lock on table public.users');
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await blocker.release();
    }
  });

  // Real packet loss (iptables DROP, both directions) on pg_dump's connection alone, while it
  // waits for a lock: the server's error at the end of --lock-wait-timeout would never arrive,
  // and without keepalive pg_dump would wait for the kernel's two hours. A test that times out
  // never reaches its `finally`: its rules go in afterEach.
  afterEach(() => {
    if (packetsDroppable) healAllPartitions();
  });
  it.skipIf(!packetsDroppable)(
    'ends a pg_dump cut off by a silent partition through TCP keepalive, on both sides, saying the server stopped answering, and leaves no file',
    async () => {
      // The observer stays outside the blocker's transaction, which would see pg_stat_activity as it first read it.
      const [blocker, observer] = await Promise.all([holdTableLock(databaseUrl, 'users'), openClient(databaseUrl)]);
      let partition: ReturnType<typeof silenceConnections> | undefined;
      let silenced: { pid: number; port: number } | undefined;
      try {
        // A lock wait far longer than the test: only keepalive can end pg_dump's wait.
        const outcome = backupDatabase({ databaseUrl, backupDir, environment: 'development', keep: 1, lockTimeoutMs: 600_000 }).catch((e: unknown) => e);
        await eventually(async () => {
          const { rows } = await observer.query<{ pid: number; port: number }>(
            "SELECT pid, client_port AS port FROM pg_stat_activity WHERE application_name = 'kennwilliamson-backup' AND wait_event_type = 'Lock'",
          );
          silenced = rows[0];
          return silenced !== undefined;
        }, "pg_dump waits for the blocker's lock");
        partition = silenceConnections(Number(new URL(databaseUrl).port), [silenced!.port]);

        const error = await outcome;

        expect(error).toBeInstanceOf(BackupError);
        expect((error as Error).message).toContain('the server stopped answering pg_dump for 15 s (no reply to TCP keepalive)');
        expect((error as Error).message).toMatch(/could not receive data from server: Connection timed out/);
        expect(await readdir(backupDir)).toEqual([]);
        // And the server ends pg_dump's session by its own keepalive (PGOPTIONS), rather than
        // letting it wait out the lock and then keep its locks and snapshot for nobody.
        const alive = async () => (await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [silenced!.pid])).rowCount === 1;
        await eventually(async () => !(await alive()), "the server ends pg_dump's session", { timeoutMs: 15_000 });
        silenced = undefined;
      } finally {
        partition?.heal();
        if (silenced) await observer.query('SELECT pg_terminate_backend($1)', [silenced.pid]);
        await Promise.all([blocker.release(), observer.end()]);
      }
    },
    // keepalive's 15 s, and the backup's start and checks on a busy machine.
    60_000,
  );

  it('an interrupted backup (Ctrl-C) stops pg_dump and leaves no file', async () => {
    const controller = new AbortController();
    const error = await backupDatabase({
      databaseUrl,
      backupDir,
      environment: 'development',
      keep: 1,
      signal: controller.signal,
      log: (line) => line.startsWith('dumping table') && controller.abort(),
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).message).toBe('backup interrupted; no file was kept');
    expect(await readdir(backupDir)).toEqual([]);
    expect(await backupSessions()).toEqual([]);
  });

  // S2: the pooler check fails closed. A server that lets the login in and then answers no
  // query (a pooler whose server connections are all busy or gone) leaves the check
  // undecided: pg_dump must not run, since it would reach that pooler.
  it('does not run pg_dump when the pooler check cannot decide, saying why', async () => {
    const undecided = await startFakePostgres('login, then hangs up');
    try {
      const result = await runCli('db-backup', [], env({ DATABASE_URL: `postgresql://kw:pw@127.0.0.1:${undecided.port}/kennwilliamson` }));

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`could not check that kw@127.0.0.1:${undecided.port}/kennwilliamson is PostgreSQL itself and not a connection pooler`);
      expect(result.stderr).toContain('pg_dump was not run');
      expect(result.stderr).not.toContain('pw@');
      // One connection: the check's. pg_dump never connected.
      expect(undecided.accepted()).toBe(1);
      expect(await readdir(backupDir)).toEqual([]);
    } finally {
      await undecided.close();
    }
  });

  it('throws a typed BackupError from the library', async () => {
    const unreachable = new URL(databaseUrl);
    unreachable.port = String(await freePort());
    await expect(
      backupDatabase({ databaseUrl: unreachable.toString(), backupDir, environment: 'development', keep: 1 }),
    ).rejects.toBeInstanceOf(BackupError);
  });
});
