import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// The SQL the hot paths send, kept in a reviewable file (as Immich does for its repositories):
// a change to a hot query shows up in review as a diff of __snapshots__/hot-queries.sql.
const testDb = useTestDatabase();
let logged: string[] = [];
let db: Kysely<DB>;

beforeAll(() => {
  db = createDb(
    { databaseUrl: testDb.url, minConnections: 0 },
    { log: (event) => void (event.level === 'query' && logged.push(event.query.sql)) },
  );
});
afterAll(async () => db.destroy());

async function sqlOf(work: () => Promise<unknown>): Promise<string> {
  logged = [];
  await work();
  return logged.join(';\n');
}

describe('hot queries', () => {
  it('send the SQL recorded in __snapshots__/hot-queries.sql', async () => {
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    await incidentTimers.create(testDb.db, { userId: user.id });
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, 'A phrase worth approving');
    const login = await refreshTokens.issue(testDb.db, { userId: user.id });

    const sections: Array<[string, () => Promise<unknown>]> = [
      ['users.findByEmail', () => users.findByEmail(db, user.email)],
      ['incidentTimers.latestPublicBySlug', () => incidentTimers.latestPublicBySlug(db, user.slug)],
      ['refreshTokens.issue', () => refreshTokens.issue(db, { userId: user.id })],
      ['refreshTokens.rotate', () => refreshTokens.rotate(db, login.token)],
      ['phrases.randomForUser', () => phrases.randomForUser(db, user.id)],
      ['phrases.listForUser (search)', () => phrases.listForUser(db, user.id, { search: 'keep' })],
      ['phraseSuggestions.approve', () => phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id })],
    ];
    let text = '';
    for (const [name, work] of sections) text += `-- ${name}\n${await sqlOf(work)};\n\n`;

    await expect(text).toMatchFileSnapshot('./__snapshots__/hot-queries.sql');
  });
});
