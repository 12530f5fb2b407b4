import { parsePlPgSQLSync, parseSync } from 'libpg-query';
import { defaultMigrationsDir } from '../../migrations/default-migrations-dir.js';
import { listMigrationFiles, type MigrationFile } from '../../migrations/migration-files.js';
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
  /** How many of them have a default (`pg_proc.pronargdefaults`). */
  argumentDefaults: number;
  /**
   * The input arguments' types as written, quoted (`"pg_catalog"."int4"`, `"text"[]`):
   * `pg_proc.proargtypes`, once the server resolves them; null for one declared by another's
   * `%TYPE`, which is not resolved (a restored such function is none of the migrations').
   */
  argumentTypes: Array<string | null>;
  /** The type it returns as written, quoted (`"uuid"`, `"trigger"`), where it says one: `pg_proc.prorettype`. */
  returns?: string | null;
  /** `RETURNS SETOF` or `TABLE` (`pg_proc.proretset`). */
  returnsSet: boolean;
  /** `pg_proc.provolatile`: `i`mmutable, `s`table or `v`olatile (the default). */
  volatility: 'i' | 's' | 'v';
  /** `STRICT` (`pg_proc.proisstrict`). */
  strict: boolean;
  /** A procedure (`pg_proc.prokind` `p`), not a function. */
  procedure: boolean;
}

/**
 * The functions of `public` that the migrations in `migrationsDir` (default: the package's)
 * create, the body as PostgreSQL keeps it (`pg_proc.prosrc`: the text between the quotes, as
 * written, which pg_dump writes back as it is): what a restored function of public may be
 * (the restore also requires it to be no SECURITY DEFINER and to set no setting, as none of
 * the package's does). Top-level `CREATE FUNCTION`s, and those a PL/pgSQL `DO` block runs as
 * a statement of its own (the initial schema's `uuid_generate_v7()`, one body per PostgreSQL
 * version): each branch's, whichever the server took. One created in another schema by name
 * (`audit.f()`) is none of them.
 *
 * @example
 * await migrationFunctions() // [{ name: 'uuid_generate_v7', body: 'SELECT uuidv7()', language: 'sql', arguments: 0, returns: '"uuid"', volatility: 'v', … }, …]
 */
export async function migrationFunctions(migrationsDir?: string): Promise<MigrationFunction[]> {
  return functionsOfMigrations(await listMigrationFiles(migrationsDir ?? defaultMigrationsDir()));
}

/** The same, of migration files already read (a restore lists them for its pending migrations too). @example await functionsOfMigrations(files) */
export async function functionsOfMigrations(files: readonly MigrationFile[]): Promise<MigrationFunction[]> {
  await loadBackupStatementParser();
  return files.flatMap((file) => createdFunctions(file.upSql));
}

/**
 * For the backup's `CREATE FUNCTION` statement, as the allow-list parsed it (`tree`, libpg_query's
 * `stmt`): undefined when it makes one of `known` (the migrations' functions: the same name,
 * body and language), else the name it makes, and whether it has no quoted body and language to
 * compare (one PostgreSQL keeps parsed, `BEGIN ATOMIC` or `RETURN`), which no migration's can
 * be. Asked before the statement runs: the body is what runs while the backup's rows load (a
 * CHECK, a trigger), as the owner, and a body of the backup's own could do there what no later
 * check sees (put the migration's body in its own place, once it acted). The rest of what
 * makes a function the migration's (its types, settings, volatility, a function or a
 * procedure) is compared in the catalog before COMMIT.
 *
 * @example functionNoMigrationMakes(part.tree, known) // { name: 'f', parsedBody: false }, where a migration's f returns 1 and the backup's 2
 */
export function functionNoMigrationMakes(tree: Node, known: readonly MigrationFunction[]): { name: string; parsedBody: boolean } | undefined {
  const create = tree.CreateFunctionStmt as Node;
  const made = describedFunction(create);
  if (made === undefined) {
    const name = ((create.funcname ?? []) as Node[]).at(-1)?.String?.sval as string | undefined;
    return { name: name ?? 'a function', parsedBody: true };
  }
  const same = (each: MigrationFunction) =>
    each.name === made.name && each.body === made.body && each.language.toLowerCase() === made.language.toLowerCase();
  return known.some(same) ? undefined : { name: made.name, parsedBody: false };
}

function createdFunctions(script: string): MigrationFunction[] {
  return migrationStatements(script).flatMap((stmt) => {
    const made = stmt.CreateFunctionStmt === undefined ? undefined : describedFunction(stmt.CreateFunctionStmt as Node);
    return made === undefined ? [] : [made];
  });
}

/**
 * The statements a migration's SQL runs, as PostgreSQL parses them (libpg_query's `stmt`):
 * each top-level one, and those a PL/pgSQL `DO` block runs as statements of their own, whatever
 * branch the server takes (not those it builds as text for EXECUTE).
 *
 * @example migrationStatements('DO $$ BEGIN CREATE TABLE t (i int); END $$;') // [{ DoStmt: … }, { CreateStmt: … }]
 */
export function migrationStatements(script: string): Node[] {
  const statements: Node[] = [];
  // The parser's locations count bytes of UTF-8, not characters.
  const bytes = Buffer.from(script);
  // The parser refuses no text at all ("Query cannot be empty"): an empty file runs nothing.
  const parsed = script === '' ? {} : (parseSync(script) as Node);
  for (const { stmt, stmt_location: at = 0, stmt_len: length } of (parsed.stmts ?? []) as Node[]) {
    if (stmt === undefined) continue;
    statements.push(stmt as Node);
    const block = stmt.DoStmt as Node | undefined;
    if (block !== undefined && doLanguage(block) === 'plpgsql') {
      const text = (length === undefined ? bytes.subarray(at) : bytes.subarray(at, at + length)).toString();
      for (const statement of plpgsqlStatements(parsePlPgSQLSync(text))) statements.push(...migrationStatements(statement));
    }
  }
  return statements;
}

// Input arguments: not OUT, nor a RETURNS TABLE column.
const outputModes = new Set(['FUNC_PARAM_OUT', 'FUNC_PARAM_TABLE']);
const volatilities = { immutable: 'i', stable: 's', volatile: 'v' } as const;

function describedFunction(create: Node): MigrationFunction | undefined {
  const qualified = ((create.funcname ?? []) as Node[]).map((part) => part.String?.sval as string | undefined);
  if (qualified.length > 1 && qualified.at(-2) !== 'public') return undefined;
  const name = qualified.at(-1);
  const option = (name: string) => ((create.options ?? []) as Node[]).find((each) => each.DefElem?.defname === name)?.DefElem?.arg;
  // A SQL-standard body (BEGIN ATOMIC, RETURN) has no text: PostgreSQL keeps it parsed.
  const body = (option('as')?.List?.items as Node[] | undefined)?.[0]?.String?.sval as string | undefined;
  const language = option('language')?.String?.sval as string | undefined;
  if (name === undefined || body === undefined || language === undefined) return undefined;
  const inputs = ((create.parameters ?? []) as Node[]).filter((each) => !outputModes.has(each.FunctionParameter?.mode ?? 'FUNC_PARAM_DEFAULT'));
  const returnType = create.returnType as Node | undefined;
  return {
    name,
    body,
    language,
    arguments: inputs.length,
    argumentDefaults: inputs.filter((each) => each.FunctionParameter.defexpr !== undefined).length,
    argumentTypes: inputs.map((each) => typeText(each.FunctionParameter.argType as Node)),
    ...(returnType === undefined ? {} : { returns: typeText(returnType) }),
    returnsSet: returnType?.setof === true,
    volatility: volatilities[(option('volatility')?.String?.sval as keyof typeof volatilities | undefined) ?? 'volatile'],
    strict: option('strict')?.Boolean?.boolval === true,
    procedure: create.is_procedure === true,
  };
}

// A type name as written, quoted for the server to resolve (`"pg_catalog"."int4"`, `"public"."mood"[]`).
function typeText(type: Node): string | null {
  if (type.pct_type === true) return null;
  const name = ((type.names ?? []) as Node[]).map((part) => `"${String(part.String?.sval).replaceAll('"', '""')}"`).join('.');
  return `${name}${'[]'.repeat(((type.arrayBounds ?? []) as unknown[]).length)}`;
}

// DO's language, plpgsql unless it says otherwise.
function doLanguage(block: Node): string {
  const language = ((block.args ?? []) as Node[]).find((each) => each.DefElem?.defname === 'language')?.DefElem?.arg?.String?.sval as string | undefined;
  return language ?? 'plpgsql';
}

// The SQL statements a PL/pgSQL body runs as written (not those it builds as text for
// EXECUTE), wherever they sit in its blocks, IFs and loops.
function plpgsqlStatements(tree: unknown): string[] {
  if (Array.isArray(tree)) return tree.flatMap(plpgsqlStatements);
  if (tree === null || typeof tree !== 'object') return [];
  const query = (tree as Node).PLpgSQL_stmt_execsql?.sqlstmt?.PLpgSQL_expr?.query;
  if (typeof query === 'string') return [query];
  return Object.values(tree).flatMap(plpgsqlStatements);
}
