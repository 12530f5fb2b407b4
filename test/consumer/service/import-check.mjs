// ES module consumers, and one Kysely: the package must use the service's copy (a peer), and
// load Kysely's ES module build, as the service's own `import` does.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import Module from 'node:module';
import { Kysely } from 'kysely';
const api = await import('@kennwilliamson/db');
const operations = await import('@kennwilliamson/db/operations');
assert.equal(typeof api.createDb, 'function');
assert.equal(typeof api.phrases.randomForUser, 'function');
assert.equal(typeof operations.restoreDatabase, 'function');
assert.equal(existsSync('node_modules/@kennwilliamson/db/node_modules/kysely'), false, 'a second copy of kysely was installed');
const installed = JSON.parse(readFileSync('node_modules/kysely/package.json', 'utf8'));
assert.equal(installed.version, process.env.SERVICE_KYSELY_VERSION);
// No connection is opened: minConnections 0 and no query.
const db = api.createDb({ databaseUrl: 'postgresql://nobody@127.0.0.1:9/none', minConnections: 0 });
assert.ok(db instanceof Kysely, 'createDb made a Kysely of another copy of kysely than the service imports');
await db.destroy();
const commonJsKysely = Object.keys(Module._cache).filter((file) => /[\\/]node_modules[\\/]kysely[\\/]/.test(file));
assert.deepEqual(commonJsKysely, [], 'kysely was also loaded as CommonJS');
console.log(`import: ok (one kysely, ${process.env.SERVICE_KYSELY_VERSION}, its ES module build)`);
