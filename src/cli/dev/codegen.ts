import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { migrationDatabaseUrl } from '../../migrations/migration-settings.js';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { packageRoot } from '../../package-root.js';
import type { Command } from '../command.js';

/** `npm run codegen`: regenerate generated/db.ts from the live schema, or verify it. */
export const codegenCommand: Command = {
  name: 'codegen',
  summary: 'regenerate generated/db.ts from the live schema (--verify: fail when it differs)',
  usage: `Usage: npm run codegen [-- --verify]   (npm run codegen:check is the same with --verify)

Regenerates generated/db.ts from the live, migrated database with kysely-codegen (the
schema_migrations table excluded); with --verify, fails when the committed file differs.

Environment:
  MIGRATION_DATABASE_URL  the database to read (else DATABASE_URL; default: the local embedded server)
`,
  options: { verify: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const root = packageRoot();
    // The URL goes through the environment, never the command line.
    const result = spawnSync(
      path.join(root, 'node_modules', '.bin', 'kysely-codegen'),
      [
        '--dialect',
        'postgres',
        '--url',
        'env(KW_CODEGEN_DATABASE_URL)',
        '--out-file',
        path.join(root, 'generated', 'db.ts'),
        '--exclude-pattern',
        migrationsTable,
        ...(values.verify === true ? ['--verify'] : []),
      ],
      { stdio: 'inherit', env: { ...process.env, KW_CODEGEN_DATABASE_URL: migrationDatabaseUrl() } },
    );
    if (result.status !== 0) throw new Error(`kysely-codegen exited with ${result.status ?? result.signal}`);
  },
};
