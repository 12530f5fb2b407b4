import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listMigrationFiles } from '../../src/migrations/migration-files.js';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { migrate, migrateDown } from '../../src/migrations/migrator.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// Everything a migration can create in the public schema, rendered by PostgreSQL itself.
// Columns are listed by name within each table: a dropped and re-added column gets a new
// position number but is the same schema.
const catalogDump = `
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
         || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END AS item
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 AND NOT a.attisdropped
    AND c.relname <> 'schema_migrations'
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'schema_migrations'
  UNION ALL
  SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p
  WHERE p.pronamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'extension ' || extname FROM pg_extension WHERE extname <> 'plpgsql'
  UNION ALL
  SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = 'public'
  ORDER BY 1`;

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase({ empty: true });
});
afterAll(async () => database.drop());

async function dump(): Promise<string[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return (await client.query<{ item: string }>(catalogDump)).rows.map((row) => row.item);
  } finally {
    await client.end();
  }
}

describe('down migrations', () => {
  it('undo their up exactly: up → down → up leaves an identical schema, and down to 0 leaves nothing', async () => {
    await migrate({ databaseUrl: database.url });
    const migrated = await dump();
    expect(migrated.length).toBeGreaterThan(50);

    await migrateDown({ databaseUrl: database.url, to: 0 });
    const empty = await dump();
    expect(empty).toEqual([]);

    await migrate({ databaseUrl: database.url });
    expect(await dump()).toEqual(migrated);
  });

  it('undo each step exactly: down then up restores the schema of every step', async () => {
    await migrate({ databaseUrl: database.url });
    const files = await listMigrationFiles(defaultMigrationsDir());
    for (const { name } of files.reverse()) {
      const before = await dump();
      await migrateDown({ databaseUrl: database.url });
      expect(await dump()).not.toEqual(before);
      await migrate({ databaseUrl: database.url, to: name });
      expect(await dump(), name).toEqual(before);
      await migrateDown({ databaseUrl: database.url });
    }
    expect(await dump()).toEqual([]);
  });
});
