// CommonJS consumers: require() gives the package's CommonJS build, which requires Kysely's
// CommonJS build, as the service's own require() does: one copy of Kysely.
const assert = require('node:assert/strict');
const { Kysely } = require('kysely');
const api = require('@kennwilliamson/db');
const operations = require('@kennwilliamson/db/operations');
const manifest = require('@kennwilliamson/db/package.json');
assert.equal(typeof api.createDb, 'function');
assert.equal(typeof api.users.create, 'function');
assert.equal(typeof api.migrate, 'function');
assert.equal(typeof operations.backupDatabase, 'function');
assert.equal(manifest.name, '@kennwilliamson/db');
const kyselyBuilds = new Set(
  Object.keys(require.cache)
    .filter((file) => /[\\/]node_modules[\\/]kysely[\\/]/.test(file))
    .map((file) => /[\\/]kysely[\\/]dist[\\/](\w+)[\\/]/.exec(file)?.[1]),
);
assert.deepEqual([...kyselyBuilds], ['cjs'], `kysely builds loaded: ${[...kyselyBuilds].join(', ')}`);
(async () => {
  // No connection is opened: minConnections 0 and no query.
  const db = api.createDb({ databaseUrl: 'postgresql://nobody@127.0.0.1:9/none', minConnections: 0 });
  assert.ok(db instanceof Kysely, 'createDb made a Kysely of another copy of kysely than the service requires');
  assert.match(require.resolve('@kennwilliamson/db'), /[\\/]dist[\\/]cjs[\\/]/);
  await db.destroy();
  console.log('require(): ok (the CommonJS build, one kysely)');
})().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
