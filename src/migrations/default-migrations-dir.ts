import path from 'node:path';
import { packageRoot } from '../package-root.js';

/**
 * The migrations folder shipped with this package. Apart from the migrator so that a command
 * can name it without loading Umzug and PostgreSQL's parser.
 *
 * @example defaultMigrationsDir() // …/node_modules/@kennwilliamson/db/migrations
 */
export function defaultMigrationsDir(): string {
  return path.join(packageRoot(), 'migrations');
}
