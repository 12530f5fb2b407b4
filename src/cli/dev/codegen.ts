import path from 'node:path';
import { migrationDatabaseUrl } from '../../migrations/migration-settings.js';
import { packageRoot } from '../../package-root.js';
import type { Command } from '../command.js';

/** `npm run codegen`: regenerate generated/db.ts from the live schema, or verify it. */
export const codegenCommand: Command = {
  name: 'codegen',
  summary: 'regenerate generated/db.ts from the live schema (--verify: fail when it differs)',
  usage: `Usage: npm run codegen [-- --verify]   (npm run codegen:check is the same with --verify)

Regenerates generated/db.ts from the live, migrated database with kysely-codegen (the
schema_migrations table excluded); with --verify, fails when the committed file differs.
Text columns that a CHECK limits to a list of values are typed as that list ('a' | 'b'),
PostgreSQL enums as theirs; a CHECK it cannot read as a list is named on one line of stderr.

Environment:
  MIGRATION_DATABASE_URL  the database to read (else DATABASE_URL; default: the local embedded server)
`,
  options: { verify: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const { generateTypes } = await import('./generate-types.js');
    await generateTypes({
      databaseUrl: migrationDatabaseUrl(),
      outFile: path.join(packageRoot(), 'generated', 'db.ts'),
      verify: values.verify === true,
    });
  },
};
