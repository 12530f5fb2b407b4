import { databaseTarget } from '../db/database-target.js';
import { ConfigError } from '../errors.js';

/** The variable the admin's URL comes from, named by every message about that URL. */
export const adminUrlVariable = 'ADMIN_DATABASE_URL';

/**
 * The admin's direct URL for an `--admin` step (`setup --admin`, `db:reset --admin`), read and
 * checked before any connection: a URL that cannot be read as the operator meant (a bad port,
 * an unencoded '#' in the password, no database) is a `ConfigError` under
 * `ADMIN_DATABASE_URL`, never `Invalid URL`, `ENOTFOUND` or another variable's name.
 *
 * @example adminDatabaseUrl('setup', { ADMIN_DATABASE_URL: 'postgresql://postgres:…@db.internal/kennwilliamson' })
 */
export function adminDatabaseUrl(command: string, env: NodeJS.ProcessEnv = process.env): string {
  const url = env[adminUrlVariable]?.trim();
  if (!url) {
    throw new ConfigError(
      adminUrlVariable,
      `${command} --admin needs ${adminUrlVariable}: the database, as a superuser (or a role with CREATEDB and CREATEROLE), directly`,
    );
  }
  databaseTarget(url, env, adminUrlVariable);
  return url;
}
