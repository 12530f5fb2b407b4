import { parseSync } from 'libpg-query';
import { defaultMigrationsDir } from '../../migrations/default-migrations-dir.js';
import { listMigrationFiles } from '../../migrations/migration-files.js';
import { loadBackupStatementParser } from '../vetting/backup-statement-allow-list.js';

type Node = Record<string, any>;

/**
 * The functions the package's migrations create, each as `[name, body]`, the body as
 * PostgreSQL keeps it (`pg_proc.prosrc`: the text between the quotes, as written, which
 * pg_dump writes back as it is): what a restored function that runs with the owner's rights
 * for another role may be. Top-level `CREATE FUNCTION`s only (one made inside a `DO` block is
 * none of those).
 *
 * @example
 * await migrationFunctions() // [['update_updated_at_column', '\n  BEGIN\n    NEW.updated_at = now(); …']]
 */
export async function migrationFunctions(migrationsDir = defaultMigrationsDir()): Promise<Array<[string, string]>> {
  await loadBackupStatementParser();
  const functions: Array<[string, string]> = [];
  for (const file of await listMigrationFiles(migrationsDir)) {
    for (const { stmt } of ((parseSync(file.upSql) as Node).stmts ?? []) as Node[]) {
      const create = stmt?.CreateFunctionStmt as Node | undefined;
      if (create === undefined) continue;
      const name = ((create.funcname ?? []) as Node[]).at(-1)?.String?.sval as string | undefined;
      const as = ((create.options ?? []) as Node[]).find((option) => option.DefElem?.defname === 'as')?.DefElem?.arg?.List?.items as Node[] | undefined;
      const body = as?.[0]?.String?.sval as string | undefined;
      if (name !== undefined && body !== undefined) functions.push([name, body]);
    }
  }
  return functions;
}
