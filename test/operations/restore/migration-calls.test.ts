import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseSync } from 'libpg-query';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultMigrationsDir } from '../../../src/migrations/default-migrations-dir.js';
import { listMigrationFiles } from '../../../src/migrations/migration-files.js';
import { callsOfMigrations } from '../../../src/operations/restore/migration-calls.js';
import { functionsOfMigrations } from '../../../src/operations/restore/migration-functions.js';
import { codeBeyondPublic, workNoMigrationDoes } from '../../../src/operations/restore/unsafe-calls.js';

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

// The names the other checks compare are the last part alone: reporting.lower passed for lower,
// and another schema's code ran as the restoring role while the rows loaded (backup audit).
describe('codeBeyondPublic', () => {
  const statement = (sql: string) => (parseSync(sql) as { stmts: Array<{ stmt: unknown }> }).stmts[0]!.stmt;

  it.for([
    ['function reporting.lower', 'ALTER TABLE public.roles ADD CONSTRAINT zz CHECK ((reporting.lower(name) IS NOT NULL));'],
    ['operator reporting.=', 'ALTER TABLE public.roles ADD CONSTRAINT zz CHECK ((name OPERATOR(reporting.=) name));'],
    ['trigger function reporting.audit', 'CREATE TRIGGER zz BEFORE INSERT ON public.roles FOR EACH ROW EXECUTE FUNCTION reporting.audit();'],
    ['type reporting.label', 'CREATE TABLE public.notes (body reporting.label);'],
    ['type reporting.label', "ALTER TABLE public.roles ADD CONSTRAINT zz CHECK (((name)::reporting.label IS NOT NULL));"],
  ])('names the %s that a statement uses', ([named, sql]) => {
    expect(codeBeyondPublic(statement(sql!))).toBe(named);
  });

  it("passes what pg_dump writes: PostgreSQL's own and public's", () => {
    for (const sql of [
      "CREATE TABLE public.users (id uuid DEFAULT public.uuid_generate_v7() NOT NULL, email character varying(254), n pg_catalog.int4, CONSTRAINT c CHECK ((pg_catalog.lower(email) OPERATOR(pg_catalog.=) email)));",
      'CREATE TRIGGER t BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();',
      'CREATE INDEX i ON public.phrases USING gin (phrase_text public.gin_trgm_ops);',
      'ALTER TABLE ONLY public.visits ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES auth.users(id);',
      "SELECT pg_catalog.set_config('search_path', '', false);",
    ]) {
      expect(codeBeyondPublic(statement(sql))).toBeUndefined();
    }
  });
});
