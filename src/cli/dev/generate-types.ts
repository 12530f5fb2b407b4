import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import type pg from 'pg';
import { answeringWithin, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { withClient } from '../../db/with-client.js';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { columnOverrides, type JsonShape } from './column-overrides.js';
import { printNote } from '../terminal-text.js';

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
 * Everything runs on one connection of its own, closed before this returns, whatever happens.
 *
 * @example await generateTypes({ databaseUrl, outFile: 'generated/db.ts', verify: true })
 */
export async function generateTypes(options: GenerateTypesOptions): Promise<string> {
  // Loaded here, not at the top: kysely-codegen loads the TypeScript compiler, which no other
  // command of the npm scripts (and of the tests, which spawn them by the dozen) should pay for.
  const { DiffChecker, generate, getDialect, Logger } = await import('kysely-codegen');
  const logger = new Logger(options.logLevel ?? 'info');
  return withClient(
    options.databaseUrl,
    async (connection) => {
      // Every catalog read answered within a round trip's deadline, and its wait for a lock (a
      // catalog row that DDL in flight, or a prepared transaction, holds) bounded below that:
      // against a server that stopped answering, codegen waited 680 s without a word, and 146 s
      // for a lock on schema_migrations.
      const client = answeringWithin(connection, roundTripDeadlineMs);
      // pg_get_expr prints a string constant as the session reads them: with backslashes
      // doubled where a database or role turned standard strings off, which the deriver, reading
      // the expression as PostgreSQL's parser does by default, would take for two.
      await client.query(`SET standard_conforming_strings = on; SET lock_timeout = ${catalogLockTimeoutMs}`);
      const { columns, customImports, notUnderstood, notValidated, notBinding, enumArrays } = await columnOverrides(client, options.shapes ?? jsonShapes);
      const warn = options.warn ?? printNote;
      // A declined CHECK narrows no type; another CHECK on the same column still may.
      const narrowsNothing = (count: number) => (count === 1 ? 'so it narrows no type' : 'so they narrow no type');
      if (notUnderstood.length > 0) {
        warn(
          `codegen: ${notUnderstood.length === 1 ? 'a CHECK tests' : `${notUnderstood.length} CHECKs test`} values in a form it does not read, ` +
            `${narrowsNothing(notUnderstood.length)}: ${notUnderstood.join(', ')}`,
        );
      }
      if (notValidated.length > 0) {
        warn(
          `codegen: ${notValidated.length === 1 ? 'a CHECK is' : `${notValidated.length} CHECKs are`} NOT VALID (rows from before it may hold other values), ` +
            `${narrowsNothing(notValidated.length)} until VALIDATE CONSTRAINT: ${notValidated.join(', ')}`,
        );
      }
      if (notBinding.length > 0) {
        warn(
          `codegen: ${notBinding.length === 1 ? 'a CHECK binds less than its list' : `${notBinding.length} CHECKs bind less than their lists`} (a column of a nondeterministic collation, ` +
            `NO INHERIT on a table with children, NOT ENFORCED, or a foreign table among the table's children), ${narrowsNothing(notBinding.length)}: ${notBinding.join(', ')}`,
        );
      }
      if (enumArrays.length > 0) {
        warn(
          `codegen: pg returns an array of an enum as its text ('{a,b}'), so ${enumArrays.length === 1 ? 'that column is' : 'those columns are'} typed string ` +
            `(select it as col::text[] for an array): ${enumArrays.join(', ')}`,
        );
      }
      // In-process, so that the URL never reaches a command line and the overrides need no JSON.
      // kysely-codegen would open a pg pool of its own (trying TLS without checking the server's
      // certificate first) whose end() returns before its connections have closed and which
      // has no 'error' listener: a database dropped right after (as tests do) then ended one of
      // them with an error that crashed the process. It introspects through this connection.
      const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: poolOfOne(client) }) });
      const dialect = getDialect('postgres');
      logger.info('Introspecting database...');
      // The text only: it is checked before it is written or compared (below).
      const generated = await generate({
        // kysely-codegen loads kysely's CommonJS build and this module its ES one: two copies
        // of the class, which the compiler tells apart by their private field. kysely-codegen
        // only calls the instance's methods, so this module's instance serves it as well.
        db: db as unknown as Parameters<typeof generate>[0]['db'],
        dialect,
        outFile: null,
        excludePattern: migrationsTable,
        overrides: { columns },
        customImports,
      });
      requireOwnImports(generated, customImports);
      if (options.verify === true) {
        const committed = await readFile(options.outFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') throw new Error(`${options.outFile} is missing: run npm run codegen, and commit it`);
          throw error;
        });
        // From the file to what the schema generates: kysely-codegen's own check printed it the
        // other way round (a value a migration added showed as removed), and pointed at a
        // --log-level option the command does not take.
        const diff = new DiffChecker().diff(committed, generated);
        if (diff !== undefined) {
          warn(`codegen: ${options.outFile} ('-') differs from what the live schema generates ('+'):\n${diff}`);
          throw new Error(`Generated types are not up-to-date with the live schema: run npm run codegen, and commit ${options.outFile}`);
        }
        logger.success('Generated types are up-to-date!');
      } else {
        await mkdir(path.dirname(options.outFile), { recursive: true });
        await writeFile(options.outFile, generated);
        logger.success(`Generated ${options.outFile}`);
      }
      return generated;
    },
    'kennwilliamson-codegen',
  );
}

// The overrides spell a module's type by the name it is imported under: where a table or enum of
// the schema gets an interface or type of that name too, kysely-codegen imports the module's
// under another (`DeviceInfo as DeviceInfo2`), and the column was typed as that table's rows,
// without a word (a table named device_info, for refresh_tokens.device_info).
function requireOwnImports(generated: string, customImports: Record<string, string>): void {
  for (const [name, from] of Object.entries(customImports)) {
    if (!new RegExp(`^export (interface|type) ${name}\\b`, 'm').test(generated)) continue;
    throw new Error(
      `codegen: the schema has a table or type that kysely-codegen also names ${name}, the type of a json column (from ${from}): ` +
        'the column would be typed as its rows. Rename the table or type; nothing was written',
    );
  }
}

// Below the round trip's deadline, so that a lock wait fails as one, naming lock_timeout.
const catalogLockTimeoutMs = 5_000;

// A pool of this one connection, for Kysely: each query waits until the one before it has
// released the connection, since Kysely takes a connection it leases to be its alone
// (kysely-codegen sends several queries at once), and ending the pool leaves the connection to
// its owner. For independent queries only: a transaction or connection() scope that queried
// the outer Kysely would wait on itself.
function poolOfOne(client: pg.Client): PostgresPool {
  const query = client.query.bind(client) as PostgresPoolClient['query'];
  let free = Promise.resolve();
  return {
    connect: async () => {
      const previous = free;
      let release!: () => void;
      free = new Promise((resolve) => (release = resolve));
      await previous;
      return { query, release };
    },
    end: async () => undefined,
  };
}
