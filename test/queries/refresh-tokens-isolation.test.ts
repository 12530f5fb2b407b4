import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { ConflictError, NotFoundError } from '../../src/errors.js';
import * as incidentTimers from '../../src/queries/incident-timers.js';
import * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import * as phrases from '../../src/queries/phrases.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { eventually } from '../support/eventually.js';
import { newAdmin, newUser } from '../support/factories.js';
import { createTestDatabase, libraryUrl, type TestDatabase } from '../support/test-database.js';

interface Ids {
  admin: string;
  user: string;
  phrase: string;
  timer: string;
}

const failures = (results: PromiseSettledResult<unknown>[]) =>
  results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).constructor.name] : []));

// A database (or role) may default to a stricter isolation level. A rotation and an issue are
// one statement each, in a transaction of their own: there a row another rotation changed
// since the statement's snapshot fails it (SQLSTATE 40001) where READ COMMITTED would re-read
// it. A replayed token racing the real one then got SerializationError and revoked nothing,
// unless the service retried: reuse detection skipped, and the winner's token left live.
describe.each(['repeatable read', 'serializable'] as const)('refresh tokens, suggestion decisions and the writes of one row where the database defaults to %s', (level) => {
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

  // One caller of each function meets a row that another transaction changes, inserts or
  // deletes after the call's snapshot, and commits while the call waits for it. At READ
  // COMMITTED the call reads the row again; at this default, a one-statement call (or a
  // transaction of its own at the default level) failed for serialization: 39 of 40 callers
  // granting one role at once, 19 of 40 toggling one user's activation.
  it.for([
    {
      call: 'users.grantRole',
      other: (ids: Ids) => [`INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'`, [ids.user]] as const,
      run: (ids: Ids) => users.grantRole(db, ids.user, 'admin'),
      outcome: undefined,
    },
    {
      call: 'users.revokeRole',
      before: (ids: Ids) => users.grantRole(db, ids.user, 'admin'),
      other: (ids: Ids) => ['DELETE FROM user_roles WHERE user_id = $1', [ids.user]] as const,
      run: (ids: Ids) => users.revokeRole(db, ids.user, 'admin'),
      outcome: false,
    },
    {
      call: 'users.setActive',
      other: (ids: Ids) => ["UPDATE users SET display_name = 'Changed meanwhile' WHERE id = $1", [ids.user]] as const,
      run: (ids: Ids) => users.setActive(db, ids.user, true).then((user) => user.active),
      outcome: true,
    },
    {
      call: 'users.updateProfile',
      other: (ids: Ids) => ["UPDATE users SET display_name = 'Changed meanwhile' WHERE id = $1", [ids.user]] as const,
      run: (ids: Ids) => users.updateProfile(db, ids.user, { displayName: 'Mine' }).then((user) => user.displayName),
      outcome: 'Mine',
    },
    {
      call: 'phrases.exclude',
      other: (ids: Ids) => ['INSERT INTO user_excluded_phrases (user_id, phrase_id) VALUES ($1, $2)', [ids.user, ids.phrase]] as const,
      run: (ids: Ids) => phrases.exclude(db, ids.user, ids.phrase),
      outcome: undefined,
    },
    {
      call: 'phrases.include',
      before: (ids: Ids) => phrases.exclude(db, ids.user, ids.phrase),
      other: (ids: Ids) => ['DELETE FROM user_excluded_phrases WHERE user_id = $1', [ids.user]] as const,
      run: (ids: Ids) => phrases.include(db, ids.user, ids.phrase),
      outcome: undefined,
    },
    {
      call: 'phrases.update',
      other: (ids: Ids) => ["UPDATE phrases SET phrase_text = 'Changed meanwhile' WHERE id = $1", [ids.phrase]] as const,
      run: (ids: Ids) => phrases.update(db, { phraseId: ids.phrase, adminId: ids.admin }, { text: 'Mine' }).then((phrase) => phrase.text),
      outcome: 'Mine',
    },
    {
      call: 'incidentTimers.update',
      other: (ids: Ids) => ["UPDATE incident_timers SET notes = 'Changed meanwhile' WHERE id = $1", [ids.timer]] as const,
      run: (ids: Ids) => incidentTimers.update(db, { id: ids.timer, userId: ids.user }, { notes: 'Mine' }).then((timer) => timer.notes),
      outcome: 'Mine',
    },
    {
      call: 'incidentTimers.remove',
      other: (ids: Ids) => ['DELETE FROM incident_timers WHERE id = $1', [ids.timer]] as const,
      run: (ids: Ids) => incidentTimers.remove(db, { id: ids.timer, userId: ids.user }),
      outcome: NotFoundError,
    },
  ])('$call meeting a row another transaction changed and committed meanwhile ends as at READ COMMITTED', async ({ before, other, run, outcome }) => {
    const admin = await newAdmin(db);
    const user = await newUser(db);
    const ids: Ids = {
      admin: admin.id,
      user: user.id,
      phrase: (await phrases.create(db, { text: `Mine ${user.id}`, createdBy: admin.id })).id,
      timer: (await incidentTimers.create(db, { userId: user.id })).id,
    };
    await before?.(ids);
    const [statement, parameters] = other(ids);
    const result = await withClient(database.url, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
      await client.query(statement, [...parameters]);
      const call = run(ids).then(
        (value: unknown) => value,
        (error: unknown) => error,
      );
      await eventually(async () => {
        // This database's waits only: other files' tests wait on the same server.
        const { rows } = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())',
        );
        return rows[0]!.n === 1;
      }, 'the call waits for the other transaction');
      await client.query('COMMIT');
      return call;
    });
    if (typeof outcome === 'function') expect(result).toBeInstanceOf(outcome);
    else expect(result).toEqual(outcome);
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
