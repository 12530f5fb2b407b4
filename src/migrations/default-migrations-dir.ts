import path from 'node:path';
import { ConfigError } from '../errors.js';
import { findPackageRoot } from '../package-root.js';

/**
 * The migrations folder shipped with this package. Apart from the migrator so that a command
 * can name it without loading Umzug and PostgreSQL's parser. Where the code runs away from
 * its package (bundled into a service), it refuses, saying what to pass, rather than take
 * the service's own `migrations/` for ours.
 *
 * @example defaultMigrationsDir() // …/node_modules/@kennwilliamson/db/migrations
 */
export function defaultMigrationsDir(): string {
  const root = findPackageRoot();
  if (root === undefined) {
    throw new ConfigError(
      'migrationsDir',
      "cannot find @kennwilliamson/db's migrations: its code runs away from its package (bundled into a service?). " +
        'Copy node_modules/@kennwilliamson/db/migrations beside the bundle and pass its path as migrate({ migrationsDir }) (or --migrations-dir)',
    );
  }
  return path.join(root, 'migrations');
}
