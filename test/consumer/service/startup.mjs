// What importing the package loads, and how long a service takes to start with it: import,
// createDb, one query and destroy in a fresh process, against the same query with kysely and pg
// alone, the two alternating. The loading is checked; the times are printed, not checked (this
// machine may be shared): the benchmark records the ratio (bench/results.json, `startup`).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const onlyForMigrationsOrBackups = /[\\/]node_modules[\\/](umzug|libpg-query|@rushstack|@electric-sql)[\\/]|[\\/]dist[\\/](cjs[\\/])?src[\\/](operations|migrations[\\/]migrator)/;
const loadedCheck = (load) => `${load}
const loaded = Object.keys((await import('node:module')).default._cache).filter((file) => ${onlyForMigrationsOrBackups}.test(file));
if (loaded.length > 0) { console.error(loaded.join('\\n')); process.exit(1); }`;
for (const [style, load] of [
  ['import', "await import('@kennwilliamson/db');"],
  ['require()', "(await import('node:module')).createRequire(import.meta.url)('@kennwilliamson/db');"],
]) {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', loadedCheck(load)], { encoding: 'utf8' });
  assert.equal(run.status, 0, `${style} of the package entry loaded what only the migrator or a backup needs:\n${run.stderr}`);
}
console.log('start-up: the package entry loads neither the migrator (umzug, libpg-query) nor the operations, by import or require()');

const userId = '01890000-0000-7000-8000-000000000001';
writeFileSync('start-library.mjs', `import { createDb, users } from '@kennwilliamson/db';
const db = createDb();
await users.findById(db, '${userId}');
await db.destroy();\n`);
writeFileSync('start-kysely-pg.mjs', `import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }) });
await db.selectFrom('users').select(['id', 'email', 'display_name as displayName', 'slug', 'active', 'created_at as createdAt', 'updated_at as updatedAt']).where('id', '=', '${userId}').executeTakeFirst();
await db.destroy();\n`);
const times = { 'start-library.mjs': [], 'start-kysely-pg.mjs': [] };
for (let run = 0; run < 6; run++) {
  for (const file of Object.keys(times)) {
    const started = performance.now();
    const child = spawnSync(process.execPath, [file], { stdio: 'inherit' });
    assert.equal(child.status, 0, `${file} failed`);
    if (run > 0) times[file].push(performance.now() - started); // the first round warms the file cache
  }
}
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
const [library, alone] = [median(times['start-library.mjs']), median(times['start-kysely-pg.mjs'])];
console.log(
  `start-up: ok: import, createDb and one query ${library.toFixed(0)} ms; kysely + pg alone ${alone.toFixed(0)} ms ` +
    `(${(library / alone).toFixed(2)}x, median of 5; goal 1.25x, measured by npm run bench)`,
);
