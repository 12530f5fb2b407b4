import { ConfigError } from '../errors.js';
import { defaultLockTimeoutMs } from './migration-lock.js';

/**
 * The URL migrations run with: `MIGRATION_DATABASE_URL`, the owner's direct connection, else
 * `DATABASE_URL`. Services query with `DATABASE_URL` (the application role, often through a
 * pooler); migrations, setup, backups and restores need the owner.
 *
 * @example
 * migrationDatabaseUrl({ DATABASE_URL: appUrl, MIGRATION_DATABASE_URL: ownerUrl }) // ownerUrl
 */
export function migrationDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const url = env.MIGRATION_DATABASE_URL?.trim() || env.DATABASE_URL?.trim();
  if (!url) {
    throw new ConfigError('MIGRATION_DATABASE_URL', 'neither MIGRATION_DATABASE_URL nor DATABASE_URL is set');
  }
  return url;
}

/**
 * How long to wait for another migration run: `MIGRATION_LOCK_TIMEOUT` in seconds, default
 * 300. Bounded, so a stuck run makes the next one fail with the holder's name rather than hang.
 *
 * @example migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '30' }) // 30000
 */
export function migrationLockTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MIGRATION_LOCK_TIMEOUT?.trim();
  if (!raw) return defaultLockTimeoutMs;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new ConfigError('MIGRATION_LOCK_TIMEOUT', `MIGRATION_LOCK_TIMEOUT must be a whole number of seconds (at least 1), got '${raw}'`);
  }
  return Number(raw) * 1000;
}
