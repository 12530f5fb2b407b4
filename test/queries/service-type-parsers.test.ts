import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import * as incidentTimers from '../../src/queries/incident-timers.js';
import * as refreshTokens from '../../src/queries/refresh-tokens.js';
import * as users from '../../src/queries/users.js';
import { newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

// pg's type parsers are process-wide, and services set their own: timestamps kept as the
// server's text, jsonb as text, int8 as BigInt. The library's results followed them (strings
// where its types say Date and DeviceInfo), and not even alike: a named statement keeps the
// parsers of its first run on a connection, so findById gave a Date and create a string.
describe('a service that sets its own pg type parsers', () => {
  const changed = [1184, 3802, 20, 16, 2950, 1082];
  const before = new Map(changed.map((oid) => [oid, pg.types.getTypeParser(oid, 'text')]));
  afterEach(() => {
    for (const [oid, parser] of before) pg.types.setTypeParser(oid, parser);
  });

  it("gets the library's results as its types say, before and after it changes them", async () => {
    const run = async () => {
      const user = await newUser(testDb.db);
      const found = await users.findById(testDb.db, user.id);
      const issued = await refreshTokens.issue(testDb.db, { userId: user.id, deviceInfo: { userAgent: 'test' } });
      const [session] = await refreshTokens.listSessions(testDb.db, user.id);
      const timer = await incidentTimers.create(testDb.db, { userId: user.id });
      return [user.id, user.createdAt, found?.createdAt, issued.expiresAt, session?.createdAt, timer.resetAt, session?.deviceInfo, user.active];
    };
    const expected = [expect.stringMatching(/^[0-9a-f-]{36}$/), expect.any(Date), expect.any(Date), expect.any(Date), expect.any(Date), expect.any(Date), { userAgent: 'test' }, true];
    // The hot statements named (where the pool names them) and their shapes made first.
    expect(await run()).toEqual(expected);

    pg.types.setTypeParser(1184, (text: string) => text);
    pg.types.setTypeParser(3802, (text: string) => text);
    pg.types.setTypeParser(20, (text: string) => BigInt(text));
    pg.types.setTypeParser(16, (text: string) => text);
    pg.types.setTypeParser(2950, (text: string) => text.toUpperCase());

    pg.types.setTypeParser(1082, (text: string) => `date ${text}`);

    const after = await run();
    expect(after).toEqual(expected);
    // A type the library never returns keeps the service's parser on db too.
    const { rows } = await sql<{ day: unknown }>`SELECT '2020-01-02'::date AS day`.execute(testDb.db);
    expect(rows).toEqual([{ day: 'date 2020-01-02' }]);
  });
});
