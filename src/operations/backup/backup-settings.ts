import path from 'node:path';
import { ConfigError } from '../../errors.js';

/** Where backups go, how many are kept, and which environment they are named after. */
export interface BackupSettings {
  /**
   * `BACKUP_DIR`, default `./backups` in the current folder (the package root under `npm run`);
   * a relative `BACKUP_DIR` means the operator's folder, which npm passes as `INIT_CWD`.
   */
  backupDir: string;
  /** `BACKUP_KEEP`, default 14: the newest this many backups of the environment are kept. */
  keep: number;
  /** `BACKUP_ENV`, else `NODE_ENV`, else `development`: the `<env>` in the file name. */
  environment: string;
}

export const defaultBackupKeep = 14;

/**
 * Reads the backup settings from the environment and checks them, so a bad value fails
 * before anything is dumped, with a message naming the variable.
 *
 * @example
 * backupSettings({ BACKUP_DIR: '/var/backups/kennwilliamson', BACKUP_KEEP: '30', NODE_ENV: 'production' })
 * // { backupDir: '/var/backups/kennwilliamson', keep: 30, environment: 'production' }
 */
export function backupSettings(env: NodeJS.ProcessEnv = process.env): BackupSettings {
  // npm runs a script in the package root, wherever the operator typed it; a folder the
  // operator named means theirs, as db:restore's FILE does (see cli/operator-file.ts).
  const named = env.BACKUP_DIR?.trim();
  const backupDir = named ? path.resolve(env.INIT_CWD?.trim() || '.', named) : path.resolve('backups');

  const rawKeep = env.BACKUP_KEEP?.trim();
  let keep = defaultBackupKeep;
  if (rawKeep) {
    // At least 1: keeping none would delete the backup just made.
    if (!/^\d+$/.test(rawKeep) || Number(rawKeep) < 1) {
      throw new ConfigError('BACKUP_KEEP', `BACKUP_KEEP must be a whole number of at least 1, got '${rawKeep}'`);
    }
    keep = Number(rawKeep);
  }

  const variable = env.BACKUP_ENV?.trim() ? 'BACKUP_ENV' : 'NODE_ENV';
  const environment = env.BACKUP_ENV?.trim() || env.NODE_ENV?.trim() || 'development';
  // It becomes part of a file name that retention matches on: letters, digits and '-' only.
  if (!/^[A-Za-z0-9][A-Za-z0-9-]{0,39}$/.test(environment)) {
    throw new ConfigError(variable, `${variable} must be letters, digits and '-' (it names the backup files), got '${environment}'`);
  }
  return { backupDir, keep, environment };
}
