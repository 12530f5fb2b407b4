import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { incidentTimers, migrate, migrationStatus, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { pgBouncerPath, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { everyTable } from '../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// pg_dump sets search_path to '' for its session; behind a transaction-mode pooler that session
// is then handed to the service (issue 21). A schema that shadows the library's tables is the
// other half of CVE-2018-1058. Every statement of the library names its schema, so neither may
// break nor redirect it.

// Decoys that would accept what the library writes (same columns, defaults, keys and checks),
// so a redirected statement succeeds quietly instead of failing; and a function that is called
// only if a statement names uuid_generate_v7() without its schema.
const decoySql = [
  'CREATE SCHEMA decoy',
  ...everyTable.map((table) => `CREATE TABLE decoy.${table} (LIKE public.${table} INCLUDING ALL)`),
  "INSERT INTO decoy.roles SELECT * FROM public.roles",
  `CREATE FUNCTION decoy.uuid_generate_v7() RETURNS uuid LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'decoy.uuid_generate_v7 called'; END $$`,
].join(';\n');

const searchPaths = [
  { name: "''", value: '' },
  { name: 'a schema with decoy tables', value: 'decoy' },
];

async function decoyRows(url: string): Promise<Record<string, number>> {
  return withClient(url, async (client) => {
    const counts: Record<string, number> = {};
    for (const table of everyTable) {
      if (table === 'roles') continue; // seeded like public.roles
      counts[table] = (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM decoy.${table}`)).rows[0]!.n;
    }
    return counts;
  });
}

const noDecoyRows = Object.fromEntries(everyTable.filter((table) => table !== 'roles').map((table) => [table, 0]));

/** Every query function of the public API, each checking that it read or wrote the real rows. */
async function useEveryQuery(db: Kysely<DB>): Promise<string> {
  const id = randomBytes(5).toString('hex');
  const newUser = (name: string) =>
    users.create(db, { email: `${name}-${id}@example.org`, passwordHash: 'hash', displayName: `${name} ${id}`, slug: `${name}-${id}` });
  const admin = await newUser('admin');
  await users.grantRole(db, admin.id, 'admin');
  const user = await newUser('user');
  expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
  expect(await users.findByEmail(db, user.email)).toMatchObject({ id: user.id });
  expect(await users.findBySlug(db, user.slug)).toMatchObject({ id: user.id });
  expect(await users.updateProfile(db, user.id, { displayName: `Renamed ${id}` })).toMatchObject({ displayName: `Renamed ${id}` });
  expect(await users.isSlugAvailable(db, user.slug)).toBe(false);
  expect(await users.getRoles(db, admin.id)).toEqual(['admin', 'user']);

  const timer = await incidentTimers.create(db, { userId: user.id, notes: 'first' });
  const updated = await incidentTimers.update(db, { id: timer.id, userId: user.id }, { notes: 'second' });
  expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(timer.updatedAt.getTime()); // the updated_at trigger ran
  expect((await incidentTimers.listForUser(db, user.id)).total).toBe(1);
  expect(await incidentTimers.latestPublicBySlug(db, user.slug)).toMatchObject({ timer: { id: timer.id, notes: 'second' } });

  const text = `Decoys never win ${id}.`;
  const phrase = await phrases.create(db, { text, createdBy: admin.id });
  expect(await phrases.update(db, { phraseId: phrase.id, adminId: admin.id }, { active: true })).toMatchObject({ id: phrase.id });
  expect(await phrases.randomForUser(db, user.id)).not.toBeNull();
  expect(await phrases.randomForSlug(db, user.slug)).not.toBeNull();
  expect((await phrases.listForUser(db, user.id, { search: id })).items.map((p) => p.id)).toEqual([phrase.id]);
  await phrases.exclude(db, user.id, phrase.id);
  expect((await phrases.listExcluded(db, user.id)).items.map((p) => p.id)).toEqual([phrase.id]);
  await phrases.include(db, user.id, phrase.id);
  expect((await phrases.list(db, admin.id, { search: id })).total).toBe(1);
  expect((await phrases.count(db)).total).toBeGreaterThan(10);

  const suggestion = await phraseSuggestions.submit(db, user.id, `Suggested ${id}.`);
  expect((await phraseSuggestions.listForUser(db, user.id)).items.map((s) => s.id)).toEqual([suggestion.id]);
  expect((await phraseSuggestions.listPending(db, admin.id)).items.map((s) => s.id)).toContain(suggestion.id);
  expect(await phraseSuggestions.countPending(db)).toBeGreaterThan(0);
  expect(await phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id })).toMatchObject({ text: `Suggested ${id}.` });
  const rejected = await phraseSuggestions.submit(db, user.id, `Rejected ${id}.`);
  expect(await phraseSuggestions.reject(db, { suggestionId: rejected.id, adminId: admin.id })).toMatchObject({ status: 'rejected' });

  const issued = await refreshTokens.issue(db, { userId: user.id, deviceInfo: { userAgent: 'decoy test' } });
  const rotated = await refreshTokens.rotate(db, issued.token);
  expect(rotated.familyId).toBe(issued.familyId);
  expect(await refreshTokens.listSessions(db, user.id)).toHaveLength(1);
  expect(await refreshTokens.revoke(db, rotated.token)).toBe(true);
  await refreshTokens.issue(db, { userId: user.id });
  expect(await refreshTokens.revokeAllForUser(db, user.id)).toBe(1);
  await refreshTokens.issue(db, { userId: user.id });
  expect(await users.updatePassword(db, user.id, 'new hash')).toBe(1);
  await refreshTokens.purgeExpired(db);

  await incidentTimers.remove(db, { id: timer.id, userId: user.id });
  expect(await users.revokeRole(db, admin.id, 'admin')).toBe(true);
  expect(await users.setActive(db, user.id, false)).toMatchObject({ active: false });
  return user.id;
}

describe.skipIf(!toolsAvailable([pgBouncerPath], 'the search_path test'))('every statement of the library names its schema', () => {
  let database: TestDatabase;
  // One pooler per search_path, each of one server connection. Its connect_query leaves the
  // search_path on every server connection it opens, as pg_dump leaves it on the one it used:
  // a connection PgBouncer replaces (a client cut off mid-request closes it) carries the trap too.
  const poolers = new Map<string, PgBouncer>();

  beforeAll(async () => {
    database = await createTestDatabase();
    for (const { value } of searchPaths) {
      poolers.set(
        value,
        await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 1, connectQuery: `SELECT pg_catalog.set_config('search_path', '${value}', false)` }),
      );
    }
    await withClient(database.url, (client) => client.query(decoySql));
  });
  afterAll(async () => {
    for (const pooler of poolers.values()) await pooler.stop();
    await database?.drop();
  });

  // What the next client of the one server connection will see, read through the pooler.
  const pooledSession = (pooler: PgBouncer) =>
    withClient(pooler.url(database.url), async (client) => {
      const { rows } = await client.query<{ search_path: string }>('SHOW search_path');
      const unqualified = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users').then(
        (result) => `reads ${result.rows[0]!.n} users`,
        (error: { code?: string }) => `fails with ${error.code}`,
      );
      return { searchPath: rows[0]!.search_path, unqualified };
    });

  for (const searchPath of searchPaths) {
    it(`reads and writes public through a pooled server connection whose search_path pg_dump-style was set to ${searchPath.name}`, async () => {
      const pooler = poolers.get(searchPath.value)!;
      // The trap is set (by the pooler's connect_query, on every server connection it opens):
      // an unqualified statement on that connection misses public.users.
      const poisoned = { searchPath: searchPath.value, unqualified: searchPath.value === '' ? 'fails with 42P01' : 'reads 0 users' };
      expect(await pooledSession(pooler)).toEqual(poisoned);

      // Unnamed, as `auto` ends up behind a pooler of one server connection (its probe cannot
      // get a second one and gives up after 5 s), without that wait.
      const db = createDb({ databaseUrl: pooler.url(database.url), minConnections: 0, maxConnections: 4, preparedStatements: 'off' });
      try {
        const userId = await useEveryQuery(db);
        const found = await withClient(database.url, (client) => client.query('SELECT active FROM public.users WHERE id = $1', [userId]));
        expect(found.rows).toEqual([{ active: false }]);
      } finally {
        await db.destroy();
      }
      expect(await pooledSession(pooler)).toEqual(poisoned); // every call above ran on the poisoned session
      expect(await decoyRows(database.url)).toEqual(noDecoyRows);
    });
  }

  for (const searchPath of searchPaths) {
    it(`runs named statements and reads the migrator's bookkeeping from public when the database's search_path is ${searchPath.name}`, async () => {
      await withClient(database.url, (client) =>
        client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET search_path = ${client.escapeLiteral(searchPath.value)}`),
      );
      try {
        const session = await withClient(database.url, async (client) => (await client.query<{ search_path: string }>('SHOW search_path')).rows[0]);
        expect(session?.search_path).toBe(searchPath.value === '' ? '""' : searchPath.value);

        const db = createDb({ databaseUrl: database.url, minConnections: 0, preparedStatements: 'on' });
        try {
          await useEveryQuery(db);
        } finally {
          await db.destroy();
        }
        const states = await migrationStatus({ databaseUrl: database.url });
        expect(states.length).toBeGreaterThan(0);
        expect(states.filter((state) => state.state !== 'applied')).toEqual([]);
        // Migrations would create their tables where the library never looks: refused, naming the setting.
        await expect(migrate({ databaseUrl: database.url })).rejects.toMatchObject({ code: 'CONFIG_INVALID', variable: 'search_path' });
        expect(await decoyRows(database.url)).toEqual(noDecoyRows);
      } finally {
        await withClient(database.url, (client) => client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} RESET search_path`));
      }
    });
  }
});
