import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backupFileName, backupTimeOf } from '../../../src/operations/backup/backup-name.js';
import { pruneBackups } from '../../../src/operations/backup/backup-retention.js';

describe('pruneBackups', () => {
  let backupDir: string;
  beforeEach(async () => {
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-retention-'));
  });
  afterEach(async () => rm(backupDir, { recursive: true, force: true }));

  // Backups as this package writes them: each with its .sha256.
  async function putBackups(names: string[]): Promise<void> {
    for (const name of names) {
      await writeFile(path.join(backupDir, name), 'x');
      await writeFile(path.join(backupDir, `${name}.sha256`), 'x');
    }
  }

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
    // A backup from a host whose clock ran ahead sorts after the one made now (by less than a
    // day: one further ahead is not counted, as a test below says).
    const ahead = backupFileName('kennwilliamson', 'development', new Date(Date.now() + 60 * 60 * 1000), 'custom');
    const older = backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, 1)), 'custom');
    const made = backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, 2)), 'custom');
    for (const name of [ahead, older, made]) await writeFile(path.join(backupDir, name), 'x');

    expect(await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 2, made })).toEqual([older]);
    expect((await readdir(backupDir)).sort()).toEqual([made, ahead].sort());
    expect(await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 1, made })).toEqual([ahead]);
    expect(await readdir(backupDir)).toEqual([made]);
  });

  // Planted, or from a host whose clock ran far ahead: counted, such names took the kept slots
  // for ever, and retention deleted the real backups in their place.
  it('does not count, and leaves alone, names whose time is no date or more than a day from now', async () => {
    const real = [1, 2, 3, 4].map((day) => `kw_production_2025010${day}T020000.000Z.dump`);
    const made = 'kw_production_20250105T020000.000Z.dump';
    const ahead = backupFileName('kw', 'production', new Date(Date.now() + 2 * 24 * 60 * 60 * 1000));
    const notCounted = ['kw_production_99999999T999999Z.dump', 'kw_production_99999999T999998Z.sql.gz', 'kw_production_20250230T020000Z.dump', ahead];
    await putBackups([...real, made]);
    for (const name of notCounted) await writeFile(path.join(backupDir, name), '');
    const lines: string[] = [];

    expect(await pruneBackups({ backupDir, database: 'kw', environment: 'production', keep: 4, made, log: (line) => lines.push(line) })).toEqual([real[0]]);

    const left = real.slice(1).flatMap((name) => [name, `${name}.sha256`]);
    expect((await readdir(backupDir)).sort()).toEqual([...left, made, `${made}.sha256`, ...notCounted].sort());
    expect(lines.sort()).toEqual(
      [
        `left alone ${notCounted[0]}: named like a backup, but its time is no date`,
        `left alone ${notCounted[1]}: named like a backup, but its time is no date`,
        `left alone ${notCounted[2]}: named like a backup, but its time is no date`,
        `left alone ${ahead}: named like a backup, but dated more than a day after now`,
      ].sort(),
    );
  });

  // Four empty files named a day ahead (less 1 h, so counted by the time in their name) took
  // the four kept slots beside the new backup, and all five real backups were deleted.
  it('does not count, and leaves alone, empty files named like backups dated up to a day ahead', async () => {
    const at = (day: number) => backupFileName('kw', 'production', new Date(Date.UTC(2025, 0, day)));
    const real = [1, 2, 3, 4, 5].map(at);
    const made = backupFileName('kw', 'production', new Date());
    const planted = [0, 1, 2, 3].map((minute) => backupFileName('kw', 'production', new Date(Date.now() + 23 * 60 * 60 * 1000 + minute * 60 * 1000)));
    await putBackups([...real, made]);
    for (const name of planted) await writeFile(path.join(backupDir, name), '');
    const lines: string[] = [];

    expect(await pruneBackups({ backupDir, database: 'kw', environment: 'production', keep: 5, made, log: (line) => lines.push(line) })).toEqual([real[0]]);

    const left = [...real.slice(1), made].flatMap((name) => [name, `${name}.sha256`]);
    expect((await readdir(backupDir)).sort()).toEqual([...left, ...planted].sort());
    expect(lines.sort()).toEqual(planted.map((name) => `left alone ${name}: named like a backup, but empty`).sort());
  });

  // A folder under a backup's name failed its rm after its .sha256 was gone, and the prune
  // stopped there: no older backup was deleted again, and the disk filled.
  it('does not count, and leaves alone, a folder or a symlink named like a backup', async () => {
    const at = (day: number) => backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, day)));
    const [folder, link, ...real] = [at(1), at(2), at(3), at(4), at(5)];
    await mkdir(path.join(backupDir, folder!));
    await symlink(path.join(backupDir, real[0]!), path.join(backupDir, link!));
    for (const name of [folder, link, ...real]) await writeFile(path.join(backupDir, `${name}.sha256`), 'x');
    for (const name of real) await writeFile(path.join(backupDir, name), 'x');
    const lines: string[] = [];

    expect(await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 2, log: (line) => lines.push(line) })).toEqual([real[0]]);

    expect((await readdir(backupDir)).sort()).toEqual(
      [folder!, `${folder}.sha256`, link!, `${link}.sha256`, real[1]!, `${real[1]}.sha256`, real[2]!, `${real[2]}.sha256`].sort(),
    );
    expect(lines.sort()).toEqual([`left alone ${folder}: named like a backup, but not a regular file`, `left alone ${link}: named like a backup, but not a regular file`].sort());
  });

  // One entry it could not delete stopped the prune, so every older backup stayed for ever.
  it('deletes the others it should past one it cannot delete, then fails naming it', async () => {
    const at = (day: number) => backupFileName('kennwilliamson', 'development', new Date(Date.UTC(2025, 0, day)));
    const backups = [at(1), at(2), at(3), at(4)];
    for (const name of backups) await writeFile(path.join(backupDir, name), 'x');
    // A folder where the oldest one's .sha256 should be: rm fails on it, as on a file we may not delete.
    await mkdir(path.join(backupDir, `${backups[0]}.sha256`));
    for (const name of backups.slice(1)) await writeFile(path.join(backupDir, `${name}.sha256`), 'x');

    const error = await pruneBackups({ backupDir, database: 'kennwilliamson', environment: 'development', keep: 2 }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(AggregateError);
    expect((error as AggregateError).errors).toHaveLength(1);
    expect((error as Error).message).toMatch(new RegExp(`^could not delete ${backups[0]}\.sha256: .*; deleted ${backups[0]}, ${backups[1]}$`));
    expect((await readdir(backupDir)).sort()).toEqual(
      [`${backups[0]}.sha256`, backups[2]!, `${backups[2]}.sha256`, backups[3]!, `${backups[3]}.sha256`].sort(),
    );
  });

  it('reads the time in a backup\'s name only where it is a real UTC time', () => {
    expect(backupTimeOf('kw_production_20250914T134643.512Z.dump')).toEqual(new Date(Date.UTC(2025, 8, 14, 13, 46, 43, 512)));
    expect(backupTimeOf('kw_production_20250914T134643Z.sql.gz')).toEqual(new Date(Date.UTC(2025, 8, 14, 13, 46, 43)));
    for (const stamp of ['99999999T999999Z', '20250230T000000Z', '20251301T000000Z', '20250101T240000Z', '20250101T006000.000Z', '00990101T000000Z']) {
      expect(backupTimeOf(`kw_production_${stamp}.dump`), stamp).toBeUndefined();
    }
  });

  it('names a backup after its database, percent-encoding what a file name should not hold', () => {
    const at = new Date(Date.UTC(2025, 8, 14, 13, 46, 43, 512));
    expect(backupFileName('kennwilliamson', 'production', at)).toBe('kennwilliamson_production_20250914T134643.512Z.dump');
    expect(backupFileName('.my db/ä', 'production', at, 'sql-gzip')).toBe('%2Emy%20db%2F%C3%A4_production_20250914T134643.512Z.sql.gz');
    // Never an option on a command line.
    expect(backupFileName('-kw-copy', 'production', at)).toBe('%2Dkw-copy_production_20250914T134643.512Z.dump');
  });
});
