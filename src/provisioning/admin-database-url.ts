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
export function adminDatabaseUrl(command: string, env: NodeJS.ProcessEnv = process.env, options: { postgresDatabase?: boolean | undefined } = {}): string {
  const url = env[adminUrlVariable]?.trim();
  if (!url) {
    throw new ConfigError(
      adminUrlVariable,
      `${command} --admin needs ${adminUrlVariable}: the database, as a superuser (or a role with CREATEDB and CREATEROLE), directly`,
    );
  }
  const { database } = databaseTarget(url, env, adminUrlVariable);
  // An admin's URL ends in /postgres by habit. The step would make the owner role the owner of
  // that database (which a pooler's auth_query may live in) and apply the schema there; in a
  // template, every database created afterwards would get it.
  if (database === 'template0' || database === 'template1' || (database === 'postgres' && options.postgresDatabase !== true)) {
    const setup = command === 'setup';
    const escape = database === 'postgres' && setup ? `, or pass --postgres-database where the application's database is that one (a hosted server's only database)` : '';
    const would = setup ? 'make the owner role its owner and apply the schema there' : 'drop it and make it again';
    throw new ConfigError(
      adminUrlVariable,
      `${adminUrlVariable} names '${database}', the server's own ${database === 'postgres' ? 'maintenance database' : 'template'}: ${command} --admin would ${would}. ` +
        `Name the application's database${setup ? ' (created if missing)' : ''}${escape}; nothing was done`,
    );
  }
  return url;
}
