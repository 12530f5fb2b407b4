// CommonJS consumers: require() of the package (an ES module) on Node >= 20.19.
const assert = require('node:assert/strict');
const api = require('@kennwilliamson/db');
const operations = require('@kennwilliamson/db/operations');
const manifest = require('@kennwilliamson/db/package.json');
assert.equal(typeof api.createDb, 'function');
assert.equal(typeof api.users.create, 'function');
assert.equal(typeof api.migrate, 'function');
assert.equal(typeof operations.backupDatabase, 'function');
assert.equal(manifest.name, '@kennwilliamson/db');
console.log('require(): ok');
