import { parseSync } from 'libpg-query';
import { defaultMigrationsDir } from '../../migrations/default-migrations-dir.js';
import { listMigrationFiles } from '../../migrations/migration-files.js';
import { loadBackupStatementParser } from '../vetting/backup-statement-allow-list.js';

type Node = Record<string, any>;

/** A function a migration creates, as the catalog describes one. */
export interface MigrationFunction {
  name: string;
  /** As `pg_proc.prosrc` holds it. */
  body: string;
  language: string;
  /** How many input arguments (`pg_proc.pronargs`). */
  arguments: number;
}

/**
 * The functions the package's migrations create, the body as PostgreSQL keeps it (`pg_proc.prosrc`: the text between the quotes, as written,
 * which pg_dump writes back as it is): what a restored function that runs with the owner's
 * rights for another role may be (none of them is SECURITY DEFINER or sets a setting, which
 * the restore requires of such a function too). Top-level `CREATE FUNCTION`s only (one made
 * inside a `DO` block is none of those).
 *
 * @example
 * await migrationFunctions() // [{ name: 'update_updated_at_column', body: '\n  BEGIN\n    NEW.updated_at = now(); …', language: 'plpgsql', arguments: 0 }]
 */
export async function migrationFunctions(migrationsDir?: string): Promise<MigrationFunction[]> {
  await loadBackupStatementParser();
  const functions: MigrationFunction[] = [];
  for (const file of await listMigrationFiles(migrationsDir ?? defaultMigrationsDir())) {
    for (const { stmt } of ((parseSync(file.upSql) as Node).stmts ?? []) as Node[]) {
      const create = stmt?.CreateFunctionStmt as Node | undefined;
      if (create === undefined) continue;
      const name = ((create.funcname ?? []) as Node[]).at(-1)?.String?.sval as string | undefined;
      const option = (name: string) => ((create.options ?? []) as Node[]).find((each) => each.DefElem?.defname === name)?.DefElem?.arg;
      const body = (option('as')?.List?.items as Node[] | undefined)?.[0]?.String?.sval as string | undefined;
      const language = option('language')?.String?.sval as string | undefined;
      const parameters = ((create.parameters ?? []) as Node[]).filter((each) => (each.FunctionParameter?.mode ?? 'FUNC_PARAM_DEFAULT') !== 'FUNC_PARAM_OUT');
      if (name !== undefined && body !== undefined && language !== undefined) functions.push({ name, body, language, arguments: parameters.length });
    }
  }
  return functions;
}
