import { sql } from 'kysely';
import { describe, expect, it, inject } from 'vitest';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

// The first migration defines uuid_generate_v7() by what the server offers; each project runs
// on another major so that every branch runs somewhere (see vitest.config.ts).
describe('uuid_generate_v7() by PostgreSQL major', () => {
  it('runs on the major its project names (17 unless pg15 or pg18)', async () => {
    const { rows } = await sql<{ major: number }>`SELECT current_setting('server_version_num')::int / 10000 AS major`.execute(testDb.db);
    // A server of the operator's own (TEST_DATABASE_URL) is any supported major; the run's own are the project's.
    if (inject('serverKind') === 'env') expect(rows[0]!.major).toBeGreaterThanOrEqual(15);
    else expect(rows[0]!.major).toBe(inject('postgresMajor') ?? 17);
  });

  it('is the pg_uuidv7 extension where available, else the native uuidv7() on 18+, else PL/pgSQL', async () => {
    const { rows } = await sql<{ version: number; extension: boolean; language: string | null; body: string }>`
      SELECT current_setting('server_version_num')::int AS version,
             EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_uuidv7') AS extension,
             l.lanname AS language, p.prosrc AS body
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.proname = 'uuid_generate_v7' AND p.pronamespace = 'public'::regnamespace`.execute(testDb.db);
    const fn = rows[0]!;
    if (fn.extension) expect(fn.language).toBe('c');
    else if (fn.version >= 180000) expect(fn).toMatchObject({ language: 'sql', body: 'SELECT uuidv7()' });
    else expect(fn.language).toBe('plpgsql');
  });
});
