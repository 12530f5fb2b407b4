import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { pgBouncerPath, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// Behind a transaction-mode pooler the next client's statement may run on the session the
// last one used. With one server connection behind PgBouncer every call shares one session,
// so whatever the query layer leaves behind on it is visible to the next caller.
describe.skipIf(!toolsAvailable([pgBouncerPath], 'the session-state test'))('the query layer behind a transaction-mode pooler', () => {
  let database: TestDatabase;
  let pooler: PgBouncer;
  let db: Kysely<DB>;

  beforeAll(async () => {
    database = await createTestDatabase();
    pooler = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 1 });
    db = createDb({ databaseUrl: pooler.url(database.url), minConnections: 0, maxConnections: 4 });
  });
  afterAll(async () => {
    await db?.destroy();
    await pooler?.stop();
    await database?.drop();
  });

  it('leaves no session state on the shared server connection: settings, advisory locks, LISTEN, temporary tables', async () => {
    const admin = await newAdmin(db);
    const user = await newUser(db);
    const { token } = await refreshTokens.issue(db, { userId: user.id, deviceInfo: { userAgent: 'test' } });
    await Promise.all([
      refreshTokens.rotate(db, token),
      users.findByEmail(db, user.email),
      incidentTimers.create(db, { userId: user.id, notes: 'pooled' }).then(() => incidentTimers.latestPublicBySlug(db, user.slug)),
      phrases.create(db, { text: 'Keep going, pooled.', createdBy: admin.id }).then(() =>
        phrases.randomForUser(db, user.id),
      ),
      phraseSuggestions
        .submit(db, user.id, 'A phrase through the pooler.')
        .then((suggestion) => phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id })),
      phrases.listForUser(db, user.id, { search: 'pooled' }),
    ]);

    const leftovers = await withClient(pooler.url(database.url), async (client) => {
      const { rows } = await client.query<{ settings: string[]; advisory: number; channels: number; temp: boolean }>(`
        SELECT
          array(SELECT name FROM pg_settings WHERE source = 'session'
                 AND name NOT IN ('application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'standard_conforming_strings', 'IntervalStyle')
                 ORDER BY name) AS settings,
          (SELECT count(*)::int FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') AS advisory,
          (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
          pg_my_temp_schema() <> 0 AS temp`);
      return rows[0];
    });
    expect(leftovers).toEqual({ settings: [], advisory: 0, channels: 0, temp: false });
  });
});
