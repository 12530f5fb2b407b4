import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseSync } from 'libpg-query';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir } from '../../../src/migrations/default-migrations-dir.js';
import { listMigrationFiles } from '../../../src/migrations/migration-files.js';
import { callsOfMigrations } from '../../../src/operations/restore/migration-calls.js';
import { functionsOfMigrations } from '../../../src/operations/restore/migration-functions.js';
import { workNoMigrationDoes } from '../../../src/operations/restore/unsafe-calls.js';

// What a restored backup's expressions may compute with: what the migrations' own SQL does.
describe('callsOfMigrations', () => {
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'kw-migration-calls-'));
  });
  afterAll(async () => rm(folder, { recursive: true, force: true }));

  const knownOf = async (migrationsDir: string) => {
    const files = await listMigrationFiles(migrationsDir);
    return callsOfMigrations(files, await functionsOfMigrations(files));
  };
  const statement = (sql: string) => (parseSync(sql) as { stmts: Array<{ stmt: unknown }> }).stmts[0]!.stmt;

  it("knows the package's migrations' calls and operators, their functions and the migrations record's own default", async () => {
    const known = await knownOf(defaultMigrationsDir());
    for (const name of ['btrim', 'lower', 'now', 'length', 'uuid_generate_v7', 'update_updated_at_column']) expect(known.functions).toContain(name);
    expect(known.operators).toContain('~');
    expect(known.forms.size).toBe(0);
  });

  // A restore with such a folder said only "Query cannot be empty" (the parser's words for no text).
  it('reads an empty migration file as one that calls nothing', async () => {
    const withText = async (text: string) => {
      const migrationsDir = await mkdtemp(path.join(folder, 'empty-'));
      await writeFile(path.join(migrationsDir, '20990101000000_empty.up.sql'), text);
      await writeFile(path.join(migrationsDir, '20990101000000_empty.down.sql'), text);
      return migrationsDir;
    };

    const known = await knownOf(await withText(''));

    expect(known).toEqual(await knownOf(await withText('-- nothing yet\n')));
  });

  it("reads what a migration's DO block runs as statements of its own", async () => {
    const migrationsDir = await mkdtemp(path.join(folder, 'do-'));
    await writeFile(
      path.join(migrationsDir, '20990101000000_guarded.up.sql'),
      "DO $$ BEGIN IF to_regclass('public.tags') IS NULL THEN CREATE TABLE tags (name text CHECK (char_length(name) * 2 < 50)); END IF; END $$;\n",
    );
    await writeFile(path.join(migrationsDir, '20990101000000_guarded.down.sql'), 'DROP TABLE tags;\n');

    const known = await knownOf(migrationsDir);

    expect(known.functions).toContain('char_length');
    expect(known.operators).toContain('*');
  });

  it('names the first computation of an expression that no migration makes: a call, an operator, an SQL/XML form; comparisons pass', async () => {
    const known = await knownOf(defaultMigrationsDir());
    const check = (expression: string) => workNoMigrationDoes(statement(`CREATE TABLE public.t (id integer, CONSTRAINT c CHECK (${expression}))`), known);

    expect(check('pg_catalog.factorial(id + 20000) IS NOT NULL')).toBe('calls factorial');
    expect(check('(7::numeric ^ (150000 + id)::numeric) IS NOT NULL')).toBe('applies the operator ^');
    expect(check("XMLPARSE(CONTENT '<a/>' || id::text) IS NOT NULL")).toBe('uses SQL/XML or SQL/JSON (XmlExpr)');
    expect(check("id BETWEEN 1 AND 10 AND id IN (1, 2) AND id <> 3 AND lower(id::text) ~ '^[0-9]+$'")).toBeUndefined();
  });
});
