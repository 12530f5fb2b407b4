// A service bundled with esbuild and deployed as its bundle alone, with its own package.json
// and migrations/ beside it and, of node_modules, only what the README says to keep external
// (libpg-query). Its queries run; migrationStatus() without migrationsDir refuses, naming the
// option, rather than take the service's migrations/ for the package's (which applied them as
// ours on a new database); with the copied folder it finds every migration applied.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { BackupError, ConfigError, createDb, migrationStatus, users } from '@kennwilliamson/db';
import { backupDatabase } from '@kennwilliamson/db/operations';

// No top-level await: esbuild's CommonJS output has none.
async function main() {
  const db = createDb();
  try {
    const { rows } = await sql`SELECT 1 AS one`.execute(db);
    assert.equal(rows[0].one, 1);
    assert.equal(await users.findByEmail(db, 'nobody@example.org'), null);
  } finally {
    await db.destroy();
  }

  const refused = await migrationStatus({ databaseUrl: process.env.DATABASE_URL }).catch((error) => error);
  assert.ok(refused instanceof ConfigError, `migrationStatus without migrationsDir: ${refused?.stack ?? JSON.stringify(refused)}`);
  assert.equal(refused.variable, 'migrationsDir');
  const states = await migrationStatus({ databaseUrl: process.env.DATABASE_URL, migrationsDir: process.env.MIGRATIONS_DIR });
  assert.ok(states.length > 0 && states.every((migration) => migration.state === 'applied'), JSON.stringify(states));
  // With no native pg_dump (none on this PATH) and no WebAssembly one installed, a backup says
  // what to install, as it does from node_modules: the bundle has none of the package's files
  // (its docker-compose.yml among them) to look for a container's pg_dump with.
  const noTools = await backupDatabase({
    databaseUrl: process.env.DATABASE_URL,
    backupDir: process.env.BACKUP_DIR,
    environment: 'bundle',
    keep: 1,
    toolSearch: { env: { PATH: '' }, installationsDir: '/nonexistent' },
  }).catch((error) => error);
  assert.ok(noTools instanceof BackupError && noTools.message.includes('npm install @electric-sql/pglite-tools'), `backup without pg_dump: ${noTools?.stack ?? JSON.stringify(noTools)}`);
  console.log(`bundled service (${process.argv[2]}): ${states.length} migrations applied, found in the copied folder only; a backup without pg_dump says what to install: ok`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
