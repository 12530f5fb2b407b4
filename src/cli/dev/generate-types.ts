import { withClient } from '../../db/with-client.js';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { columnOverrides, type JsonShape } from './column-overrides.js';

/**
 * jsonb columns whose shape a module declares and validates, keyed `schema.table.column`;
 * the module paths are relative to generated/db.ts.
 */
export const jsonShapes: Record<string, JsonShape> = {
  'public.refresh_tokens.device_info': { type: 'DeviceInfo', from: '../src/device-info.js' },
};

export interface GenerateTypesOptions {
  databaseUrl: string;
  outFile: string;
  /** Fail when `outFile` differs from what the schema generates, instead of writing it. */
  verify?: boolean;
  /** Where the one line about CHECKs it could not read goes (default: stderr). */
  warn?: (line: string) => void;
  /** kysely-codegen's own progress lines (default: `info`). */
  logLevel?: 'info' | 'warn' | 'error' | 'silent';
  /** Default: {@link jsonShapes}. */
  shapes?: Record<string, JsonShape>;
}

/**
 * Runs kysely-codegen on the live schema, with the column types it cannot see computed first
 * and handed to it as its own `overrides` and `customImports` (see {@link columnOverrides}):
 * unions of literals for CHECK-listed text columns, module types for jsonb columns with a
 * known shape. PostgreSQL enums become unions by kysely-codegen itself. The schema_migrations
 * table is left out. Returns the generated text; with `verify`, throws when the file differs.
 *
 * @example await generateTypes({ databaseUrl, outFile: 'generated/db.ts', verify: true })
 */
export async function generateTypes(options: GenerateTypesOptions): Promise<string> {
  const { columns, customImports, notUnderstood } = await withClient(options.databaseUrl, (client) =>
    columnOverrides(client, options.shapes ?? jsonShapes),
  );
  if (notUnderstood.length > 0) {
    (options.warn ?? ((line) => console.error(line)))(
      `codegen: ${notUnderstood.length === 1 ? 'a CHECK tests' : `${notUnderstood.length} CHECKs test`} values in a form it does not read, ` +
        `so ${notUnderstood.length === 1 ? 'that column keeps its' : 'those columns keep their'} plain type: ${notUnderstood.join(', ')}`,
    );
  }
  // Loaded here, not at the top: kysely-codegen loads the TypeScript compiler, which no other
  // command of the npm scripts (and of the tests, which spawn them by the dozen) should pay for.
  const { generate, getDialect, Logger } = await import('kysely-codegen');
  // In-process, so that the URL never reaches a command line and the overrides need no JSON.
  // What kysely-codegen's own CLI does, except that the connection is closed whatever happens
  // (the CLI leaves it open when --verify fails, which only its process exit ends).
  const dialect = getDialect('postgres');
  const db = await dialect.introspector.connect({ connectionString: options.databaseUrl, dialect });
  try {
    return await generate({
      db,
      dialect,
      outFile: options.outFile,
      excludePattern: migrationsTable,
      overrides: { columns },
      customImports,
      verify: options.verify ?? false,
      logger: new Logger(options.logLevel ?? 'info'),
    });
  } finally {
    await db.destroy();
  }
}
