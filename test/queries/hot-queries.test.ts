import { type Kysely, sql } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb, poolOf } from '../../src/db/create-db.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// The SQL the hot paths send, kept in a reviewable file (as Immich does for its repositories):
// a change to a hot query shows up in review as a diff of __snapshots__/hot-queries.sql.
// Read where production's statements end up: the server's own list of the statements the
// connection prepared. Each section runs on a fresh single-connection `db` with the defaults
// (the direct path, named statements), so the list holds exactly what that section sent.
const testDb = useTestDatabase();

async function preparedBy(work: (db: Kysely<DB>) => Promise<unknown>): Promise<string> {
  // On the server itself, also in the pooler pass: this is what a direct connection sends.
  const db = createDb({ databaseUrl: testDb.directUrl, maxConnections: 1, minConnections: 0 });
  try {
    await work(db);
    // Read on the same (only) connection; this statement is unnamed, so it is not listed.
    const { rows } = await sql<{ statement: string }>`
      SELECT statement FROM pg_prepared_statements WHERE name LIKE 'kw\\_%' ORDER BY prepare_time, name`.execute(db);
    return rows.map((row) => row.statement).join(';\n');
  } finally {
    await db.destroy();
  }
}

describe('hot queries', () => {
  it('go out named at the default (auto) wherever that is safe: directly and through PgBouncer 1.24, not through 1.18', async () => {
    const pooled = inject('viaPooler');
    const losesThem = pooled && inject('pgBouncerVersion') === '1.18';
    expect(await poolOf(testDb.db).statementNaming()).toMatchObject({
      mode: 'auto',
      named: !losesThem,
      route: pooled ? 'pooler' : 'direct',
    });
  });

  it('send the SQL recorded in __snapshots__/hot-queries.sql, as named statements', async () => {
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    await incidentTimers.create(testDb.db, { userId: user.id });
    const suggestion = await phraseSuggestions.submit(testDb.db, user.id, 'A phrase worth approving');
    const login = await refreshTokens.issue(testDb.db, { userId: user.id });

    const sections: Array<[string, (db: Kysely<DB>) => Promise<unknown>]> = [
      ['users.findByEmail', (db) => users.findByEmail(db, user.email)],
      ['incidentTimers.latestPublicBySlug', (db) => incidentTimers.latestPublicBySlug(db, user.slug)],
      ['refreshTokens.issue', (db) => refreshTokens.issue(db, { userId: user.id })],
      ['refreshTokens.rotate', (db) => refreshTokens.rotate(db, login.token)],
      ['phrases.randomForUser', (db) => phrases.randomForUser(db, user.id)],
      ['phrases.listForUser (search)', (db) => phrases.listForUser(db, user.id, { search: 'keep' })],
      // Between Kysely's begin and commit (unnamed, so not listed).
      ['phraseSuggestions.approve', (db) => phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id })],
    ];
    let text = '';
    for (const [name, work] of sections) {
      const statements = await preparedBy(work);
      expect(statements, `${name} sent no named statement`).not.toBe('');
      text += `-- ${name}\n${statements};\n\n`;
    }

    await expect(text).toMatchFileSnapshot('./__snapshots__/hot-queries.sql');
  });
});
