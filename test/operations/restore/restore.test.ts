import { execFileSync, spawn } from 'node:child_process';
import { appendFile, copyFile, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, type ExpectStatic, it } from 'vitest';
import { openClient, withClient } from '../../../src/db/with-client.js';
import { shellQuote } from '../../../src/shell-quote.js';
import { recreateDatabase } from '../../../src/provisioning/database-admin.js';
import { RestoreError } from '../../../src/errors.js';
import { backupDatabase, type BackupResult } from '../../../src/operations/backup/backup.js';
import { restoreDatabase } from '../../../src/operations/restore/restore.js';
import type { PgTool } from '../../../src/operations/pg-tools/pg-tools.js';
import { verifyArchive } from '../../../src/operations/vetting/verify-archive.js';
import { verifyBackupFile } from '../../../src/operations/vetting/verify-backup-file.js';
import { debianPostgresPrograms, startDebianPostgres, type DebianPostgres } from '../../support/debian-postgres.js';
import { eventually } from '../../support/eventually.js';
import { migrationsDefining } from '../../support/migration-sandbox.js';
import { healAllPartitions, packetFilterAvailable, silenceConnections } from '../../support/packet-filter.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';
import { runCli, runCliInTerminal } from '../../support/run-cli.js';
import { commitMessage, stallingProxyFor, startStallingProxy, type StallingProxy } from '../../support/stalling-proxy.js';
import { holdTableLock } from '../../support/table-lock-holder.js';
import { holdAdvisoryLock } from '../../support/advisory-lock-holder.js';
import { migrationLockKey } from '../../../src/migrations/migration-lock.js';
import { formatBytes } from '../../../src/operations/files/progress-reporter.js';
import { execute, fillEveryTable, migrationsRecord, tableContents } from '../../support/table-contents.js';

const available = toolsAvailable(debianPostgresPrograms, 'the restore tests (a PostgreSQL server that pg_dump 15 can dump)');
const packetsDroppable = available && packetFilterAvailable("the restore's silent-partition test");

// Each test restores into a database of its own, so they run side by side.
// A budget for the restore's tables in which a blocker is surely named: the first attempt is not
// watched, and with 1.5 s (two watched attempts of 200 and 400 ms) a busy machine once opened
// the monitor's connection too late for either, and the refusal said "no blocking session seen".
const namedWithinMs = 5_000;

describe.skipIf(!available)('npm run db:restore', () => {
  let server: DebianPostgres;
  let workDir: string;
  let sourceUrl: string;
  let roundTripUrl: string;
  let roundTripDatabase: string;
  let otherData: string;
  let backup: BackupResult;
  let sourceContents: Awaited<ReturnType<typeof tableContents>>;

  beforeAll(async () => {
    // pg_stat_statements tells what the server compiled with JIT: Debian's PostgreSQL has it.
    server = await startDebianPostgres({ settings: { shared_preload_libraries: 'pg_stat_statements' } });
    await execute(server.urlOf('postgres'), 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-restore-'));
    const source = await server.createMigratedDatabase();
    sourceUrl = server.urlOf(source);
    await fillEveryTable(sourceUrl);
    sourceContents = await tableContents(sourceUrl);
    roundTripDatabase = await server.cloneDatabase(source);
    roundTripUrl = server.ownerUrlOf(roundTripDatabase);
    // A migrated database with rows of its own and a table a later migration added: data to lose.
    otherData = await server.createMigratedDatabase();
    await fillEveryTable(server.ownerUrlOf(otherData), { users: 30, tag: 'other' });
    await execute(server.ownerUrlOf(otherData), 'CREATE TABLE later_feature (id int PRIMARY KEY); INSERT INTO later_feature VALUES (42)');
    backup = await backupDatabase({ databaseUrl: sourceUrl, backupDir: path.join(workDir, 'backups'), environment: 'test', keep: 5 });
  });
  afterAll(async () => {
    await server?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A copy of the database with other data, to restore into, as its owner (not a superuser). */
  async function databaseWithOtherData(): Promise<string> {
    return server.ownerUrlOf(await server.cloneDatabase(otherData));
  }

  // The proxy closed, the server sees the restore's connection gone, and rolls it back.
  async function rolledBackOnceClosed(proxy: StallingProxy, target: string, before: Awaited<ReturnType<typeof tableContents>>): Promise<void> {
    await proxy.close();
    await eventually(async () => JSON.stringify(await tableContents(target)) === JSON.stringify(before), 'the server rolled the restore back');
  }

  /** A copy of the backup, in a folder of its own: a test may swap, damage or add to it. */
  // A copy without its .sha256, for the tests of what follows the check: a custom archive
  // without one is accepted only when asked to.
  const unchecked = { withoutChecksum: true };
  async function backupCopy(prefix: string): Promise<string> {
    const copy = path.join(await mkdtemp(path.join(workDir, prefix)), path.basename(backup.file));
    await copyFile(backup.file, copy);
    return copy;
  }

  async function filesIn(folder: string): Promise<string[]> {
    return (await readdir(folder)).sort();
  }

  it('round trip: back up, wipe, restore (given the superuser, as the owner) gives every table and the migrations record back unchanged', async ({ expect }) => {
    const backupDir = path.join(workDir, 'round-trip');
    const made = await runCli('db-backup', [], { DATABASE_URL: roundTripUrl, BACKUP_DIR: backupDir, BACKUP_ENV: 'test' });
    expect(made.code, made.stderr).toBe(0);
    const file = made.stdout.trim();
    const record = await migrationsRecord(roundTripUrl);
    expect(sourceContents.users!.rows).toBe(601);
    expect(sourceContents.refresh_tokens!.rows).toBe(1200);

    await recreateDatabase(server.urlOf(roundTripDatabase), { owner: server.owner.user });
    expect(await readdir(backupDir)).toHaveLength(2);
    // As the default set-up runs it: the URL is the superuser's; the SQL runs as the owner.
    const restored = await runCli('db-restore', [file, '--yes'], {
      DATABASE_URL: server.urlOf(roundTripDatabase),
      DB_OWNER_PASSWORD: server.owner.password,
    });

    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toContain(`restoring as the database's owner '${server.owner.user}', not as 'postgres'`);
    expect(restored.stderr).toContain('checksum verified');
    expect(restored.stderr).toMatch(/restoring table public\.users \(\d of 9\)/);
    expect(await tableContents(roundTripUrl)).toEqual(sourceContents);
    expect(await migrationsRecord(roundTripUrl)).toEqual(record);
    expect(restored.stderr + restored.stdout).not.toContain(server.password);
    expect(restored.stderr + restored.stdout).not.toContain(server.owner.password);
  });

  it('replaces a database that moved on with exactly the backup, tables of later migrations included', async ({ expect }) => {
    const target = await databaseWithOtherData();

    await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file) });

    expect(await tableContents(target)).toEqual(sourceContents);
    await expect(execute(target, 'SELECT * FROM later_feature')).rejects.toThrow('relation "later_feature" does not exist');
  });

  // A server built with LLVM (Debian's, and the official images') compiles a query with JIT
  // once its estimate passes jit_above_cost; the restore's catalog checks, over catalogs of a
  // few thousand rows, are estimated far above it. Compiled, two of them took 191 and 366 ms on
  // PostgreSQL 15, each time a restore ran; they run in a few milliseconds without.
  it('compiles none of its statements with JIT, at the server\'s default thresholds', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const database = new URL(target).pathname.slice(1);
    const statements = () =>
      withClient(server.urlOf('postgres'), async (client) => {
        const { rows } = await client.query<{ calls: number; compiled: number }>(
          `SELECT coalesce(sum(s.calls), 0)::int AS calls, coalesce(sum(s.jit_functions), 0)::int AS compiled
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1`,
          [database],
        );
        return rows[0]!;
      });
    // A server without LLVM compiles nothing either way: this one must have it.
    const jit = await withClient(target, async (client) => (await client.query<{ available: boolean }>('SELECT pg_jit_available() AS available')).rows[0]!.available);
    expect(jit).toBe(true);
    const before = await statements();

    await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file) });

    const after = await statements();
    // The restore's statements were seen (the backup's, and its checks), none compiled.
    expect(after.calls - before.calls).toBeGreaterThan(100);
    expect(after.compiled - before.compiled).toBe(0);
  });

  // A long reader of a late table (users, a report's transaction) while services query the
  // others: the restore takes the tables in short attempts, rolling back between them, rather
  // than dropping one table after another and waiting for the reader's with the earlier ones held.
  it("takes the tables in short attempts while a reader holds one: the services' queries of the others go on, and it restores once the reader is done", async ({ expect }) => {
    const target = await databaseWithOtherData();
    const reader = await holdTableLock(target, 'users', 'ACCESS SHARE');
    const lines: string[] = [];
    let restored: Promise<unknown> | undefined;
    try {
      restored = restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file), lockTimeoutMs: 60_000, log: (line) => lines.push(line) });
      restored.catch(() => undefined);
      await eventually(() => lines.some((line) => /attempt \d+ waited .* blocked by pid \d+/.test(line)), 'an attempt names the reader');
      // The services' queries, each willing to wait 2 s for a lock, over several attempts.
      for (let round = 0; round < 3; round++) {
        await execute(target, "SET lock_timeout = '2s'; SELECT count(*) FROM public.phrases; SELECT count(*) FROM public.incident_timers");
      }
    } finally {
      await reader.release();
    }
    await restored;
    expect(lines.filter((line) => line.startsWith(`restoring into '${new URL(target).pathname.slice(1)}': attempt `)).length).toBeGreaterThan(1);
    expect(await tableContents(target)).toEqual(sourceContents);
  });

  // A small backup's SQL fits in the pipes: pg_restore writes all of it and ends while the
  // restore still waits for its locks, which is no stall of pg_restore's.
  // A backup, its check and a restore with seconds of lock waits: 17 s alone, more under the suite.
  it("waits for the tables longer than stallTimeoutMs after a small backup's pg_restore has written all of it, and restores it", { timeout: 120_000 }, async ({ expect }) => {
    const target = await databaseWithOtherData();
    const small = await backupDatabase({ databaseUrl: server.urlOf(await server.createMigratedDatabase()), backupDir: path.join(workDir, 'small'), environment: 'test', keep: 5 });
    const reader = await holdTableLock(target, 'users', 'ACCESS SHARE');
    const lines: string[] = [];
    let restored: Promise<unknown> | undefined;
    try {
      // A stall window well above a busy machine's start of pg_restore (at 300 ms, a run beside
      // two others once saw pg_restore write nothing for that long, before any lock wait; at
      // 800 ms, a CI run on a machine twice as slow)...
      restored = restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(small.file), lockTimeoutMs: 60_000, stallTimeoutMs: 2_000, log: (line) => lines.push(line) });
      restored.catch(() => undefined);
      // ...and a wait for the tables well past it: attempts of 100, 200, 400, 800, 1000 and
      // 1000 ms with pauses between, about 4 s, the last five naming the reader.
      // (The restore checks and opens first: seconds on a busy machine before any attempt.)
      await eventually(() => lines.filter((line) => /attempt \d+ waited .* blocked by pid \d+/.test(line)).length >= 5, 'five attempts name the reader', {
        timeoutMs: 45_000,
      });
    } finally {
      await reader.release();
    }
    await restored;
    expect(lines).toContain(`restored ${small.tables} tables from ${small.file}`);
  });

  it('gives up taking the tables after lockTimeoutMs while the reader stays, naming it, and leaves the database as it was', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const reader = await holdTableLock(target, 'users', 'ACCESS SHARE');
    try {
      const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file), lockTimeoutMs: namedWithinMs }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toMatch(
        /^restore failed and was rolled back; the database was not changed:\ngave up waiting for the migration lock and the locks on the tables of public after \d+ attempt\(s\) over \d+ ms, blocked by pid \d+/,
      );
    } finally {
      await reader.release();
    }
    expect(await tableContents(target)).toEqual(before);
  });

  it('refuses a file that fails its checksum, and leaves the database as it was', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const folder = await mkdtemp(path.join(workDir, 'damaged-'));
    const damaged = path.join(folder, path.basename(backup.file));
    const bytes = await readFile(backup.file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(damaged, bytes);
    await copyFile(backup.checksumFile, `${damaged}.sha256`);

    const result = await runCli('db-restore', [damaged, '--yes'], { DATABASE_URL: target });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[RESTORE_FAILED]: refusing to restore');
    expect(result.stderr).toContain('Checksum mismatch');
    expect(result.stderr).toContain('the database was not touched');
    expect(await tableContents(target)).toEqual(before);
    expect(await filesIn(folder)).toEqual([path.basename(damaged), `${path.basename(damaged)}.sha256`]);
  });

  // A FIFO there was read for ever: the restore hung before it asked, and Ctrl-C could not end it.
  it('refuses at once a backup whose .sha256 is a FIFO, rather than wait on it', async ({ expect }) => {
    const copy = await backupCopy('fifo-checksum-');
    execFileSync('mkfifo', [`${copy}.sha256`]);

    const error = await verifyBackupFile(copy).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('its .sha256 cannot be read (Error: not a regular file)');
  });

  // The file restored is the one checked: a confirmation prompt, or a script's pause, lies
  // between the two, and another backup renamed over it (or the file rewritten) would restore
  // unchecked content.
  it('refuses a backup that another file replaced, or that was written to, since it was checked, before touching the database', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const copy = await backupCopy('replaced-');
    const verified = await verifyBackupFile(copy, unchecked);
    await copyFile(backup.file, `${copy}.other`);
    await rename(`${copy}.other`, copy);

    const replaced = await restoreDatabase({ databaseUrl: target, backup: verified }).catch((e: unknown) => e);

    expect(replaced).toBeInstanceOf(RestoreError);
    expect((replaced as Error).message).toBe(
      `refusing to restore ${copy}: it changed since it was checked (another file is in its place): check it again; the database was not touched`,
    );
    const again = await verifyBackupFile(copy, unchecked);
    await appendFile(copy, Buffer.alloc(1));
    const written = await restoreDatabase({ databaseUrl: target, backup: again }).catch((e: unknown) => e);
    expect((written as Error).message).toContain('it changed since it was checked (it was written to)');
    // Written in place, the same size, its modification time set back: the inode's change time tells.
    const third = await verifyBackupFile(copy, unchecked);
    const times = path.join(path.dirname(copy), 'times');
    await writeFile(times, '');
    execFileSync('touch', ['-r', copy, times]); // to the nanosecond, as Node's utimes is not
    await writeFile(copy, await readFile(copy));
    execFileSync('touch', ['-m', '-r', times, copy]);
    expect((await stat(copy)).mtimeMs).toBe(third.identity!.mtimeMs);
    const rewritten = await restoreDatabase({ databaseUrl: target, backup: third }).catch((e: unknown) => e);
    expect((rewritten as Error).message).toContain('it changed since it was checked (it was written to)');
    expect(await tableContents(target)).toEqual(before);
  });

  // A service bundled away from the package passes the migrations it copied, as to migrate.
  it("reads the migrations' functions from migrationsDir, and refuses before connecting when that folder is not there", async ({ expect }) => {
    const missing = path.join(workDir, 'no-migrations-here');

    const error = await restoreDatabase({ databaseUrl: await databaseWithOtherData(), backup: await verifyBackupFile(backup.file), migrationsDir: missing }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(new RegExp(`^refusing to restore .*: the migrations folder ${missing} does not exist .*; the database was not touched$`));
  });

  // Opened as a file would be, a FIFO with no writer held the restore for ever, Ctrl-C or not.
  it('refuses at once a backup that is now a FIFO in place of the file checked', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const copy = await backupCopy('fifo-backup-');
    const verified = await verifyBackupFile(copy, unchecked);
    await rm(copy);
    execFileSync('mkfifo', [copy]);

    const error = await restoreDatabase({ databaseUrl: target, backup: verified }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe(`refusing to restore ${copy}: it is no longer a regular file; the database was not touched`);
  });

  // pg_restore writes an archive's entries as they are: one rewritten to `\connect` another
  // database (same length, so the archive stays readable) must be refused before anything runs.
  it('refuses at check time an archive whose SQL connects to another database', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const bytes = await readFile(backup.file);
    const entry = Buffer.from("COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement and index searching based on trigrams';\n");
    const at = bytes.indexOf(entry);
    expect(at).toBeGreaterThan(0);
    const connect = Buffer.from('\\connect postgres');
    Buffer.concat([connect, Buffer.alloc(entry.length - connect.length - 1, ' '), Buffer.from('\n')]).copy(bytes, at);
    const crafted = path.join(workDir, 'connects-elsewhere.dump');
    await writeFile(crafted, bytes);

    const result = await runCli('db-restore', [crafted, '--yes', '--without-checksum'], { DATABASE_URL: target });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`refusing to restore connects-elsewhere\\.dump: it holds what a restore refuses: line \\d+ of the backup's SQL: \\\\connect to another database than '${new URL(target).pathname.slice(1)}' is not allowed; the database was not touched`),
    );
    expect(await tableContents(target)).toEqual(before);
  });

  it('refuses a damaged file without a checksum that pg_restore cannot read whole', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const truncated = path.join(workDir, 'truncated.dump');
    await copyFile(backup.file, truncated);
    await truncate(truncated, Math.floor(backup.bytes * 0.6));

    const result = await runCli('db-restore', [truncated, '--yes', '--without-checksum'], { DATABASE_URL: target });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('it is not a readable backup: pg_restore 15');
    expect(result.stderr).toMatch(/pg_restore: error: /);
    expect(await tableContents(target)).toEqual(before);
  });

  it('rolls everything back when a statement fails halfway, leaving the old data as it was', async ({ expect }) => {
    // A CHECK that reads another table, whose rows load after its own: pg_restore loads
    // table by table (users first, zzz_allowed last), so the rows of zz_checked fail it.
    const source = server.urlOf(await server.createMigratedDatabase());
    const allowed = 'CREATE FUNCTION public.allowed(x int) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM public.zzz_allowed WHERE v = x) $$;\n';
    await execute(
      source,
      `CREATE TABLE public.zzz_allowed (v int); INSERT INTO public.zzz_allowed VALUES (1);
       ${allowed}CREATE TABLE public.zz_checked (x int CHECK (public.allowed(x))); INSERT INTO public.zz_checked VALUES (1)`,
    );
    const halfway = await backupDatabase({ databaseUrl: source, backupDir: path.join(workDir, 'halfway'), environment: 'test', keep: 1 });
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const result = await runCli('db-restore', [halfway.file, '--yes', '--migrations-dir', await migrationsDefining(allowed, workDir)], { DATABASE_URL: target });

    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toContain('restore failed and was rolled back; the database was not changed');
    expect(result.stderr).toMatch(/ERROR: new row for relation "zz_checked" violates check constraint "zz_checked_x_check" \(SQLSTATE 23514\) at line \d+ of the backup's SQL/);
    expect(result.stderr).toMatch(/restoring table public\.users/);
    expect(await tableContents(target)).toEqual(before);
    await execute(target, 'SELECT * FROM later_feature');
  });

  // A pg_restore that writes part of the backup's SQL and then nothing (stopped, or stuck
  // reading the archive from a hung disk), its output pipe left open.
  async function stuckPgRestore(): Promise<PgTool> {
    const real = (await verifyBackupFile(backup.file)).pgRestore!;
    const sql = path.join(workDir, `part-of-the-backup-${Date.now()}.sql`);
    execFileSync(real.command[0]!, ['--file', sql, '--no-owner', backup.file]);
    return { ...real, command: ['sh', '-c', 'head -c 4000 "$0"; exec sleep 600', sql] };
  }

  it("a pg_restore that stops writing fails the check of the backup after stallTimeoutMs, rather than hang it", async ({ expect }) => {
    const error = await verifyArchive(await stuckPgRestore(), backup.file, { stallTimeoutMs: 1_000 }).catch((e: unknown) => e);

    expect((error as Error).message).toMatch(/^pg_restore 15\.\d+ wrote nothing for 1 s while reading the archive \(stopped, or stuck reading it\); it was stopped$/);
  });

  // The public way to the same check: verifyBackupFile finds pg_restore itself (here PG_RESTORE,
  // a pg_restore that lists the archive and then stops writing while it reads it whole).
  it('verifyBackupFile passes its stallTimeoutMs on to the check of the archive', async ({ expect }) => {
    const real = (await verifyBackupFile(backup.file)).pgRestore!;
    const stuck = path.join(workDir, `stuck-pg-restore-${Date.now()}`);
    await writeFile(
      stuck,
      `#!/bin/sh\ncase "$*" in *--file=-*) exec sleep 600 ;; esac\nexec ${real.command.map(shellQuote).join(' ')} "$@"\n`,
      { mode: 0o755 },
    );

    const error = await verifyBackupFile(backup.file, { toolSearch: { env: { ...process.env, PG_RESTORE: stuck } }, stallTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );

    expect((error as Error).message).toMatch(
      /: it is not a readable backup: pg_restore 15\.\d+ wrote nothing for 1 s while reading the archive \(stopped, or stuck reading it\); it was stopped; the database was not touched$/,
    );
  });

  it('a pg_restore that stops writing mid-restore is stopped after stallTimeoutMs, and the restore rolled back', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const verified = { ...(await verifyBackupFile(backup.file)), pgRestore: await stuckPgRestore() };

    const error = await restoreDatabase({ databaseUrl: target, backup: verified, stallTimeoutMs: 1_000 }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(
      /^reading the backup failed: pg_restore 15\.\d+ wrote nothing for 1 s while the restore waited for it \(stopped, or stuck reading the backup\); it was stopped\nthe restore was rolled back; the database was not changed$/,
    );
    expect(await tableContents(target)).toEqual(before);
  });

  // The next eleven wait (for a deadline, a stall's bound, a slow CHECK, a lock: 2-22 s each) at
  // little CPU, each on a database (and a proxy) of its own: side by side (it.concurrent,
  // consecutive), the file takes as long as the longest of them rather than their sum. (An
  // advisory lock, the migration lock among them, is one database's.)

  // Its COMMIT sent, and never answered (a backend stuck while its host acknowledges; here a
  // proxy that holds the COMMIT back): whether it committed is the server's to tell.
  it.concurrent('a COMMIT that goes unanswered fails the restore at a deadline, saying it may or may not be committed', async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    const stalled = proxy.stallOn(commitMessage);

    const error = await restoreDatabase({ databaseUrl: throughProxy, backup: await verifyBackupFile(backup.file) }).catch(
      (e: unknown) => e,
    );

    await stalled;
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(/no answer to COMMIT within 10000 ms; the connection was closed: the restore may or may not be committed; look at the tables/);
  });

  // A backend that stops taking a table's rows (frozen, while its host still acknowledges; here
  // a proxy that holds back everything from the first row on) neither reads them nor answers
  // their end, nor makes progress with them, and TCP never tells: each is given
  // serverStallTimeoutMs, then the connection is closed.
  it.concurrent("a table's rows whose end goes unanswered fail the restore after serverStallTimeoutMs, rolled back", async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    const stalled = proxy.stallOn(/^d/); // CopyData: the first table's rows

    const error = await restoreDatabase({ databaseUrl: throughProxy, backup: await verifyBackupFile(backup.file), serverStallTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );

    await stalled;
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(
      /^restore failed and was rolled back; the database was not changed:\nThe database connection failed \(deadline: the server did not answer the end of table public\.\w+'s rows for 1 s at a time, and made no progress with them that pg_stat_progress_copy shows; the connection was closed\).* at line \d+ of the backup's SQL$/,
    );
    await rolledBackOnceClosed(proxy, target, before);
  });

  // Any other statement may run long (an index, the deferred checks, a drop of many objects),
  // and gets no fixed deadline; its answer that never came (here a proxy that holds the
  // statement back) was waited for without end. Each serverStallTimeoutMs unanswered, the
  // session is looked at: running no statement, its connection is closed.
  it.concurrent.for([
    { step: "a backup's statement", pattern: /CREATE TABLE public\.users/, said: /no answer to CREATE TABLE for [\d.]+ s \(looked at every 1 s\), .*; the operation may be retried at line \d+ of the backup's SQL$/ },
    { step: 'a statement that empties the public schema', pattern: /COMMENT ON SCHEMA public/, said: /no answer to COMMENT ON for [\d.]+ s \(looked at every 1 s\), .* while emptying the public schema$/ },
    { step: 'the deferred checks', pattern: /SET CONSTRAINTS ALL IMMEDIATE/, said: /no answer to SET CONSTRAINTS for [\d.]+ s \(looked at every 1 s\), .*\); the operation may be retried$/ },
  ])('$step, unanswered while the session runs nothing, fails the restore after serverStallTimeoutMs, rolled back', async ({ pattern, said }, { expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    const stalled = proxy.stallOn(pattern);

    const error = await restoreDatabase({ databaseUrl: throughProxy, backup: await verifyBackupFile(backup.file), serverStallTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );

    await stalled;
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('and its session runs no statement (pg_stat_activity: idle in transaction); the connection was closed');
    expect((error as Error).message).toMatch(/^restore failed and was rolled back; the database was not changed:\n/);
    expect((error as Error).message).toMatch(said);
    await rolledBackOnceClosed(proxy, target, before);
  });

  it.concurrent("a table's rows that the server stops reading fail the restore after serverStallTimeoutMs, rolled back", async ({ expect, onTestFinished }) => {
    // More rows than the sockets on the way hold, so that the restore waits for the server to read:
    // 16 MB, where a socket that is not read from stops growing its buffer at some hundreds of kB.
    const source = await server.createMigratedDatabase();
    await execute(server.ownerUrlOf(source), "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 32) AS filler FROM generate_series(1, 16000) AS g");
    const bulk = await backupDatabase({ databaseUrl: server.urlOf(source), backupDir: path.join(workDir, 'bulk'), environment: 'test', keep: 1 });
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    void proxy.stallOn(/c4ca4238a0b923820dcc509a6f75849b/); // the rows of bulk, from its first one (md5('1')) on

    const error = await restoreDatabase({ databaseUrl: throughProxy, backup: await verifyBackupFile(bulk.file), serverStallTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(
      /^restore failed and was rolled back; the database was not changed:\nThe database connection failed \(deadline: the server read none of table public\.bulk's rows sent to it for 1 s at a time, and made no progress with them that pg_stat_progress_copy shows; the connection was closed\).* at line \d+ of the backup's SQL$/,
    );
    await rolledBackOnceClosed(proxy, target, before);
  });

  // A server at work is not a stalled one: rows whose CHECK takes its time all sit in the
  // sockets once sent, so the end of the rows waits seconds for an answer while the backend's
  // progress moves on, row by row: here 2.5 s a row, under a bound of 3 s (looks 2 s apart
  // could both fall within one row, and see the counts stand still).
  let slowCheckBackup: Promise<{ backup: BackupResult; migrationsDir: string }> | undefined;
  // A backup of three rows whose CHECK takes 2.5 s each in a restore (made once, for the tests
  // that need a server at work for longer than the bound), and the migrations of the service
  // whose function that is, with which a restore accepts it.
  function slowlyCheckedRows(): Promise<{ backup: BackupResult; migrationsDir: string }> {
    slowCheckBackup ??= (async () => {
      // Slow wherever kw.fast is not set: in the restore, not while the rows are made here.
      const slowCheck =
        "CREATE FUNCTION slow_check(n int) RETURNS boolean LANGUAGE sql AS $$ SELECT pg_catalog.pg_sleep(CASE WHEN pg_catalog.current_setting('kw.fast', true) = 'on' THEN 0 ELSE 2.5 END) IS NOT NULL AND n > 0 $$;\n";
      const source = await server.createMigratedDatabase();
      await execute(
        server.ownerUrlOf(source),
        `${slowCheck}CREATE TABLE checked_slowly (n int CHECK (slow_check(n))); SET kw.fast = 'on'; INSERT INTO checked_slowly SELECT generate_series(1, 3)`,
      );
      const backup = await backupDatabase({ databaseUrl: server.urlOf(source), backupDir: path.join(workDir, 'slow-check'), environment: 'test', keep: 1 });
      return { backup, migrationsDir: await migrationsDefining(slowCheck, workDir) };
    })();
    return slowCheckBackup;
  }
  const checkedSlowlyCount = async (target: string) =>
    (await withClient(target, (client) => client.query<{ n: number }>('SELECT count(*)::int AS n FROM checked_slowly'))).rows;

  it.concurrent("restores a table whose rows the server takes longer than serverStallTimeoutMs to check, once sent", async ({ expect }) => {
    const slow = await slowlyCheckedRows();
    const target = await databaseWithOtherData();

    await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(slow.backup.file), migrationsDir: slow.migrationsDir, serverStallTimeoutMs: 3_000 });

    expect(await checkedSlowlyCount(target)).toEqual([{ n: 3 }]);
  });

  // The look at the COPY's progress needs a connection of its own, which a server (or pooler)
  // busy with the services queued behind the restore may not give at once: one look that
  // fails tells nothing either way, and the server is given one more bound (here the second
  // look, 6 s in, sees it at work, and the rows' end is answered at 7.5 s).
  // The slowly checked rows restored through a proxy that refuses the next `looks` connections
  // from the COPY on, when the restore opens none but its looks at the COPY's progress.
  async function restoreRefusingLooks(target: string, looks: number, onTestFinished: (cleanup: () => Promise<void>) => void) {
    const slow = await slowlyCheckedRows();
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    const outcome = restoreDatabase({
      databaseUrl: throughProxy,
      backup: await verifyBackupFile(slow.backup.file),
      migrationsDir: slow.migrationsDir,
      serverStallTimeoutMs: 3_000,
      log: (line) => line.startsWith('restoring table public.checked_slowly') && proxy.refuse(looks),
    });
    return { proxy, outcome };
  }

  it.concurrent("one look at the COPY's progress that cannot connect gives the server another serverStallTimeoutMs", async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();

    await (await restoreRefusingLooks(target, 1, onTestFinished)).outcome;

    expect(await checkedSlowlyCount(target)).toEqual([{ n: 3 }]);
  });

  it.concurrent("two looks in a row that cannot connect give the server up, saying so, and the restore is rolled back", async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const { proxy, outcome } = await restoreRefusingLooks(target, 2, onTestFinished);
    const error = await outcome.catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(
      /^restore failed and was rolled back; the database was not changed:\nThe database connection failed \(deadline: the server did not answer the end of table public\.checked_slowly's rows for 3 s at a time, and its progress with them could not be looked at in pg_stat_progress_copy, twice in a row \(the last: its connection terminated\); the connection was closed\)/,
    );
    await rolledBackOnceClosed(proxy, target, before);
  });

  // The backup's code may turn the server's check of the connection off within its statement
  // (set_config in a CHECK's function) and keep it running: once the restore gave the server up
  // and closed the connection, the session went on, holding every table of public, while the
  // restore said it was rolled back. It is ended from a connection of its own, as for Ctrl-C.
  it.concurrent("a session the restore gave up on is ended, not left holding the tables behind a closed connection", async ({ expect }) => {
    const stuckCheck =
      'CREATE FUNCTION stuck_check(n int) RETURNS boolean LANGUAGE sql AS $$ SELECT ' +
      "pg_catalog.set_config('client_connection_check_interval', '0', false) IS NOT NULL AND " +
      "pg_catalog.pg_sleep(CASE WHEN pg_catalog.current_setting('kw.fast', true) = 'on' THEN 0 ELSE 60 END) IS NOT NULL AND n > 0 $$;\n";
    const source = await server.createMigratedDatabase();
    await execute(server.ownerUrlOf(source), `${stuckCheck}CREATE TABLE checked_for_ever (n int CHECK (stuck_check(n))); SET kw.fast = 'on'; INSERT INTO checked_for_ever VALUES (1)`);
    const stuck = await backupDatabase({ databaseUrl: server.urlOf(source), backupDir: path.join(workDir, 'stuck-check'), environment: 'test', keep: 1 });
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const error = await restoreDatabase({
      databaseUrl: target,
      backup: await verifyBackupFile(stuck.file),
      migrationsDir: await migrationsDefining(stuckCheck, workDir),
      serverStallTimeoutMs: 1_000,
    }).catch((e: unknown) => e);

    expect((error as Error).message).toMatch(/^restore failed and was rolled back; the database was not changed:\n.*made no progress with them/);
    // At once, not after the backup's statement ends by itself (60 s): the session is gone.
    const sessions = await withClient(target, (client) =>
      client.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kennwilliamson-restore'"),
    );
    expect(sessions.rows).toEqual([{ n: 0 }]);
    const readable = await withClient(target, async (client) => {
      await client.query("SET lock_timeout = '1s'");
      return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n;
    });
    expect(readable).toBe(before.users!.rows);
  });

  // Emptying public drops with CASCADE: another schema's view over users, a foreign key to it, a
  // column of its row type (and the values in it) went with it, unsaid and for good, the restore
  // reporting success. What depends on public from outside now stops the restore, named.
  it.concurrent('refuses to empty public while objects of other schemas depend on it, naming them, and changes nothing', async ({ expect }) => {
    const name = await server.cloneDatabase(otherData);
    const target = server.ownerUrlOf(name);
    await execute(
      server.urlOf(name),
      `CREATE SCHEMA reporting;
       CREATE VIEW reporting.active_users AS SELECT id FROM public.users;
       CREATE MATERIALIZED VIEW reporting.user_count AS SELECT count(*) AS n FROM public.users;
       CREATE TABLE reporting.visits (user_id uuid REFERENCES public.users (id), at timestamptz);
       CREATE TABLE reporting.snapshots (snap public.users, taken timestamptz DEFAULT now());
       INSERT INTO reporting.snapshots (snap) SELECT u FROM public.users u LIMIT 1;
       CREATE RULE touch_user AS ON INSERT TO reporting.visits DO ALSO UPDATE public.users SET display_name = display_name WHERE id = NEW.user_id;`,
    );
    await execute(target, 'CREATE SCHEMA owner_side; CREATE VIEW owner_side.names AS SELECT display_name FROM public.users');
    const before = await tableContents(target);

    const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe(
      'restore failed and was rolled back; the database was not changed:\n' +
        'objects outside the public schema depend on what is in it, and emptying public would drop them too: ' +
        'column snap of table reporting.snapshots (on type public.users); ' +
        'constraint visits_user_id_fkey on table reporting.visits (on column id of table public.users); ' +
        'materialized view reporting.user_count (on table public.users); ' +
        'rule touch_user on table reporting.visits (on column display_name of table public.users); ' +
        'view owner_side.names (on column display_name of table public.users) and 1 more; ' +
        'drop them, or make them not depend on public, then restore again (and make them again after)',
    );
    expect(await tableContents(target)).toEqual(before);
    const kept = await withClient(server.urlOf(name), async (client) => ({
      snapshots: (await client.query('SELECT count(snap)::int AS n FROM reporting.snapshots')).rows,
      views: (await client.query("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('active_users', 'user_count', 'names')")).rows,
      foreignKeys: (await client.query("SELECT count(*)::int AS n FROM pg_constraint WHERE conname = 'visits_user_id_fkey'")).rows,
    }));
    expect(kept).toEqual({ snapshots: [{ n: 1 }], views: [{ n: 3 }], foreignKeys: [{ n: 1 }] });
  });

  // Not what goes with public's own objects: the triggers of a foreign key of public's on the
  // table of another schema it references, and the casts of an extension in public (citext) were
  // taken for other schemas' objects, and refused, with a remedy nobody could apply.
  it.concurrent("restores over a foreign key of public's to another schema's table, and an extension in public with casts", async ({ expect }) => {
    const target = await databaseWithOtherData();
    await execute(
      target,
      `CREATE SCHEMA geo; CREATE TABLE geo.countries (code text PRIMARY KEY); INSERT INTO geo.countries VALUES ('NZ');
       CREATE TABLE public.addresses (id int, country text REFERENCES geo.countries (code));
       CREATE EXTENSION citext;`,
    );

    const restored = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file) });

    expect(restored.tables).toBe(backup.tables);
    const left = await withClient(target, async (client) => ({
      countries: (await client.query('SELECT code FROM geo.countries')).rows,
      addresses: (await client.query("SELECT to_regclass('public.addresses') IS NULL AS gone")).rows,
    }));
    expect(left).toEqual({ countries: [{ code: 'NZ' }], addresses: [{ gone: true }] });
  });

  // Between two files of a migration run no table is held: a restore came in there, and the
  // run's next file failed on the restored schema, with the one before it recorded on top.
  it.concurrent('waits for a migration run (its lock), naming it, and gives up after lockTimeoutMs, leaving the database as it was', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const run = await holdAdvisoryLock(target, migrationLockKey, 'kennwilliamson-migrate');
    try {
      const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file), lockTimeoutMs: namedWithinMs }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toMatch(
        new RegExp(`^restore failed and was rolled back; the database was not changed:\\ngave up waiting for the migration lock and the locks on the tables of public after \\d+ attempt\\(s\\) over \\d+ ms, blocked by pid ${run.pid} \\(application 'kennwilliamson-migrate'`),
      );
    } finally {
      await run.release();
    }
    expect(await tableContents(target)).toEqual(before);
  });

  // A backup older than the release: the restore said only "Restored", and the services' code
  // then failed on the older schema (a CHECK without the value it writes).
  // A backup's record is untrusted input too: restored as it was, a row of a migration the
  // release does not have, or of one applied from other SQL, made the release step refuse the
  // database afterwards (MIGRATION_MISSING, MIGRATION_CHECKSUM_MISMATCH), and a backup with no
  // record (or an empty one) was said to need every migration, which then failed on its first CREATE.
  it.concurrent.for([
    {
      tampering: "a row of a migration this release does not have",
      sql: "INSERT INTO schema_migrations VALUES ('29991231000000_future_migration', repeat('a', 64), now(), 1)",
      refusal: () =>
        `the backup's migrations record names 1 migration(s) that this release does not have (29991231000000_future_migration): ` +
        "restore it with the release that made it (its package holds those migrations), with the folder that holds them (--migrations-dir, a service's own), " +
        'or a backup of this release',
    },
    // Read whole, 5,000 rows with names of 200 kB took 1.1 GB and printed a 1 MB refusal: it is
    // read in bounded memory, and its names said cut short.
    {
      tampering: 'many rows with long names',
      sql: "INSERT INTO schema_migrations SELECT '3' || lpad(i::text, 4, '0') || repeat('x', 20000), repeat('a', 64), now(), 1 FROM generate_series(1, 50) i",
      refusal: () =>
        `the backup's migrations record names 50 migration(s) that this release does not have (${[1, 2, 3, 4, 5].map((i) => `3${String(i).padStart(4, '0')}${'x'.repeat(195)}`).join(', ')} and 45 more): ` +
        "restore it with the release that made it (its package holds those migrations), with the folder that holds them (--migrations-dir, a service's own), " +
        'or a backup of this release',
    },
    {
      tampering: 'a checksum other than its file\'s',
      sql: "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE name = (SELECT min(name) FROM schema_migrations)",
      refusal: (first: string) =>
        `the backup's migrations record says 1 migration(s) were applied from other SQL than this release's files (${first}: the checksums differ): ` +
        'its tables may not be what these migrations make; restore a backup made with this release',
    },
    {
      tampering: 'no record at all',
      sql: 'DROP TABLE schema_migrations',
      refusal: () =>
        'the backup has tables but no migrations record ("public"."schema_migrations"): which migrations made its tables cannot be told, ' +
        "and the release step would apply every one again over them; restore a backup of this project's database (kennwilliamson-db backup)",
    },
    {
      tampering: 'an empty record',
      sql: 'DELETE FROM schema_migrations',
      refusal: () =>
        'the backup has tables but an empty migrations record ("public"."schema_migrations"): which migrations made its tables cannot be told, ' +
        "and the release step would apply every one again over them; restore a backup of this project's database (kennwilliamson-db backup)",
    },
  ])("refuses a backup whose migrations record has $tampering, before COMMIT, changing nothing", async ({ sql, refusal }, { expect }) => {
    const tampered = await server.cloneDatabase(otherData);
    const first = ((await migrationsRecord(server.urlOf(tampered))) as Array<{ name: string }>)[0]!.name;
    await execute(server.urlOf(tampered), sql);
    const made = await backupDatabase({ databaseUrl: server.urlOf(tampered), backupDir: await mkdtemp(path.join(workDir, 'tampered-')), environment: 'test', keep: 1 });
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(made.file) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe(`restore failed and was rolled back; the database was not changed:\n${refusal(first)}`);
    expect(await tableContents(target)).toEqual(before);
  });

  it.concurrent("names the release's migrations that the restored backup lacks, to apply before the services use it", async ({ expect }) => {
    const target = await databaseWithOtherData();
    const lines: string[] = [];
    const newer = await migrationsDefining('CREATE FUNCTION later_helper() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;\n', workDir);

    const older = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file), migrationsDir: newer, log: (line) => lines.push(line) });
    const current = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(backup.file) });

    expect(older.pendingMigrations).toEqual(['29990101000000_service_functions']);
    expect(lines).toContain(
      'the backup is older than these migrations: 1 of them not applied (29990101000000_service_functions): apply them ' +
        '(the release step: kennwilliamson-db migrate, or setup) before the services use the database, whose code expects them',
    );
    expect(current.pendingMigrations).toEqual([]);
  });

  // Every connection of the restore through a proxy that stalls while it waits: the answer to
  // its lock wait never comes, and no TCP timer tells (the proxy's kernel acknowledges, and
  // answers keepalive), as with a hung pooler. The monitor's look at the blockers gets no
  // answer within its deadline either (or LOCK TABLE none within its own), and that ends it.
  it.concurrent(
    'ends by itself at its deadline, rather than waiting for ever, when its path to the server stalls',
    { timeout: 60_000 },
    async ({ expect }) => {
      await restoreBehindAReader(
        expect,
        async ({ outcome, sessions, proxy }) => {
          // From its second attempt on, the monitor watches the restore's wait. Stalled once it
          // has looked: stalled as it logged in, its own set-up (search_path) went unanswered,
          // and that deadline, not the look's, ended the restore (once in a CI run).
          await eventually(async () => {
            const now = await sessions();
            return now.some((session) => session.application === 'kennwilliamson-restore-monitor' && session.looked) && now.some((session) => session.waiting);
          }, "the restore waits for the reader's table, watched");
          proxy!.stall();

          const error = await outcome;
          expect(error).toBeInstanceOf(RestoreError);
          expect((error as Error).message).toMatch(/no answer to (a look at who blocks the statement|LOCK TABLE) within/);
        },
        { throughProxy: true },
      );
    },
  );

  // Once COMMIT is on its way the outcome is the server's: Ctrl-C then must not report the
  // restore as not committed (it may well be), but wait for COMMIT's answer (here it never
  // comes, and its deadline says so).
  it.concurrent('Ctrl-C while COMMIT is on its way waits for its answer rather than report the restore not committed', async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const { proxy, url: throughProxy } = await stallingProxyFor(target, onTestFinished);
    const controller = new AbortController();
    void proxy.stallOn(commitMessage).then(() => controller.abort());

    const error = await restoreDatabase({
      databaseUrl: throughProxy,
      backup: await verifyBackupFile(backup.file),
      signal: controller.signal,
    }).catch((e: unknown) => e);

    expect(controller.signal.aborted).toBe(true);
    expect((error as Error).message).toMatch(/no answer to COMMIT within 10000 ms; the connection was closed: the restore may or may not be committed/);
  });

  it('an interrupted restore (Ctrl-C) is rolled back', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const controller = new AbortController();

    const error = await restoreDatabase({
      databaseUrl: target,
      backup: await verifyBackupFile(backup.file),
      signal: controller.signal,
      log: (line) => line.startsWith('restoring table public.refresh_tokens') && controller.abort(),
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe('restore interrupted before its COMMIT; the database was not changed');
    expect(await tableContents(target)).toEqual(before);
  });

  // Real packet loss (iptables DROP, both directions) on the restore's connection, while its
  // transaction holds what it has dropped so far and waits for a table another session reads.
  // A test that times out never reaches its `finally`: its rules go in afterEach.
  afterEach(() => {
    if (packetsDroppable) healAllPartitions();
  });
  // A restore into a database whose table another session reads, with a lock wait far longer
  // than the test, directly or through a proxy that can be made to stall; `during` gets its
  // outcome, its sessions as the server lists them (its own and its monitor's), the server's port
  // and the proxy. Afterwards the database is as it was.
  async function restoreBehindAReader(
    expect: ExpectStatic,
    during: (restore: {
      outcome: Promise<unknown>;
      sessions: () => Promise<RestoreSessionRow[]>;
      serverPort: number;
      proxy: StallingProxy | undefined;
    }) => Promise<void>,
    options: { throughProxy?: boolean } = {},
  ): Promise<void> {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const [reader, observer] = await Promise.all([holdTableLock(target, 'later_feature', 'ACCESS SHARE'), openClient(target)]);
    const serverPort = Number(new URL(target).port);
    const proxy = options.throughProxy ? await startStallingProxy(serverPort) : undefined;
    const databaseUrl = proxy ? proxy.through(target) : target;
    try {
      const outcome = restoreDatabase({ databaseUrl, backup: await verifyBackupFile(backup.file), lockTimeoutMs: 120_000 }).catch(
        (e: unknown) => e,
      );
      const sessions = async () =>
        (
          await observer.query<RestoreSessionRow>(
            "SELECT application_name AS application, client_port AS port, wait_event_type = 'Lock' AS waiting, query LIKE '%pg_blocking_pids%' AS looked FROM pg_stat_activity WHERE application_name LIKE 'kennwilliamson-restore%' AND datname = current_database()",
          )
        ).rows;
      await during({ outcome, sessions, serverPort, proxy });
    } finally {
      await proxy?.close();
      healAllPartitions();
      await Promise.all([reader.release(), observer.end()]);
    }
    expect(await tableContents(target)).toEqual(before);
  }
  interface RestoreSessionRow {
    application: string;
    port: number;
    waiting: boolean;
    /** Its last statement was a look at who blocks the restore (so its set-up was answered). */
    looked: boolean;
  }

  it.skipIf(!packetsDroppable)(
    "is ended by the server within seconds when the restoring host goes silent, so its locks do not outlive it, and the database is as it was",
    { timeout: 60_000 },
    async ({ expect }) => {
      await restoreBehindAReader(expect, async ({ outcome, sessions, serverPort }) => {
        const restoring = async () => (await sessions()).filter((session) => session.application === 'kennwilliamson-restore');
        await eventually(async () => (await restoring()).some((session) => session.waiting), "the restore waits for the reader's table");
        const session = (await restoring()).find((candidate) => candidate.waiting);
        const partition = silenceConnections(serverPort, [session!.port]);
        // With the system's keepalive (two hours) it would wait out its 120 s lock_timeout, holding
        // what it had dropped; its own keepalive ends it in about 10 s.
        await eventually(async () => (await restoring()).length === 0, "the server ends the restore's session", { timeoutMs: 25_000 });
        partition.heal();
        expect(await outcome).toBeInstanceOf(RestoreError);
      });
    },
  );

  it('asks on a terminal, naming database, host and the backup by its absolute path, and restores only after "yes"', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);
    const database = new URL(target).pathname.slice(1);
    const prompt = `This REPLACES ALL DATA in database '${database}' on 127.0.0.1:${new URL(target).port} with ${path.resolve(backup.file)}.`;

    const declined = await runCliInTerminal('db-restore', [backup.file], { DATABASE_URL: target }, 'no\n');
    expect(declined.code).toBe(1);
    expect(declined.stdout).toContain(prompt);
    expect(declined.stdout).toContain('not confirmed; the database was not touched');
    expect(await tableContents(target)).toEqual(before);

    const confirmed = await runCliInTerminal('db-restore', [backup.file], { DATABASE_URL: target }, 'yes\n');
    expect(confirmed.code, confirmed.stdout).toBe(0);
    expect(await tableContents(target)).toEqual(sourceContents);
  });

  // From the moment it holds the tables until its COMMIT, the services' calls queue behind it
  // and fail: an operator-path audit saw 21 s without a call served, the question naming no
  // one, where a reset's names the sessions it ends.
  it("names the services' sessions connected to the database, which wait for it: in the question, and with --yes", async ({ expect, onTestFinished }) => {
    const target = await databaseWithOtherData();
    const role = decodeURIComponent(new URL(target).username);
    const services = await Promise.all([openClient(target, 'kw-service'), openClient(target, 'kw-service')]);
    onTestFinished(() => Promise.all(services.map((client) => client.end().catch(() => undefined))).then(() => undefined));
    const line = `It holds every table of public while it loads: the 2 session(s) connected to it now (${role} (kw-service) ×2) wait for it, and their calls fail after their lock_timeout. Stop the services' traffic first.`;

    const declined = await runCliInTerminal('db-restore', [backup.file], { DATABASE_URL: target }, 'no\n', "Type 'yes' to restore");
    const told = await runCli('db-restore', [backup.file, '--yes'], { DATABASE_URL: target });

    expect(declined.stdout).toContain(`${line}\r\nType 'yes' to restore`);
    expect(declined.stdout).toContain('not confirmed; the database was not touched');
    expect(told.code, told.stderr).toBe(0);
    expect(told.stderr).toContain(line);
  });

  // The restore handles SIGTERM and SIGHUP itself (to end its session and roll back): at the
  // question, the signal was taken and the question went on waiting for ever.
  it.for(['SIGTERM', 'SIGHUP'] as const)('%s at the question ends the restore, the database not touched', async (signal, { expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const result = await runCliInTerminal('db-restore', [backup.file], { DATABASE_URL: target }, { signal }, "Type 'yes' to restore");

    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`${signal}: stopping and cleaning up`);
    expect(result.stdout).toContain('not confirmed; the database was not touched');
    expect(await tableContents(target)).toEqual(before);
  });

  it('refuses without --yes when there is no terminal to confirm on', async ({ expect }) => {
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const result = await runCli('db-restore', [backup.file], { DATABASE_URL: target });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refusing to restore into 'kw_[0-9a-f]+' on 127\.0\.0\.1 without confirmation: .*pass --yes/);
    expect(await tableContents(target)).toEqual(before);
  });

  it('refuses a non-local host without --force, without connecting and without printing the password', async ({ expect }) => {
    const result = await runCli('db-restore', [backup.file, '--yes'], {
      DATABASE_URL: 'postgresql://app:hunter2-secret@db.example.com:5432/prod',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to restore into a database on the non-local host 'db.example.com'; pass --force");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  it('restores a gzip-compressed plain SQL dump, as older deployments made them', async ({ expect }) => {
    const sql = await new Promise<Buffer>((resolve, reject) => {
      const url = new URL(sourceUrl);
      const child = spawn(
        path.join(debianPostgresBinDir, 'pg_dump'),
        ['--format=plain', '--no-owner', '--host', url.hostname, '--port', url.port, '--username', 'postgres', '--dbname', url.pathname.slice(1)],
        { env: { ...process.env, PGPASSWORD: server.password }, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const chunks: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
      child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`pg_dump exited ${code}`))));
    });
    const file = path.join(workDir, 'legacy.sql.gz');
    await writeFile(file, gzipSync(sql));
    const target = await databaseWithOtherData();

    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`legacy.sql.gz: ${formatBytes((await stat(file)).size)} (${formatBytes(sql.length)} of SQL to restore), gzip-compressed SQL, no .sha256 beside it`);
    expect(await tableContents(target)).toEqual(sourceContents);
  });

  it('refuses a damaged .sql.gz before touching the database', async ({ expect }) => {
    const file = path.join(workDir, 'damaged.sql.gz');
    const compressed = gzipSync(Buffer.from('CREATE TABLE public.should_not_exist (id integer);\n'.repeat(1000)));
    await writeFile(file, compressed.subarray(0, compressed.length - 12));
    const target = await databaseWithOtherData();

    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('it is not a whole gzip file: unexpected end of file');
    await expect(execute(target, 'SELECT * FROM should_not_exist')).rejects.toThrow('does not exist');
  });

  // Verification catches a damaged file first; this is the second line of defence, for a
  // file that changes or a pg_restore that fails after the checks: no COMMIT is ever sent.
  it('rolls back a backup whose stream breaks off after statements already ran', async ({ expect }) => {
    const file = path.join(workDir, 'breaks-off.sql.gz');
    const statements = 'CREATE TABLE public.should_not_exist (id integer);\nCOPY public.should_not_exist (id) FROM stdin;\n1\n\\.\n';
    const compressed = gzipSync(Buffer.from(statements + '-- filler\n'.repeat(50_000)));
    await writeFile(file, compressed.subarray(0, compressed.length - 12));
    const target = await databaseWithOtherData();
    const before = await tableContents(target);

    const error = await restoreDatabase({
      databaseUrl: target,
      backup: { file, bytes: compressed.length - 12, format: 'sql-gzip', checksum: 'absent' },
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('reading the backup failed: unexpected end of file');
    expect((error as Error).message).toContain('the restore was rolled back; the database was not changed');
    expect(await tableContents(target)).toEqual(before);
    await execute(target, 'SELECT * FROM later_feature');
    await expect(execute(target, 'SELECT * FROM should_not_exist')).rejects.toThrow('does not exist');
  });
});
