import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { cliDatabaseUrl } from '../embedded/local-server.js';
import { migrationsTable } from '../migrations/migration-storage.js';
import { packageRoot } from '../package-root.js';
import { runCli } from './run-cli.js';

// Regenerates generated/db.ts from the live schema, or with --verify fails when the committed
// file differs from it. The URL goes through the environment, never the command line.
const usage = `Usage: npm run codegen [-- --verify]   (npm run codegen:check is the same with --verify)

Regenerates generated/db.ts from the live, migrated database with kysely-codegen (the
schema_migrations table excluded); with --verify, fails when the committed file differs.
Other arguments go to kysely-codegen.

Environment:
  DATABASE_URL       the database to read (default: the local embedded server)
`;

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const root = packageRoot();
  const result = spawnSync(
    path.join(root, 'node_modules', '.bin', 'kysely-codegen'),
    [
      '--dialect',
      'postgres',
      '--url',
      'env(DATABASE_URL)',
      '--out-file',
      path.join(root, 'generated', 'db.ts'),
      '--exclude-pattern',
      migrationsTable,
      ...args,
    ],
    { stdio: 'inherit', env: { ...process.env, DATABASE_URL: cliDatabaseUrl() } },
  );
  if (result.status !== 0) throw new Error(`kysely-codegen exited with ${result.status ?? result.signal}`);
});
