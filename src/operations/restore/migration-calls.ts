import { parseSync } from 'libpg-query';
import type { MigrationFile } from '../../migrations/migration-files.js';
import { loadBackupStatementParser } from '../vetting/backup-statement-allow-list.js';
import type { MigrationFunction } from './migration-functions.js';
import { calledNames } from './unsafe-calls.js';

/**
 * The functions the migrations' own SQL calls (in a CHECK, a default, an index's expression),
 * and those they create: the only ones a restored backup's expressions may call (see
 * `callNoMigrationMakes`). Read from PostgreSQL's parse tree of each file's up SQL, by name as
 * the parser reads it, which is the name pg_dump writes back (`trim(x)` is `btrim`).
 *
 * @example await callsOfMigrations(files, functions) // Set { 'btrim', 'length', 'lower', 'now', 'uuid_generate_v7', … }
 */
export async function callsOfMigrations(files: readonly MigrationFile[], functions: readonly MigrationFunction[]): Promise<ReadonlySet<string>> {
  await loadBackupStatementParser();
  return new Set([...files.flatMap((file) => calledNames(parseSync(file.upSql))), ...functions.map((each) => each.name)]);
}
