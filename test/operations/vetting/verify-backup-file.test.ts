import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { constants, openSync, closeSync } from 'node:fs';
import { copyFile, link, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RestoreError } from '../../../src/errors.js';
import { backupDatabase } from '../../../src/operations/backup/backup.js';
import { sha256OfFile, writeChecksumFile } from '../../../src/operations/files/checksum-file.js';
import { findPgTool } from '../../../src/operations/pg-tools/pg-tools.js';
import { verifyArchive } from '../../../src/operations/vetting/verify-archive.js';
import { verifyBackupFile } from '../../../src/operations/vetting/verify-backup-file.js';
import { verifySqlDump } from '../../../src/operations/vetting/verify-sql-dump.js';
import { debianPostgresPrograms, startDebianPostgres, type DebianPostgres } from '../../support/debian-postgres.js';
import { toolsAvailable } from '../../support/required-tools.js';

const dumpSql = [
  '--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n',
  'CREATE TABLE public.t (i integer);\n\nCOPY public.t (i) FROM stdin;\n1\n2\n\\.\n\n',
  '--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n',
].join('');

// Renames, as fast as it can, a hard link of the valid backup and then one of a FIFO with no
// writer over `target`, as a reviewer's os.replace loop did: each open of the path after the
// first may find either.
function swapForEver(good: string, fifo: string, target: string): ChildProcess {
  const script = `
    const fs = require('node:fs');
    const [good, fifo, target] = process.argv.slice(1);
    const temporary = target + '.swap';
    for (;;) for (const from of [good, fifo]) {
      fs.rmSync(temporary, { force: true });
      fs.linkSync(from, temporary);
      fs.renameSync(temporary, target);
    }`;
  return spawn(process.execPath, ['-e', script, good, fifo, target], { stdio: 'ignore' });
}

describe('verifyBackupFile, with the path swapped between the backup and a FIFO', () => {
  let folder: string;
  let swapper: ChildProcess | undefined;
  const fifos: string[] = [];

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'kw-verify-fifo-'));
  });
  afterEach(async () => {
    if (swapper !== undefined && swapper.exitCode === null) {
      const exited = new Promise((resolve) => swapper!.once('exit', resolve));
      swapper.kill('SIGKILL');
      await exited;
    }
    swapper = undefined;
    // An open left waiting on a FIFO (the defect) holds a thread of the pool for ever: a writer
    // lets it through, so that a failure here does not stall the files after it.
    for (const fifo of fifos.splice(0)) {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader waiting (ENXIO)
      }
    }
  });
  afterAll(async () => {
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  async function swapped(name: string, content: Buffer | string, fromFile?: string): Promise<string> {
    const dir = await mkdtemp(path.join(folder, 'case-'));
    const target = path.join(dir, name);
    const good = path.join(dir, 'good');
    if (fromFile) await copyFile(fromFile, good);
    else await writeFile(good, content);
    await link(good, target);
    await writeChecksumFile(target, await sha256OfFile(good));
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    fifos.push(fifo);
    swapper = swapForEver(good, fifo, target);
    return target;
  }

  // Each time, the backup is verified (every open found the file) or refused as no file (or, by
  // the last look, as changed): never an open waiting on the FIFO, which no signal could end.
  async function verifiedOrRefused(target: string, times: number): Promise<{ verified: number; refused: number }> {
    let verified = 0;
    let refused = 0;
    // Until one refusal too: the swapping process takes a moment to start.
    for (let i = 0; i < times || refused === 0; i++) {
      const outcome = await verifyBackupFile(target).catch((error: unknown) => error);
      if (outcome instanceof Error) {
        expect(outcome).toBeInstanceOf(RestoreError);
        // (Its hard links, made by the swapping, change the inode's change time: "written to".)
        expect(outcome.message).toMatch(/is not a file|it changed while it was checked \((another file is in its place|it was written to)\)/);
        refused++;
      } else verified++;
    }
    return { verified, refused };
  }

  it('never waits on a FIFO put in place of a .sql.gz with a .sha256: it verifies it or refuses at once', { timeout: 8_000 }, async () => {
    const target = await swapped('kw_production_20250101T020000.000Z.sql.gz', gzipSync(dumpSql));

    const { refused } = await verifiedOrRefused(target, 60);

    expect(refused).toBeGreaterThan(0);
  });

  it('says how much SQL a .sql.gz holds, decompressed, beyond its own size', async () => {
    const sql = dumpSql.replace('1\n2\n', '1\n'.repeat(300_000));
    const file = path.join(await mkdtemp(path.join(folder, 'case-')), 'kw_production_20250101T020001.000Z.sql.gz');
    await writeFile(file, gzipSync(sql));

    const verified = await verifyBackupFile(file);

    expect(verified).toMatchObject({ format: 'sql-gzip', sqlBytes: Buffer.byteLength(sql) });
    expect(verified.bytes).toBeLessThan(Buffer.byteLength(sql) / 100);
  });

  async function fifoNamed(name: string): Promise<string> {
    const fifo = path.join(await mkdtemp(path.join(folder, 'case-')), name);
    execFileSync('mkfifo', [fifo]);
    fifos.push(fifo);
    return fifo;
  }

  it("refuses at once a FIFO handed to sha256OfFile (the backup's checksum), rather than wait on it", { timeout: 5_000 }, async () => {
    const fifo = await fifoNamed('x.dump');

    await expect(sha256OfFile(fifo)).rejects.toThrow(`${fifo} is not a file`);
  });

  it('refuses at once a FIFO handed to verifySqlDump (the .sql.gz read), rather than wait on it', { timeout: 5_000 }, async () => {
    const fifo = await fifoNamed('x.sql.gz');

    await expect(verifySqlDump(fifo)).rejects.toThrow(`${fifo} is not a file`);
  });

  const available = toolsAvailable(debianPostgresPrograms, 'a .dump to verify (a PostgreSQL server that pg_dump 15 can dump)');
  describe.skipIf(!available)('a custom archive', () => {
    let server: DebianPostgres;
    let dump: string;
    beforeAll(async () => {
      server = await startDebianPostgres();
      const backup = await backupDatabase({ databaseUrl: server.urlOf(await server.createMigratedDatabase()), backupDir: path.join(folder, 'backups'), environment: 'test', keep: 5 });
      dump = backup.file;
    }, 120_000);
    afterAll(async () => server?.stop());

    // The suite's bound on a hang, not a measure: it runs pg_restore 40 times or more, until the
    // swapping process (busy, beside the whole suite on two cores) has made one refusal; 1.4 s
    // alone, and once past 20 s in a full run with a review's scripts beside it.
    it('never waits on a FIFO put in place of a .dump: it verifies it or refuses at once', async () => {
      expect(dump).toMatch(/\.dump$/);
      const target = await swapped(path.basename(dump), '', dump);

      const { refused } = await verifiedOrRefused(target, 40);

      expect(refused).toBeGreaterThan(0);
    });

    // A custom archive has no checksum of its own: one damaged bit in its table of contents
    // dropped a table's data, an index or a primary key while pg_restore read the rest without
    // a word (1342 of 2128 single-bit flips of a small archive read back with exit code 0, a
    // hostile-backup audit found). Only its .sha256 tells.
    it('refuses a .dump with no .sha256 beside it, unless told to take it unchecked', async () => {
      const alone = path.join(await mkdtemp(path.join(folder, 'alone-')), path.basename(dump));
      await copyFile(dump, alone);

      const refused = await verifyBackupFile(alone).catch((e: unknown) => e);

      expect(refused).toBeInstanceOf(RestoreError);
      expect((refused as Error).message).toContain(`it is a custom archive (.dump) with no ${path.basename(dump)}.sha256 beside it, and the format has no checksum of its own`);
      expect((refused as Error).message).toContain('pass --without-checksum (withoutChecksum: true) to restore it unchecked; the database was not touched');
      await expect(verifyBackupFile(alone, { withoutChecksum: true })).resolves.toMatchObject({ format: 'custom', checksum: 'absent' });
      await expect(verifyBackupFile(dump)).resolves.toMatchObject({ format: 'custom', checksum: 'verified' });
    });

    // What the restore will run and write, which the file's size does not tell: a compressed
    // file can hold a thousand times its size.
    it("says how much SQL a .dump holds: pg_restore's whole script of it", async () => {
      const verified = await verifyBackupFile(dump);

      const [program, ...leading] = verified.pgRestore!.command;
      const script = execFileSync(program!, [...leading, '--file=-', '--no-owner', dump], { maxBuffer: 2 ** 28 });
      expect(verified.sqlBytes).toBe(script.length);
    });

    it("refuses at once a FIFO handed to verifyArchive, rather than wait on it as pg_restore's input", { timeout: 5_000 }, async () => {
      const fifo = await fifoNamed('x.dump');

      await expect(verifyArchive(await findPgTool('pg_restore'), fifo)).rejects.toThrow(`${fifo} is not a file`);
    });
  });
});
