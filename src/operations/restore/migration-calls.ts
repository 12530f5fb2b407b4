import type { MigrationFile } from '../../migrations/migration-files.js';
import { migrationRecordTableSql } from '../../migrations/migration-storage.js';
import { loadBackupStatementParser } from '../vetting/backup-statement-allow-list.js';
import { type MigrationFunction, migrationStatements } from './migration-functions.js';
import { type ExpressionWork, expressionWork } from './unsafe-calls.js';

/**
 * What the migrations' own SQL computes with: the functions it calls (in a CHECK, a default,
 * an index's expression) and those it creates, the operators it applies and the SQL/XML and
 * SQL/JSON forms it uses, its `DO` blocks' statements and the migrator's own record table
 * included. The only ones a restored backup's expressions may use (see `workNoMigrationDoes`).
 * Read from PostgreSQL's parse trees, by name as the parser reads it, which is what pg_dump
 * writes back (`trim(x)` is `btrim`, `x IN (…)` is `x = ANY (…)`).
 *
 * @example await callsOfMigrations(files, functions) // { functions: Set { 'btrim', 'lower', 'now', … }, operators: Set { '=', '~', … }, forms: Set {} }
 */
export async function callsOfMigrations(files: readonly MigrationFile[], functions: readonly MigrationFunction[]): Promise<ExpressionWork> {
  await loadBackupStatementParser();
  const statements = [...files.flatMap((file) => migrationStatements(file.upSql)), ...migrationStatements(migrationRecordTableSql)];
  const work = expressionWork(statements);
  return { ...work, functions: new Set([...work.functions, ...functions.map((each) => each.name)]) };
}
