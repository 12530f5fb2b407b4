import { lstat, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { backupFilePattern, backupTimeOf } from './backup-name.js';
import { checksumPathOf } from '../files/checksum-file.js';
import { fsyncFolder } from '../files/publish-file.js';

// How far ahead of this host's clock a backup's name may be dated and still count: another
// host's clock may run somewhat ahead, but a name beyond this would sort newest for ever,
// taking a kept slot from every real backup made after it.
const clockSkewAllowanceMs = 24 * 60 * 60 * 1000;

/**
 * Deletes all but the newest `keep` backups of `database` under `environment` in `backupDir`
 * (by the time in their names), each with its `.sha256`. Other databases' and environments'
 * files, temporary files and anything else in the folder are left alone. Call it only after the new backup is verified,
 * naming it as `made`: it is always one of those kept, even when a backup dated later (by a
 * host whose clock ran ahead, or copied from one) would put it among the oldest.
 * A name that looks like a backup's but is no regular file, or an empty one, or whose time is
 * no real time or more than a day after now, is not counted as a backup: it is left alone and
 * passed to `log`. (A `.sha256` beside it is not required: older deployments' backups may lack one.)
 * A backup it cannot delete does not stop it: it deletes all the others it should, then throws
 * an AggregateError naming each failure (and what it deleted), with the errors as `errors`.
 * Returns the names deleted, oldest first.
 *
 * @example
 * await pruneBackups({ backupDir: 'backups', database: 'kennwilliamson', environment: 'production', keep: 14, made: 'kennwilliamson_production_20250915T020000.000Z.dump' })
 * // ['kennwilliamson_production_20250801T020000.000Z.dump']
 */
export async function pruneBackups(options: {
  backupDir: string;
  database: string;
  environment: string;
  keep: number;
  made?: string;
  /** Receives a line for each name that looks like a backup's and is not counted as one. */
  log?: (line: string) => void;
}): Promise<string[]> {
  if (!Number.isInteger(options.keep) || options.keep < 1) throw new Error(`keep must be at least 1, got ${options.keep}`);
  const pattern = backupFilePattern(options.database, options.environment);
  const latest = Date.now() + clockSkewAllowanceMs;
  const others: { name: string; at: number }[] = [];
  for (const name of (await readdir(options.backupDir)).filter((name) => pattern.test(name) && name !== options.made)) {
    // Anyone may put a name in the folder: one the sort would take for the newest backups
    // would have every real one deleted in its place, and a folder stopped every deletion.
    const at = backupTimeOf(name)?.getTime();
    const entry = await lstat(path.join(options.backupDir, name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (entry === undefined) continue;
    // Empty: no backup this package writes (nor pg_dump's, nor gzip's) is; four empty names
    // dated a day ahead took the kept slots and had the real backups deleted.
    if (at !== undefined && at <= latest && entry.isFile() && entry.size > 0) {
      others.push({ name, at });
      continue;
    }
    const why = at === undefined ? 'its time is no date' : at > latest ? 'dated more than a day after now' : entry.isFile() ? 'empty' : 'not a regular file';
    options.log?.(`left alone ${name}: named like a backup, but ${why}`);
  }
  others.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const keepOthers = options.made === undefined ? options.keep : options.keep - 1;
  const doomed = others.slice(0, Math.max(0, others.length - keepOthers)).map(({ name }) => name);
  const deleted: string[] = [];
  const failures: Error[] = [];
  const failure = (what: string, error: unknown) => new Error(`could not delete ${what}: ${(error as Error).message}`, { cause: error });
  for (const name of doomed) {
    const file = path.join(options.backupDir, name);
    // The backup first: one that could not be deleted keeps its .sha256, and a .sha256 left
    // without its backup is litter, not a backup that can no longer be checked.
    try {
      await rm(file, { force: true });
    } catch (error) {
      failures.push(failure(name, error));
      continue;
    }
    deleted.push(name);
    try {
      await rm(checksumPathOf(file), { force: true });
    } catch (error) {
      failures.push(failure(`${name}.sha256`, error));
    }
  }
  if (deleted.length > 0) {
    try {
      await fsyncFolder(options.backupDir);
    } catch (error) {
      failures.push(new Error(`could not flush the folder after deleting: ${(error as Error).message}`, { cause: error }));
    }
  }
  if (failures.length > 0) {
    const done = deleted.length > 0 ? `; deleted ${deleted.join(', ')}` : '';
    throw new AggregateError(failures, `${failures.map((failure) => failure.message).join('; ')}${done}`);
  }
  return deleted;
}
