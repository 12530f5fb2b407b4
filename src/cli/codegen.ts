import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { cliDatabaseUrl } from '../embedded/local-server.js';
import { migrationsTable } from '../migrations/migration-storage.js';
import { packageRoot } from '../package-root.js';
import { runCli } from './run-cli.js';

// Regenerates generated/db.ts from the live schema, or with --verify fails when the committed
// file differs from it. The URL goes through the environment, never the command line.
runCli(async (args) => {
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
