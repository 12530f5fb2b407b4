import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { ConflictError } from '../../src/errors.js';
import * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { eventually } from '../support/eventually.js';
import { newAdmin, newUser } from '../support/factories.js';
import { createTestDatabase, libraryUrl, type TestDatabase } from '../support/test-database.js';

const failures = (results: PromiseSettledResult<unknown>[]) =>
  results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).constructor.name] : []));

// A database (or role) may default to a stricter isolation level. A rotation and an issue are
// one statement each, in a transaction of their own: there a row another rotation changed
// since the statement's snapshot fails it (SQLSTATE 40001) where READ COMMITTED would re-read
// it. A replayed token racing the real one then got SerializationError and revoked nothing,
// unless the service retried: reuse detection skipped, and the winner's token left live.
describe.each(['repeatable read', 'serializable'] as const)('refresh tokens and suggestion decisions where the database defaults to %s', (level) => {
  let database: TestDatabase;
  let db: Kysely<DB>;
  beforeAll(async () => {
    database = await createTestDatabase();
    await withClient(database.url, (client) => client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET default_transaction_isolation = '${level}'`));
    db = createDb({ databaseUrl: libraryUrl(database), minConnections: 0, maxConnections: 10 });
    // Every caller's connection open before the races, so that they race.
    await Promise.all(Array.from({ length: 10 }, () => db.transaction().execute((trx) => sql`SELECT pg_sleep(0.02)`.execute(trx))));
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });
  const liveTokens = async (userId: string) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM refresh_tokens WHERE user_id = ${userId} AND revoked_at IS NULL`.execute(db)).rows[0]!.n;

  it('a token presented twice at once (no grace): one rotation wins, the other is reuse, and the family ends revoked', async () => {
    const { rows } = await sql<{ isolation: string }>`SELECT current_setting('transaction_isolation') AS isolation`.execute(db);
    expect(rows[0]!.isolation).toBe(level);
    for (let round = 0; round < 3; round++) {
      const user = await newUser(db);
      const issued = await refreshTokens.issue(db, { userId: user.id });
      const results = await Promise.allSettled([0, 1].map(() => refreshTokens.rotate(db, issued.token, { reuseGraceSeconds: 0 })));
      expect(failures(results)).toEqual(['TokenReusedError']);
      expect(await liveTokens(user.id)).toBe(0);
    }
  });

  // Decisions open their own transaction READ COMMITTED: the loser reads the suggestion again
  // once the winner commits, as the documented ConflictError, not SerializationError.
  it('an approval and a rejection of one suggestion at once: the loser gets ConflictError', async () => {
    const admin = await newAdmin(db);
    const suggestion = await phraseSuggestions.submit(db, (await newUser(db)).id, 'Race me');
    let approved!: () => void;
    const firstApproved = new Promise<void>((resolve) => (approved = resolve));
    let commit!: () => void;
    const mayCommit = new Promise<void>((resolve) => (commit = resolve));
    const first = db.transaction().execute(async (trx) => {
      await phraseSuggestions.approve(trx, { suggestionId: suggestion.id, adminId: admin.id });
      approved();
      await mayCommit;
    });
    await firstApproved;
    const second = phraseSuggestions.reject(db, { suggestionId: suggestion.id, adminId: admin.id }).catch((error: unknown) => error);
    await eventually(async () => {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(db);
      return rows[0]!.n === 1;
    }, 'the rejection waits for the approval');
    commit();
    await first;
    expect(await second).toBeInstanceOf(ConflictError);
  });

  it('ten tabs refreshing one token at once within the grace each get a token', async () => {
    const user = await newUser(db);
    const issued = await refreshTokens.issue(db, { userId: user.id });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => refreshTokens.rotate(db, issued.token, { reuseGraceSeconds: 10 })));
    expect(failures(results)).toEqual([]);
  });

  // A transaction opened by hand (BEGIN on db.connection()) is none Kysely knows of: the
  // statement runs once more there, into the aborted transaction, and the caller must still
  // hear of the serialization failure, not of the abort that followed it.
  it("inside a transaction begun by hand, a login that meets a user row changed since the snapshot fails as SerializationError", async () => {
    const user = await newUser(db);
    const error = await db.connection().execute(async (connection) => {
      await sql`BEGIN`.execute(connection);
      try {
        await sql`SELECT 1`.execute(connection); // the transaction's snapshot
        await users.updateProfile(db, user.id, { displayName: 'Changed meanwhile' });
        return await refreshTokens.issue(connection, { userId: user.id }).catch((e: unknown) => e);
      } finally {
        await sql`ROLLBACK`.execute(connection);
      }
    });
    expect((error as Error).constructor.name).toBe('SerializationError');
  });

  it('a rotation and a login racing the deactivation of their user fail as UserInactiveError, leaving no live token', async () => {
    for (let round = 0; round < 2; round++) {
      const user = await newUser(db);
      const issued = await refreshTokens.issue(db, { userId: user.id });
      const results = await Promise.allSettled([refreshTokens.rotate(db, issued.token), refreshTokens.issue(db, { userId: user.id }), users.setActive(db, user.id, false)]);
      expect(failures(results).filter((name) => name !== 'UserInactiveError')).toEqual([]);
      expect(await liveTokens(user.id)).toBe(0);
    }
  });
});
