// ES module consumers, and one Kysely: the package must use the service's copy (a peer).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
const api = await import('@kennwilliamson/db');
const operations = await import('@kennwilliamson/db/operations');
assert.equal(typeof api.createDb, 'function');
assert.equal(typeof api.phrases.randomForUser, 'function');
assert.equal(typeof operations.restoreDatabase, 'function');
assert.equal(existsSync('node_modules/@kennwilliamson/db/node_modules/kysely'), false, 'a second copy of kysely was installed');
const installed = JSON.parse(readFileSync('node_modules/kysely/package.json', 'utf8'));
assert.equal(installed.version, process.env.SERVICE_KYSELY_VERSION);
console.log(`import: ok (one kysely, ${process.env.SERVICE_KYSELY_VERSION})`);
