import { databaseTarget } from '../db/database-target.js';
import { parseDuration } from '../db/duration.js';
import { ConfigError } from '../errors.js';
import { defaultLockTimeoutMs } from './migration-lock.js';

/** The variable a URL of the operations commands comes from. */
export type MigrationUrlVariable = 'MIGRATION_DATABASE_URL' | 'DATABASE_URL';

/**
 * The URL migrations run with: `MIGRATION_DATABASE_URL`, the owner's direct connection, else
 * `DATABASE_URL`. Services query with `DATABASE_URL` (the application role, often through a
 * pooler); migrations, setup, backups and restores need the owner, directly, and refuse a
 * pooler (so the fallback works only where `DATABASE_URL` is itself a direct URL). The URL is
 * checked here, so a bad one fails before any connection with a `ConfigError` naming the
 * variable it came from (a bad port, a `#` that needs percent-encoding …).
 *
 * @example
 * migrationDatabaseUrl({ DATABASE_URL: appUrl, MIGRATION_DATABASE_URL: ownerUrl }) // ownerUrl
 */
export function migrationDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const migrationUrl = env.MIGRATION_DATABASE_URL?.trim();
  const variable: MigrationUrlVariable = migrationUrl ? 'MIGRATION_DATABASE_URL' : 'DATABASE_URL';
  const url = migrationUrl || env.DATABASE_URL?.trim();
  if (!url) {
    throw new ConfigError('MIGRATION_DATABASE_URL', 'neither MIGRATION_DATABASE_URL nor DATABASE_URL is set');
  }
  databaseTarget(url, env, variable);
  return url;
}

/**
 * Which variable holds `url`, for messages: `MIGRATION_DATABASE_URL`, or `DATABASE_URL`
 * when the operations fell back to it (MIGRATION_DATABASE_URL unset); undefined for a URL
 * that a caller passed in from elsewhere, or none (plain JavaScript's `undefined`).
 *
 * @example migrationUrlVariable(url, { DATABASE_URL: url }) // 'DATABASE_URL'
 */
export function migrationUrlVariable(url: string, env: NodeJS.ProcessEnv = process.env): MigrationUrlVariable | undefined {
  if (typeof url !== 'string') return undefined;
  const migrationUrl = env.MIGRATION_DATABASE_URL?.trim();
  if (migrationUrl) return migrationUrl === url.trim() ? 'MIGRATION_DATABASE_URL' : undefined;
  return env.DATABASE_URL?.trim() === url.trim() ? 'DATABASE_URL' : undefined;
}

/**
 * What messages call `url`: the variable it came from (see {@link migrationUrlVariable}), else
 * `databaseUrl`, the option a caller passed it as.
 *
 * @example databaseTarget(url, process.env, migrationUrlName(url)) // "databaseUrl names no database"
 */
export function migrationUrlName(url: string): string {
  return migrationUrlVariable(url) ?? 'databaseUrl';
}

/**
 * How long to wait for another migration run: `MIGRATION_LOCK_TIMEOUT`, default 5 minutes,
 * with a unit (`90s`, `10min`) or as a bare number of seconds. A bare number from 10000 up
 * (more than 2.7 hours: most likely meant as milliseconds) is refused, asking for a unit.
 * Bounded, so a stuck run makes the next one fail with the holder's name rather than hang.
 *
 * @example migrationLockTimeoutMs({ MIGRATION_LOCK_TIMEOUT: '30' }) // 30000
 */
export function migrationLockTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MIGRATION_LOCK_TIMEOUT?.trim();
  if (!raw) return defaultLockTimeoutMs;
  return parseDuration('MIGRATION_LOCK_TIMEOUT', raw, { bare: 's', plausibleBare: [1, 9_999] });
}
