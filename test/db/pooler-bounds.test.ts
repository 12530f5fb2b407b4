import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb } from '../../src/db/create-db.js';
import { eventually } from '../support/eventually.js';
import { type PgBouncer, pgBouncerVersions, startPgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { useTestDatabase } from '../support/test-database.js';

// Behind a transaction-mode pooler the pool cannot send its bounds (PgBouncer refuses them as
// startup parameters): it connects without them, and when the role has no defaults of its own
// (setup --admin writes them for the application role) it says which waits are unbounded.
const testDb = useTestDatabase();
const installed = toolsAvailable([pgBouncerVersions['1.18']], 'the pooler bounds test');

describe.skipIf(!installed)('a pool behind PgBouncer whose role has no bounds of its own', () => {
  let bouncer: PgBouncer;
  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: inject('serverUrl') });
  });
  afterAll(async () => bouncer?.stop());

  it('serves every call, and says once, through onPoolError, which bounds are missing', async () => {
    const poolErrors: string[] = [];
    const db = createDb({ databaseUrl: bouncer.url(testDb.directUrl), maxConnections: 3, minConnections: 0 }, { onPoolError: (m) => poolErrors.push(m) });
    try {
      const results = await Promise.all(Array.from({ length: 3 }, () => sql<{ one: number }>`SELECT 1 AS one`.execute(db)));
      expect(results.map(({ rows }) => rows)).toEqual([[{ one: 1 }], [{ one: 1 }], [{ one: 1 }]]);
      await eventually(() => poolErrors.length > 0, 'the pool reports the missing bounds');
      expect(poolErrors).toEqual([
        expect.stringContaining('the role has no default for statement_timeout, lock_timeout, idle_in_transaction_session_timeout'),
      ]);
    } finally {
      await db.destroy();
    }
  });
});
