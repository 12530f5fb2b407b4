import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { backupFilePattern } from './backup-name.js';
import { checksumPathOf } from '../files/checksum-file.js';
import { fsyncFolder } from '../files/publish-file.js';

/**
 * Deletes all but the newest `keep` backups of `database` under `environment` in `backupDir`
 * (by the time in their names), each with its `.sha256`. Other databases' and environments'
 * files, temporary files and anything else in the folder are left alone. Call it only after the new backup is verified,
 * naming it as `made`: it is always one of those kept, even when a backup dated later (by a
 * host whose clock ran ahead, or copied from one) would put it among the oldest.
 * Returns the names deleted, oldest first.
 *
 * @example
 * await pruneBackups({ backupDir: 'backups', database: 'kennwilliamson', environment: 'production', keep: 14, made: 'kennwilliamson_production_20250915T020000.000Z.dump' })
 * // ['kennwilliamson_production_20250801T020000.000Z.dump']
 */
export async function pruneBackups(options: { backupDir: string; database: string; environment: string; keep: number; made?: string }): Promise<string[]> {
  if (!Number.isInteger(options.keep) || options.keep < 1) throw new Error(`keep must be at least 1, got ${options.keep}`);
  const pattern = backupFilePattern(options.database, options.environment);
  const others = (await readdir(options.backupDir)).filter((name) => pattern.test(name) && name !== options.made).sort();
  const keepOthers = options.made === undefined ? options.keep : options.keep - 1;
  const doomed = others.slice(0, Math.max(0, others.length - keepOthers));
  for (const name of doomed) {
    const file = path.join(options.backupDir, name);
    // The checksum first: a dump without its .sha256 is still restorable, the reverse is litter.
    await rm(checksumPathOf(file), { force: true });
    await rm(file, { force: true });
  }
  if (doomed.length > 0) await fsyncFolder(options.backupDir);
  return doomed;
}
