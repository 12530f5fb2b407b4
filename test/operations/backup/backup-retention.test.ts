import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backupFileName } from '../../../src/operations/backup/backup-name.js';
import { pruneBackups } from '../../../src/operations/backup/backup-retention.js';

describe('pruneBackups', () => {
  let backupDir: string;
  beforeEach(async () => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-retention-'));
  });
  afterEach(async () => rm(backupDir, { recursive: true, force: true }));

  it('counts custom dumps and WebAssembly .sql.gz backups of the database and environment together, by time, and no other database\'s', async () => {
    const at = (day: number) => new Date(Date.UTC(2025, 0, day));
    const backups = [
      backupFileName('kennwilliamson', 'development', at(1), 'custom'),
      backupFileName('kennwilliamson', 'development', at(2), 'sql-gzip'),
      backupFileName('kennwilliamson', 'development', at(3), 'custom'),
      backupFileName('kennwilliamson', 'development', at(4), 'sql-gzip'),
    ];
    const others = [backupFileName('kennwilliamson', 'production', at(1), 'sql-gzip'), backupFileName('kennwilliamson_copy', 'development', at(1), 'custom'), '.kennwilliamson_development_20250105T000000.000Z.sql.gz.1.tmp'];
    for (const name of [...backups, ...others]) await writeFile(path.join(backupDir, name), 'x');
    for (const name of backups) await writeFile(path.join(backupDir, `${name}.sha256`), 'x');

    const deleted = await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 2 });

    expect(backups[1]).toBe('kennwilliamson_development_20250102T000000.000Z.sql.gz');
    expect(deleted).toEqual([backups[0], backups[1]]);
    expect((await readdir(backupDir)).sort()).toEqual(
      [backups[2]!, `${backups[2]}.sha256`, backups[3]!, `${backups[3]}.sha256`, ...others].sort(),
    );
  });

  it('never deletes the backup just made, even when another is dated later', async () => {
    // A backup from a host whose clock ran ahead sorts after the one made now.
    const ahead = backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2099, 0, 1)), 'custom');
    const older = backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, 1)), 'custom');
    const made = backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, 2)), 'custom');
    for (const name of [ahead, older, made]) await writeFile(path.join(backupDir, name), 'x');

    expect(await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 2, made })).toEqual([older]);
    expect((await readdir(backupDir)).sort()).toEqual([made, ahead].sort());
    expect(await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 1, made })).toEqual([ahead]);
    expect(await readdir(backupDir)).toEqual([made]);
  });

  it('names a backup after its database, percent-encoding what a file name should not hold', () => {
    const at = new Date(Date.UTC(2025, 8, 14, 13, 46, 43, 512));
    expect(backupFileName('kennwilliamson', 'production', at)).toBe('kennwilliamson_production_20250914T134643.512Z.dump');
    expect(backupFileName('.my db/ä', 'production', at, 'sql-gzip')).toBe('%2Emy%20db%2F%C3%A4_production_20250914T134643.512Z.sql.gz');
    // Never an option on a command line.
    expect(backupFileName('-kw-copy', 'production', at)).toBe('%2Dkw-copy_production_20250914T134643.512Z.dump');
  });
});
