import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { migrationRecordChecks, migrationRecordDefaults, migrationsTable } from '../../src/migrations/migration-storage.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

async function rows<T>(query: ReturnType<typeof sql<T>>): Promise<T[]> {
  return (await query.execute(testDb.db)).rows;
}

async function insertUser(email: string, slug: string) {
  return sql`INSERT INTO users (email, password_hash, display_name, slug)
             VALUES (${email}, 'hash', 'Someone', ${slug}) RETURNING id`.execute(testDb.db);
}

describe('uuid_generate_v7()', () => {
  it('sets version 7 and variant 10 and embeds the current Unix time in milliseconds', async () => {
    const before = Date.now();
    const ids = await rows<{ id: string }>(sql`SELECT uuid_generate_v7()::text AS id FROM generate_series(1, 100)`);
    const after = Date.now();

    for (const { id } of ids) {
      const hex = id.replace(/-/g, '');
      expect(hex[12]).toBe('7');
      expect(Number.parseInt(hex[16]!, 16) >> 2).toBe(0b10);
      const millis = Number.parseInt(hex.slice(0, 12), 16);
      expect(millis).toBeGreaterThanOrEqual(before - 1_000);
      expect(millis).toBeLessThanOrEqual(after + 1_000);
    }
    expect(new Set(ids.map((row) => row.id)).size).toBe(100);
  });

  it('gives ids that sort by creation time', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const [row] = await rows<{ id: string }>(sql`SELECT uuid_generate_v7()::text AS id`);
      ids.push(row!.id);
    }
    expect([...ids].sort()).toEqual(ids);
  });

  it('is the default of every single-column uuid primary key', async () => {
    const keys = await rows<{ table_name: string; column_default: string | null }>(sql`
      SELECT c.table_name, c.column_default
      FROM information_schema.table_constraints t
      JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name, table_name)
      JOIN information_schema.columns c ON c.table_schema = t.table_schema AND c.table_name = t.table_name
        AND c.column_name = k.column_name
      WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = 'public' AND c.data_type = 'uuid'
        AND (SELECT count(*) FROM information_schema.key_column_usage k2
             WHERE k2.constraint_name = t.constraint_name AND k2.table_name = t.table_name) = 1`);
    expect(keys.length).toBeGreaterThanOrEqual(6);
    for (const key of keys) expect(key, key.table_name).toMatchObject({ column_default: 'uuid_generate_v7()' });
  });
});

describe('updated_at', () => {
  it('has an update_updated_at_column() trigger on every table that has the column', async () => {
    const missing = await rows<{ table_name: string }>(sql`
      SELECT c.table_name
      FROM information_schema.columns c
      JOIN information_schema.tables t USING (table_schema, table_name)
      WHERE c.table_schema = 'public' AND c.column_name = 'updated_at' AND t.table_type = 'BASE TABLE'
        AND NOT EXISTS (
          SELECT 1 FROM pg_trigger tr
          JOIN pg_proc p ON p.oid = tr.tgfoid
          WHERE tr.tgrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
            AND p.proname = 'update_updated_at_column' AND NOT tr.tgisinternal
            AND tr.tgenabled <> 'D' AND (tr.tgtype & 16) <> 0 -- fires on UPDATE
        )`);
    expect(missing).toEqual([]);
  });

  it('is set by the database on every update while created_at stays', async () => {
    const { rows: created } = await insertUser('stamp@example.org', 'stamp');
    const id = (created[0] as { id: string }).id;
    // As text, at the database's microsecond precision: no sleep is needed to tell the two
    // apart, since the UPDATE's transaction starts after the INSERT's committed.
    const [before] = await rows<{ created_at: string; updated_at: string }>(
      sql`SELECT created_at::text, updated_at::text FROM users WHERE id = ${id}`,
    );
    await sql`UPDATE users SET display_name = 'Renamed' WHERE id = ${id}`.execute(testDb.db);
    const [after] = await rows<{ created_at: string; later: boolean }>(
      sql`SELECT created_at::text, updated_at > ${before!.updated_at}::timestamptz AS later FROM users WHERE id = ${id}`,
    );
    expect(after!.created_at).toBe(before!.created_at);
    expect(after!.later).toBe(true);
  });

  it('is a NOT NULL timestamptz defaulting to now(), as is created_at, on every table', async () => {
    const columns = await rows<{ table_name: string; column_name: string; data_type: string; is_nullable: string; column_default: string }>(sql`
      SELECT table_name, column_name, data_type, is_nullable, column_default
      FROM information_schema.columns
      WHERE table_schema = 'public' AND column_name IN ('created_at', 'updated_at') AND table_name <> 'schema_migrations'`);
    expect(columns.length).toBe(16);
    for (const column of columns) {
      expect(column, `${column.table_name}.${column.column_name}`).toMatchObject({
        data_type: 'timestamp with time zone',
        is_nullable: 'NO',
        column_default: 'now()',
      });
    }
  });
});

describe('integrity in the schema', () => {
  it('keeps email unique regardless of case', async () => {
    await insertUser('Case@Example.org', 'case-one');
    await expect(insertUser('case@example.ORG', 'case-two')).rejects.toMatchObject({
      sqlState: '23505',
      constraint: 'users_email_key',
    });
  });

  it('keeps slugs unique and well-formed', async () => {
    await insertUser('slug1@example.org', 'taken');
    await expect(insertUser('slug2@example.org', 'taken')).rejects.toMatchObject({ constraint: 'users_slug_key' });
    await expect(insertUser('slug3@example.org', 'Not A Slug')).rejects.toMatchObject({
      sqlState: '23514',
      constraint: 'users_slug_format',
    });
  });

  it('rejects blank text, overlong phrases and unknown statuses', async () => {
    await expect(sql`INSERT INTO phrases (phrase_text) VALUES ('   ')`.execute(testDb.db)).rejects.toMatchObject({
      constraint: 'phrases_phrase_text_length',
    });
    await expect(
      sql`INSERT INTO phrases (phrase_text) VALUES (${'x'.repeat(501)})`.execute(testDb.db),
    ).rejects.toMatchObject({ constraint: 'phrases_phrase_text_length' });
    const { rows: user } = await insertUser('status@example.org', 'status');
    await expect(
      sql`INSERT INTO phrase_suggestions (user_id, phrase_text, status, reviewed_at)
          VALUES (${(user[0] as { id: string }).id}, 'A fine phrase', 'maybe', now())`.execute(testDb.db),
    ).rejects.toMatchObject({ constraint: 'phrase_suggestions_status_values' });
  });

  it('seeds the user and admin roles and ten phrases owned by an inactive system user', async () => {
    expect((await rows<{ name: string }>(sql`SELECT name FROM roles ORDER BY name`)).map((r) => r.name)).toEqual([
      'admin',
      'user',
    ]);
    const [seed] = await rows<{ phrases: number; active: boolean }>(sql`
      SELECT count(p.id)::int AS phrases, u.active
      FROM users u JOIN phrases p ON p.created_by = u.id
      WHERE u.slug = 'system' GROUP BY u.active`);
    expect(seed).toEqual({ phrases: 10, active: false });
  });
});

describe('foreign keys', () => {
  it('each has an index that its own lookup uses, so deleting a referenced row reads no whole table', async () => {
    const keys = await rows<{ table: string; column: string; type: string; name: string }>(sql`
      SELECT c.conrelid::regclass::text AS table, a.attname AS column,
             format_type(a.atttypid, a.atttypmod) AS type, c.conname AS name
        FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
       WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace AND cardinality(c.conkey) = 1
       ORDER BY 1, 2`);
    expect(keys.length).toBeGreaterThanOrEqual(12);
    // The lookup PostgreSQL's foreign-key trigger runs when a referenced row goes (ON DELETE
    // CASCADE or SET NULL), planned as it plans it: generic, for any key. A partial index
    // serves it only when the predicate follows from \`col = $1\` (as \`col IS NOT NULL\` does).
    const unserved = await testDb.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      await sql`SET LOCAL plan_cache_mode = force_generic_plan`.execute(trx);
      const found: string[] = [];
      for (const key of keys) {
        await sql`PREPARE fk_lookup(${sql.raw(key.type)}) AS SELECT 1 FROM ONLY ${sql.raw(key.table)} WHERE ${sql.ref(key.column)} = $1`.execute(trx);
        const { rows: plan } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN EXECUTE fk_lookup(NULL)`.execute(trx);
        await sql`DEALLOCATE fk_lookup`.execute(trx);
        if (plan.some((line) => line['QUERY PLAN'].includes('Seq Scan'))) found.push(key.name);
      }
      return found;
    });
    expect(unserved).toEqual([]);
  });
});

describe('the migrations record', () => {
  // A restore keeps only these on a restored record (the owner runs them at every migration):
  // the definitions it compares with must be the ones the server gives back, on each major.
  it('has exactly the CHECKs and defaults that a restore accepts on it, as this server writes them', async () => {
    const checks = await rows<{ definition: string }>(sql`
      SELECT pg_get_constraintdef(k.oid) AS definition FROM pg_constraint k
       WHERE k.conrelid = ${`public.${migrationsTable}`}::regclass AND k.contype = 'c' ORDER BY 1`);
    expect(checks.map((check) => check.definition)).toEqual([...migrationRecordChecks].sort());
    const defaults = await rows<{ column: string; expression: string }>(sql`
      SELECT a.attname AS column, pg_get_expr(d.adbin, d.adrelid) AS expression
        FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
       WHERE d.adrelid = ${`public.${migrationsTable}`}::regclass`);
    expect(Object.fromEntries(defaults.map((each) => [each.column, each.expression]))).toEqual(migrationRecordDefaults);
  });
});
