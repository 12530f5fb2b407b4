import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { RestoreError } from '../../../src/errors.js';
import { restoreDatabase } from '../../../src/operations/restore/restore.js';
import { migrationsDefining } from '../../support/migration-sandbox.js';
import { migrationsRecordSql, withMigrationsRecord } from '../../support/migrations-record.js';
import { runCli } from '../../support/run-cli.js';
import { execute, fillEveryTable, tableContents } from '../../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import pg from 'pg';
import { withClient } from '../../../src/db/with-client.js';
import { ensureAppRole } from '../../../src/provisioning/app-role.js';
import { freePort } from '../../../src/embedded/free-port.js';

const key = 'Zq7Rb2Xk9PmT4Lw8Hc1Vn6Jd3Fs5Ga0YeUoIiKlMnBvCxAzQwErTyUiOpAsDfGh';

// What a pg_dump 18.3 --format=plain --no-owner writes (as the wasm fallback of issue 12
// produces it), shortened to one table: \restrict/\unrestrict with their key, the
// settings of pg_dump 17+, a COPY with tabs, backslash escapes, NULLs and non-ASCII data.
const pgDump18Script = `--
-- PostgreSQL database dump
--

\\restrict ${key}

-- Dumped from database version 17.6
-- Dumped by pg_dump version 18.3

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE FUNCTION public.shout(t text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $_$ SELECT upper($1) || '\\! not a command; -- nor a comment' $_$;

CREATE FUNCTION public.twice(n integer) RETURNS integer
    LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
 SELECT (n * 2);
END;

CREATE TABLE public.notes (
    id integer NOT NULL,
    body text,
    "odd;name" text DEFAULT 'semi;colon \\ back''slash'::text
);

COMMENT ON TABLE public.notes IS 'Notes; with \\! inside a string';

--
-- Data for Name: notes; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.notes (id, body, "odd;name") FROM stdin;
1	tab\\there, backslash \\\\ and \\! at home	x
2	\\N	Zoë ✍️ 李
3	\\\\! not a command either	;
\\.


ALTER TABLE ONLY public.notes
    ADD CONSTRAINT notes_pkey PRIMARY KEY (id);

--
-- PostgreSQL database dump complete
--

\\unrestrict ${key}

`;

const gz = (text: string) => gzipSync(Buffer.from(text));

/** Restores a crafted gzip-compressed SQL backup that must fail, and returns what it threw. */
const restoreFailure = (
  databaseUrl: string,
  file: string,
  options: { lockTimeoutMs?: number; statementTimeoutMs?: number; migrationsDir?: string } = {},
): Promise<unknown> =>
  restoreDatabase({ databaseUrl, backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' }, ...options }).catch((e: unknown) => e);

// pg_dump's header and trailer, which the attacks of issue 17 wrap themselves in.
const dumpAround = (sql: string) =>
  `--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n` +
  `SET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n${sql}\n` +
  '--\n-- PostgreSQL database dump complete\n--\n\n';

describe('restoring plain SQL: never through psql, only what pg_dump writes', () => {
  let workDir: string;
  let database: TestDatabase;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-restore-sql-'));
    // The server's OS account may pass through (not list) it, to reach the markers folders.
    await chmod(workDir, 0o711);
    database = await createTestDatabase();
    await fillEveryTable(database.url, { users: 20, tag: 'kept' });
  });
  afterAll(async () => {
    await database?.drop();
    await rm(workDir, { recursive: true, force: true });
  });

  // With the migrations record a backup has, unless `record` is false: the record's table picks
  // up the owner's default privileges as the backup's own tables do.
  async function crafted(name: string, sql: string, { record = true } = {}): Promise<string> {
    const file = path.join(workDir, name);
    await writeFile(file, gz(record ? withMigrationsRecord(sql) : sql));
    return file;
  }

  // The server runs as an OS account of its own: a folder it may write to, so that a program
  // that ran would leave its file behind.
  async function writableByServer(): Promise<string> {
    const folder = path.join(workDir, `markers-${randomBytes(4).toString('hex')}`);
    await mkdir(folder);
    await chmod(folder, 0o777);
    return folder;
  }

  const roleExists = (role: string) =>
    withClient(database.url, async (client) => (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 1);

  // Rows 1 to 4 of issue 17's table, restored as the default set-up restores (the owner's
  // URL is the superuser): each is refused before the database is touched.
  it.each([
    [
      'a DO block that runs COPY … TO PROGRAM (row 1)',
      (marker: string) => `DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch ${marker}'''; END $$;`,
      "line 10 of the backup's SQL: DO runs code; pg_dump never writes it",
    ],
    [
      'CREATE ROLE … SUPERUSER (row 2)',
      (_marker: string, role: string) => `CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'owned';`,
      "line 10 of the backup's SQL: CREATE ROLE makes a role of the whole server, which would outlive the restore",
    ],
    [
      'a table called stdin and COPY (SELECT 1 FROM stdin) TO PROGRAM (row 3)',
      (marker: string) => `CREATE TABLE public.stdin(x int); COPY (SELECT 1 FROM stdin) TO PROGRAM 'touch ${marker}';\n1\n\\.`,
      "line 10 of the backup's SQL: COPY to or from a program runs that program on the database server's machine",
    ],
    [
      'a PL/pgSQL function that runs COPY … TO PROGRAM, then a SELECT of it (row 4)',
      (marker: string) =>
        `CREATE FUNCTION public.pwn() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch ${marker}'''; END $$;\n` +
        'SELECT public.pwn();',
      "line 11 of the backup's SQL: a SELECT other than pg_dump's",
    ],
  ])('db:restore refuses %s: no program runs, no role is created, the database is unchanged', async (_attack, attack, message) => {
    const marker = path.join(await writableByServer(), 'pwned');
    const role = `kw_evil_${randomBytes(4).toString('hex')}`;
    const file = await crafted('attack.sql.gz', dumpAround(attack(marker, role)));
    // A database of its own: an attack that got through must not spoil the others' checks.
    const target = await createTestDatabase();
    onTestFinished(() => target.drop());
    const before = await tableContents(target.url);

    // As the default set-up runs it: the superuser's URL, the owner's password to restore as it.
    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.url, DB_OWNER_PASSWORD: inject('ownerPassword') });

    expect(existsSync(marker)).toBe(false);
    expect(await roleExists(role)).toBe(false);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`refusing to restore attack.sql.gz: it holds what a restore refuses: ${message}`);
    expect(result.stderr).toContain('the database was not touched');
    expect(await tableContents(target.url)).toEqual(before);
  });

  // A restore stopped while its host and connection stay up (Ctrl-Z, a paused VM) held every
  // table of public for as long as it was stopped: between the backup's statements its
  // transaction may wait idle no longer than for the backup's next statement (stallTimeoutMs)
  // and a round trip, and the backup's own SET, skipped, cannot lift that.
  it("runs the backup's statements with an idle limit of stallTimeoutMs and a round trip, which the backup's own SET does not lift", async () => {
    const target = await createTestDatabase();
    onTestFinished(() => target.drop());
    const file = await crafted(
      'idle-limit.sql.gz',
      dumpAround(
        'SET idle_in_transaction_session_timeout = 0;\n\n' +
          "CREATE TABLE public.seen (n integer, idle text DEFAULT pg_catalog.current_setting('idle_in_transaction_session_timeout'::text));\n\n" +
          'COPY public.seen (n) FROM stdin;\n1\n\\.\n\n',
      ),
    );

    // The backup's default reads a setting, which none of the package's migrations does: a
    // service's own migration that does lets the restore run it.
    const migrationsDir = await migrationsDefining("SELECT pg_catalog.current_setting('idle_in_transaction_session_timeout');\n");
    await restoreDatabase({ databaseUrl: target.ownerUrl, backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' }, stallTimeoutMs: 5_000, migrationsDir });

    const seen = await withClient(target.url, async (client) => (await client.query('SELECT n, idle FROM public.seen')).rows);
    expect(seen).toEqual([{ n: 1, idle: '15s' }]);
  });

  // The migrations record is the migrator's, not a migration's: a service whose own migrations
  // never call now() restored its backups only until the check learnt the record's default.
  it("takes the migrations record's own default, now(), from a service's migrations that never call it", async () => {
    const target = await createTestDatabase({ empty: true });
    onTestFinished(() => target.drop());
    const migrationsDir = await mkdtemp(path.join(workDir, 'own-migrations-'));
    const itemsSql = "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL CHECK (name <> ''));\n";
    await writeFile(path.join(migrationsDir, '20990101000000_items.up.sql'), itemsSql);
    await writeFile(path.join(migrationsDir, '20990101000000_items.down.sql'), 'DROP TABLE items;\n');
    const file = await crafted(
      'own-migrations.sql.gz',
      dumpAround(
        "CREATE TABLE public.items (\n    id bigint NOT NULL,\n    name text NOT NULL,\n    CONSTRAINT items_name_check CHECK ((name <> ''::text))\n);\n\n" +
          migrationsRecordSql([{ name: '20990101000000_items', upSql: itemsSql }]) +
          'COPY public.items (id, name) FROM stdin;\n1\tone\n\\.\n\n',
      ),
    );

    await restoreDatabase({ databaseUrl: target.ownerUrl, backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' }, migrationsDir });

    const items = await withClient(target.url, async (client) => (await client.query('SELECT id::int, name FROM public.items')).rows);
    expect(items).toEqual([{ id: 1, name: 'one' }]);
  });

  // Past the check (a file swapped after it, or a caller that skips it): the restore itself
  // refuses, after statements already ran, and rolls them back.
  it('refuses during the restore too, rolling back what ran before it', async () => {
    const marker = path.join(await writableByServer(), 'pwned-late');
    const file = await crafted(
      'late.sql.gz',
      'CREATE TABLE public.planted (id integer);\nCOPY public.planted (id) FROM stdin;\n1\n\\.\n' +
        `DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch ${marker}'''; END $$;\n`,
    );
    const before = await tableContents(database.url);

    const error = await restoreFailure(database.ownerUrl, file);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("line 5 of the backup's SQL: DO runs code");
    expect((error as Error).message).toContain('the restore was rolled back; the database was not changed');
    expect(existsSync(marker)).toBe(false);
    expect(await tableContents(database.url)).toEqual(before);
    await expect(execute(database.url, 'SELECT * FROM planted')).rejects.toThrow('does not exist');
  });

  // The other checks compare the last part of a name alone: reporting.lower passed for lower,
  // ran as the owner for each row (here it advances a sequence of its schema, which no rollback
  // resets), and only the check before COMMIT refused it (backup audit).
  it("refuses another schema's code before it runs, though its name is PostgreSQL's", async ({ onTestFinished: finished }) => {
    const target = await createTestDatabase();
    finished(() => target.drop());
    await execute(
      target.url,
      'CREATE SCHEMA reporting; CREATE SEQUENCE reporting.witness; GRANT USAGE ON SCHEMA reporting TO PUBLIC; GRANT USAGE ON SEQUENCE reporting.witness TO PUBLIC; ' +
        "CREATE FUNCTION reporting.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT pg_catalog.nextval('reporting.witness')::text $$;",
    );
    const file = await crafted(
      'beyond.sql.gz',
      'CREATE TABLE public.planted (name text CONSTRAINT planted_name CHECK ((reporting.lower(name) IS NOT NULL)));\nCOPY public.planted (name) FROM stdin;\none\ntwo\n\\.\n',
    );

    const error = await restoreFailure(target.ownerUrl, file);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(
      "the function reporting.lower, code outside the public schema, which would run as the restoring role while the rows load: refused before it could run, at line",
    );
    const witness = await withClient(target.url, async (client) => (await client.query<{ called: boolean }>('SELECT is_called AS called FROM reporting.witness')).rows[0]);
    expect(witness).toEqual({ called: false });
  });

  // A name of the backup's choosing, with a line feed, in the server's message (and in a
  // refusal of the check): it started a line of its own, a forged success among the refusal's.
  it('writes a line feed in a name the server or the check quotes as \\n, starting no line of the backup\'s choosing', async () => {
    const forged = "x\nRestored prod.dump (9 tables) into 'kw' on localhost.";
    // Quoted as SQL quotes a name: the line feed stays one.
    const create = `CREATE TABLE public."${forged}" (a integer);\n`;
    const file = await crafted('forged-line.sql.gz', dumpAround(`${create}${create}`));

    const unvacuumed = await crafted('forged-catalog-line.sql.gz', dumpAround(`CREATE TABLE public."${forged}" (a integer) WITH (autovacuum_enabled = false);\n`));

    const error = await restoreFailure(database.ownerUrl, file);
    const refused = await restoreFailure(database.ownerUrl, unvacuumed);

    expect((error as Error).message).toContain('ERROR: relation "x\\nRestored prod.dump (9 tables) into \'kw\' on localhost." already exists (SQLSTATE 42P07)');
    expect((error as Error).message).not.toMatch(/^Restored/m);
    expect((refused as Error).message).toContain('public."x\\nRestored prod.dump (9 tables) into \'kw\' on localhost.", whose autovacuum the backup turns off');
    expect((refused as Error).message).not.toMatch(/^Restored/m);
  });

  it("rolls back a restore whose COPY row the server refuses, naming the line but not the row's value", async () => {
    const file = await crafted(
      'bad-row.sql.gz',
      'CREATE TABLE public.planted (id integer);\nCOPY public.planted (id) FROM stdin;\n1\nkenn@example.org\n\\.\nCREATE TABLE public.later (id integer);\n',
    );
    const before = await tableContents(database.url);

    const error = await restoreFailure(database.ownerUrl, file);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe(
      'restore failed and was rolled back; the database was not changed:\n' +
        `ERROR: invalid input syntax for type integer: "(value withheld)" (SQLSTATE 22P02) at line 2 of the backup's SQL`,
    );
    expect(await tableContents(database.url)).toEqual(before);
    await expect(execute(database.url, 'SELECT * FROM planted')).rejects.toThrow('does not exist');

    // A value with quotes of its own (JSON in the wrong column) shows none of itself either.
    const quoted = await crafted(
      'quoted-row.sql.gz',
      'CREATE TABLE public.planted (at timestamptz);\nCOPY public.planted (at) FROM stdin;\n{"email":"kenn@example.org","password_hash":"$argon2id$v=19$c2FsdA"}\n\\.\n',
    );
    expect(((await restoreFailure(database.ownerUrl, quoted)) as Error).message).toBe(
      'restore failed and was rolled back; the database was not changed:\n' +
        `ERROR: invalid input syntax for type timestamp with time zone: "(value withheld)" (SQLSTATE 22007) at line 2 of the backup's SQL`,
    );
  });

  // The check refuses it first (verifySqlDump), but a caller may restore without it. A REVOKE
  // from a role the restore grants nothing to is what it leaves out: that makes nothing either.
  it.each([
    ["pg_dump's session settings alone", ''],
    ['the settings and what the restore leaves out', 'REVOKE ALL ON TABLE public.users FROM kw_elsewhere;'],
  ])('refuses a .sql.gz that makes nothing (%s), and leaves the database as it was', async (_what, sql) => {
    const file = await crafted('makes-nothing.sql.gz', dumpAround(sql));
    const before = await tableContents(database.url);

    const error = await restoreFailure(database.ownerUrl, file);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("it holds no SQL statements beyond pg_dump's session settings");
    expect(await tableContents(database.url)).toEqual(before);
  });

  // A dump of a pg_dump older than 15.14, 16.10 or 17.6 (no \restrict, whose missing
  // \unrestrict would give the cut away) cut short right after its data: every statement
  // vets clean, and what came last (here the primary key; in a real dump every index,
  // constraint, trigger and sequence value) would be missing.
  const cutAfterData = pgDump18Script.replace(`\\restrict ${key}\n`, '').split('ALTER TABLE ONLY public.notes')[0]!;
  // Its functions are a service's, which its migrations define: shout() as written. No
  // migration's function can be twice(), written BEGIN ATOMIC: PostgreSQL keeps that body
  // parsed, not as its text, so the restore cannot tell it is a migration's.
  const shout = "CREATE FUNCTION public.shout(t text) RETURNS text\n    LANGUAGE sql IMMUTABLE\n    AS $_$ SELECT upper($1) || '\\! not a command; -- nor a comment' $_$;\n";
  const twice = 'CREATE FUNCTION public.twice(n integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\nBEGIN ATOMIC\n SELECT (n * 2);\nEND;\n';

  it("refuses a .sql.gz cut short between two statements, lacking pg_dump's completion trailer, before touching the database", async () => {
    const target = await createTestDatabase();
    try {
      const file = await crafted('cut.sql.gz', cutAfterData);
      const before = await tableContents(target.url);

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain("refusing to restore cut.sql.gz: it lacks pg_dump's completion trailer: the dump is cut short; the database was not touched");
      expect(await tableContents(target.url)).toEqual(before);
    } finally {
      await target.drop();
    }
  });

  it("refuses it during the restore too, before its COMMIT, rolling back what ran", async () => {
    const file = await crafted('cut-late.sql.gz', cutAfterData.replace(twice, ''));
    const before = await tableContents(database.url);

    const error = await restoreFailure(database.ownerUrl, file, { migrationsDir: await migrationsDefining(shout) });

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe(
      `refusing to restore ${file}: it lacks pg_dump's completion trailer: the dump is cut short\nthe restore was rolled back; the database was not changed`,
    );
    expect(await tableContents(database.url)).toEqual(before);
    await expect(execute(database.url, 'SELECT * FROM notes')).rejects.toThrow('does not exist');
  });

  it('says it could not connect, and that nothing was touched, when the server does not answer', async () => {
    const file = await crafted('unreachable.sql.gz', 'SET statement_timeout = 0;\n');
    const port = await freePort();
    const error = await restoreFailure(`postgresql://postgres:pw@127.0.0.1:${port}/kennwilliamson`, file);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(new RegExp(`^could not connect to postgres@127\\.0\\.0\\.1:${port}/kennwilliamson: .*; the database was not touched$`));
  });

  // twice() is refused before it is made, saying why no migration can define it.
  it('restores what pg_dump 18.3 writes (\\restrict, COPY data) into PostgreSQL 17, and refuses its BEGIN ATOMIC function, saying what to do if it is a migration\'s', async () => {
    expect(pgDump18Script).toContain(shout);
    expect(pgDump18Script).toContain(twice);
    const migrationsDir = await migrationsDefining(shout);
    const target = await createTestDatabase();
    try {
      const refused = await runCli('db-restore', [await crafted('pg-dump-18.sql.gz', pgDump18Script), '--yes', '--migrations-dir', migrationsDir], { DATABASE_URL: target.ownerUrl });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /function public\.twice, which no migration defines so \(the same name, body and language\): .*; its body is no quoted text with a language \(BEGIN ATOMIC or RETURN, which PostgreSQL keeps parsed\), so no migration can be told to define it: write it with a quoted body at line \d+ of the backup's SQL\n/,
      );

      const file = await crafted('pg-dump-18-no-atomic.sql.gz', pgDump18Script.replace(twice, ''));
      const result = await runCli('db-restore', [file, '--yes', '--migrations-dir', migrationsDir], { DATABASE_URL: target.ownerUrl });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain('restoring table public.notes (1)');

      const rows = await withClient(target.url, async (client) => {
        const notes = await client.query('SELECT id, body, "odd;name" AS odd FROM notes ORDER BY id');
        const calls = await client.query("SELECT public.shout('a') AS shout");
        const tables = await client.query("SELECT array_agg(tablename::text ORDER BY tablename) AS names FROM pg_tables WHERE schemaname = 'public'");
        return { notes: notes.rows, calls: calls.rows[0], tables: tables.rows[0] };
      });
      expect(rows.notes).toEqual([
        { id: 1, body: 'tab\there, backslash \\ and ! at home', odd: 'x' },
        { id: 2, body: null, odd: 'Zoë ✍️ 李' },
        { id: 3, body: '\\! not a command either', odd: ';' },
      ]);
      expect(rows.calls).toEqual({ shout: 'A\\! not a command; -- nor a comment' });
      // The whole public schema was replaced: the migrated tables are gone (the record is the backup's).
      expect(rows.tables).toEqual({ names: ['notes', 'schema_migrations'] });
    } finally {
      await target.drop();
    }
  });

  describe('privileges: a restore grants only to the owner and the application role', () => {
    const suffix = randomBytes(3).toString('hex');
    const reader = `kw_reader_${suffix}`;
    const app = `kw_restore_app_${suffix}`;

    beforeAll(async () => {
      await execute(database.url, `CREATE ROLE ${reader} LOGIN; CREATE ROLE ${app} LOGIN`);
    });
    afterAll(async () => {
      await execute(database.url, `DROP ROLE IF EXISTS ${reader}; DROP ROLE IF EXISTS ${app}`).catch(() => undefined);
    });

    const planted = (grant: string) => `CREATE TABLE public.planted (id integer, secret text);\n${grant}\n`;

    async function targetDatabase(): Promise<TestDatabase> {
      const target = await createTestDatabase();
      onTestFinished(async () => {
        await target.drop();
      });
      return target;
    }

    // The restore of `file` rolled back by the catalog's check before COMMIT, naming `excess`,
    // and the database as it was.
    async function refusedBeforeCommit(target: TestDatabase, file: string, excess: string): Promise<void> {
      const before = await tableContents(target.url);

      const error = await restoreFailure(target.ownerUrl, file);

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toBe(`restore failed and was rolled back; the database was not changed:\nthe backup left privileges in the public schema beyond the owner's and the application role's: ${excess}`);
      expect(await tableContents(target.url)).toEqual(before);
    }

    // The owner's default privileges in public let `reader` read new tables (a reporting role).
    const readerReadsNewTables = (target: TestDatabase) =>
      execute(target.url, `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} IN SCHEMA public GRANT SELECT ON TABLES TO ${reader}`);

    // The services' DATABASE_URL (the application role's) where the owner's belongs: the
    // restore ran as it, and its refusal called the application role the database's owner.
    it("refuses to restore as a role that is not the database's owner, before touching it, saying whose URL to give", async () => {
      const target = await targetDatabase();
      await execute(target.url, `ALTER ROLE ${app} PASSWORD 'app-pw'`);
      const appUrl = new URL(target.url);
      appUrl.username = app;
      appUrl.password = 'app-pw';
      const before = await tableContents(target.url);

      const result = await runCli('db-restore', [await crafted('as-app.sql.gz', dumpAround(planted(''))), '--yes'], { DATABASE_URL: appUrl.href });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `refusing to restore as '${app}': it is not the database's owner '${inject('ownerUser')}', to which the restored tables and functions must belong, ` +
          "for its migrations to alter them. Restore as the owner: set MIGRATION_DATABASE_URL to its URL (DATABASE_URL, which the restore fell back to, " +
          "is the services' URL, usually the application role's). The database was not touched.",
      );
      expect(await tableContents(target.url)).toEqual(before);

      // A member of the owner role neither: what it restored would be its own.
      const member = `kw_owner_member_${suffix}`;
      await execute(target.url, `CREATE ROLE ${member} LOGIN PASSWORD 'member-pw' IN ROLE ${inject('ownerUser')}`);
      onTestFinished(() => execute(inject('serverUrl'), `DROP ROLE IF EXISTS ${member}`));
      appUrl.username = member;
      appUrl.password = 'member-pw';
      const asMember = await runCli('db-restore', [await crafted('as-member.sql.gz', dumpAround(planted(''))), '--yes'], { MIGRATION_DATABASE_URL: appUrl.href });
      expect(asMember.code).toBe(1);
      expect(asMember.stderr).toContain(`refusing to restore as '${member}': it is not the database's owner '${inject('ownerUser')}'`);
      expect(asMember.stderr).toContain("Restore as the owner: set MIGRATION_DATABASE_URL to the owner's URL.");
    });

    // A backup's REVOKE from the role restoring took its rights on its own tables away: the
    // next migration (and migrate status) failed with permission denied on schema_migrations.
    it("leaves out a backup's REVOKE from the role restoring: the owner keeps its rights on its tables", async () => {
      const file = await crafted('revoke-owner.sql.gz', dumpAround(planted(`REVOKE ALL ON TABLE public.planted FROM ${inject('ownerUser')};`)));
      const target = await targetDatabase();

      await restoreDatabase({ databaseUrl: target.ownerUrl, backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' } });

      const rights = await withClient(target.url, async (client) =>
        (await client.query("SELECT has_table_privilege($1, 'public.planted', 'SELECT, INSERT, UPDATE, DELETE') AS all", [inject('ownerUser')])).rows[0],
      );
      expect(rights).toEqual({ all: true });
    });

    // S1: each is refused at check time, before the restore's transaction: nothing ran.
    it.each([
      ['to PUBLIC', 'GRANT SELECT ON TABLE public.planted TO PUBLIC;', "line 11 of the backup's SQL: GRANT of SELECT on table to PUBLIC would give every role of the database server"],
      ['to another role of the server', `GRANT SELECT ON TABLE public.planted TO ${reader};`, `line 11 of the backup's SQL: GRANT of SELECT on table to '${reader}', which is neither the database's owner`],
      [
        'as default privileges, to another role',
        `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ${reader};`,
        `line 11 of the backup's SQL: ALTER DEFAULT PRIVILEGES … GRANT of SELECT on table to '${reader}', which is neither`,
      ],
      ['CREATE on public to PUBLIC', 'GRANT CREATE ON SCHEMA public TO PUBLIC;', "line 11 of the backup's SQL: GRANT of CREATE on schema to PUBLIC"],
    ])('db:restore refuses a backup that grants %s before anything runs, naming the grantee', async (_what, grant, message) => {
      const file = await crafted('grant.sql.gz', dumpAround(planted(grant)));
      const target = await targetDatabase();
      const before = await tableContents(target.url);

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.url, DB_OWNER_PASSWORD: inject('ownerPassword') });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`refusing to restore grant.sql.gz: it holds what a restore refuses: ${message}`);
      expect(result.stderr).toContain('the database was not touched');
      expect(result.stderr).not.toContain('restore failed and was rolled back');
      expect(await tableContents(target.url)).toEqual(before);
    });

    it('checks the catalog before COMMIT too: privileges that reach a role some other way roll the restore back', async () => {
      const target = await targetDatabase();
      // Not the backup's doing: the owner's database-wide default privileges (an admin's),
      // which every table the backup creates picks up.
      await execute(target.url, `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} GRANT SELECT ON TABLES TO ${reader}`);
      const file = await crafted('plain.sql.gz', dumpAround(planted('')), { record: false });

      await refusedBeforeCommit(
        target,
        file,
        `SELECT on table public.planted to ${reader}; ` +
          // The admin's entry itself, which would give the next migration's tables the same.
          `SELECT on new tables of ${inject('ownerUser')} to ${reader} (default privileges in every schema)`,
      );
    });

    // The application role may hold no more than the release step grants it (applicationPrivileges),
    // however it came by it: here through the owner's database-wide default privileges, an admin's.
    it.each([
      ['TRUNCATE on a table', 'TRUNCATE ON TABLES', '', 'TRUNCATE on table public.planted', 'TRUNCATE on new tables'],
      ['UPDATE (setval) on a sequence', 'UPDATE ON SEQUENCES', 'CREATE SEQUENCE public.planted_seq;', 'UPDATE on sequence public.planted_seq', 'UPDATE on new sequences'],
      [
        'INSERT on the migrations record',
        'INSERT ON TABLES',
        'CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text);',
        'INSERT on table public.schema_migrations',
        // INSERT on new tables is the application role's.
        undefined,
      ],
    ])('checks the catalog before COMMIT: %s beyond the release step\'s grants to the application role rolls the restore back', async (_what, defaults, sql, excess, excessDefault) => {
      const target = await targetDatabase();
      await ensureAppRole({ databaseUrl: target.ownerUrl, user: app });
      await execute(target.url, `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} GRANT ${defaults} TO ${app}`);
      const file = await crafted('app-excess.sql.gz', dumpAround(planted(sql)), { record: false });

      await refusedBeforeCommit(
        target,
        file,
        `${excess} to ${app}` + (excessDefault ? `; ${excessDefault} of ${inject('ownerUser')} to ${app} (default privileges in every schema)` : ''),
      );
    });

    it("accepts grants to the application role the owner's default privileges give new tables to", async () => {
      const target = await targetDatabase();
      await ensureAppRole({ databaseUrl: target.ownerUrl, user: app });
      const file = await crafted('app.sql.gz', dumpAround(planted(`GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.planted TO ${app};`)));

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });

      expect(result.code, result.stderr).toBe(0);
      const granted = await withClient(target.url, async (client) =>
        (await client.query("SELECT pg_catalog.has_table_privilege($1, 'public.planted', 'SELECT') AS reads", [app])).rows[0],
      );
      expect(granted).toEqual({ reads: true });
    });

    it("gives the application role the owner's default privileges named its grants, though the backup has none for it (made before it existed)", async () => {
      const target = await targetDatabase();
      await ensureAppRole({ databaseUrl: target.ownerUrl, user: app });
      const file = await crafted('before-app.sql.gz', dumpAround(planted('')));

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });

      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain(`gave the application role '${app}' (the owner's default privileges named it before the restore) its grants`);
      const granted = await withClient(target.url, async (client) =>
        (
          await client.query(
            `SELECT pg_catalog.has_table_privilege($1, 'public.planted', 'SELECT, INSERT, UPDATE, DELETE') AS writes,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_default_acl WHERE defaclnamespace = 'public'::regnamespace AND defaclobjtype = 'r'
                              AND pg_catalog.array_to_string(defaclacl, ',') LIKE $2) AS new_tables`,
            [app, `%${app}=%`],
          )
        ).rows[0],
      );
      // What the services do, and what the next migration's tables will be given.
      expect(granted).toEqual({ writes: true, new_tables: true });
    });

    it("gives a role the owner's default privileges let only read new tables (a report's) nothing more", async () => {
      const target = await targetDatabase();
      // SELECT alone: no application role of the release step's, which gets SELECT, INSERT, UPDATE, DELETE.
      await readerReadsNewTables(target);
      // What pg_dump writes for a reporting role that reads everything: each of these only reads.
      // (The function is a service's, which its migrations define.)
      const answer = 'CREATE FUNCTION public.answer() RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$;\n';
      const file = await crafted(
        'read-only.sql.gz',
        dumpAround(
          planted(
            `CREATE SEQUENCE public.planted_seq;\n${answer}` +
              `GRANT USAGE ON SCHEMA public TO ${reader};\nGRANT SELECT ON TABLE public.planted TO ${reader};\n` +
              `GRANT SELECT ON SEQUENCE public.planted_seq TO ${reader};\nGRANT ALL ON FUNCTION public.answer() TO ${reader};\n` +
              `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} IN SCHEMA public GRANT SELECT ON SEQUENCES TO ${reader};`,
          ),
        ),
      );

      const result = await runCli('db-restore', [file, '--yes', '--migrations-dir', await migrationsDefining(answer)], { DATABASE_URL: target.ownerUrl });

      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toContain('gave the application role');
      const granted = await withClient(target.url, async (client) =>
        (
          await client.query(
            "SELECT pg_catalog.has_table_privilege($1, 'public.planted', 'SELECT') AS reads, pg_catalog.has_table_privilege($1, 'public.planted', 'INSERT, UPDATE, DELETE') AS writes",
            [reader],
          )
        ).rows[0],
      );
      expect(granted).toEqual({ reads: true, writes: false });
    });

    // A reporting role may read what it is given; a backup, untrusted, may not make it a writer.
    it("refuses a backup that gives a role the owner's default privileges let only read new tables more than reading, before anything runs", async () => {
      const target = await targetDatabase();
      await readerReadsNewTables(target);
      const file = await crafted('reader-writes.sql.gz', dumpAround(planted(`GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.planted TO ${reader};`)));
      const before = await tableContents(target.url);

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `line 11 of the backup's SQL: GRANT of SELECT, INSERT, DELETE, UPDATE on table to '${reader}' goes beyond what the owner's default privileges give it on a new table (SELECT on a table)`,
      );
      expect(result.stderr).toContain('the database was not touched');
      expect(await tableContents(target.url)).toEqual(before);
    });

    it('checks the catalog before COMMIT too: writes that reach a reading role some other way roll the restore back', async () => {
      const target = await targetDatabase();
      await readerReadsNewTables(target);
      // An admin's database-wide entry, which every table the backup creates picks up.
      await execute(target.url, `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} GRANT INSERT ON TABLES TO ${reader}`);
      const file = await crafted('reader-defaults.sql.gz', dumpAround(planted(`GRANT SELECT ON TABLE public.planted TO ${reader};`)), { record: false });

      await refusedBeforeCommit(
        target,
        file,
        `INSERT on table public.planted to ${reader}; INSERT on new tables of ${inject('ownerUser')} to ${reader} (default privileges in every schema)`,
      );
    });

    // With two roles that the owner's default privileges give the release step's grants, the
    // restore gives neither its grants (it cannot tell which the services use), so neither has
    // the writes on views taken back: a view over the migrations record would write it.
    it('refuses writes on a view to an application role whose grants the restore does not set', async () => {
      const target = await targetDatabase();
      await ensureAppRole({ databaseUrl: target.ownerUrl, user: app });
      await execute(target.url, `ALTER DEFAULT PRIVILEGES FOR ROLE ${inject('ownerUser')} IN SCHEMA public GRANT SELECT,INSERT,UPDATE,DELETE ON TABLES TO ${reader}`);
      const file = await crafted(
        'view-writes.sql.gz',
        dumpAround(
          'CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text);\n' +
            'CREATE VIEW public.migration_log AS SELECT name FROM public.schema_migrations;\n' +
            `GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.migration_log TO ${reader};\n`,
        ),
      );

      await refusedBeforeCommit(
        target,
        file,
        `DELETE on table public.migration_log to ${reader}; INSERT on table public.migration_log to ${reader}; UPDATE on table public.migration_log to ${reader}`,
      );
    });

    it('takes the application role from DB_APP_USER where no default privileges name it, and gives it the release step\'s grants', async () => {
      const target = await targetDatabase();
      // As a backup made before the owner role has them: default privileges of the superuser.
      const file = await crafted(
        'named.sql.gz',
        dumpAround(
          planted(
            `GRANT SELECT ON TABLE public.planted TO ${app};\n` +
              `ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES TO ${app};`,
          ),
        ),
      );

      const unnamed = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });
      expect(unnamed.code).toBe(1);
      expect(unnamed.stderr).toContain(`GRANT of SELECT on table to '${app}', which is neither the database's owner '${inject('ownerUser')}' (the role restoring) nor its application role (none known)`);
      expect(unnamed.stderr).toContain(`set DB_APP_USER=${app} and restore again`);

      const named = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl, DB_APP_USER: app });
      expect(named.code, named.stderr).toBe(0);
      const granted = await withClient(target.url, async (client) =>
        (await client.query("SELECT pg_catalog.has_table_privilege($1, 'public.planted', 'SELECT, INSERT, UPDATE, DELETE') AS writes", [app])).rows[0],
      );
      expect(granted).toEqual({ writes: true });
      // The superuser's default privileges left out; the owner's set by the restore instead.
      const defaults = await withClient(target.url, async (client) =>
        (
          await client.query(
            `SELECT pg_catalog.pg_get_userbyid(defaclrole) AS role FROM pg_catalog.pg_default_acl
              WHERE defaclnamespace = 'public'::regnamespace AND defaclobjtype = 'r'`,
          )
        ).rows,
      );
      expect(defaults).toEqual([{ role: inject('ownerUser') }]);
    });

    it('restores with DB_APP_USER a backup whose grants name the application role under another name, leaving those out', async () => {
      const target = await targetDatabase();
      // As production's backup restored onto staging: there the application role was `reader`.
      const file = await crafted('renamed.sql.gz', dumpAround(planted(`GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.planted TO ${reader};`)));

      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl, DB_APP_USER: app });

      expect(result.code, result.stderr).toBe(0);
      const privileges = await withClient(target.url, async (client) =>
        (
          await client.query(
            `SELECT pg_catalog.has_table_privilege($1, 'public.planted', 'SELECT') AS app,
                    pg_catalog.has_table_privilege($2, 'public.planted', 'SELECT') AS other`,
            [app, reader],
          )
        ).rows[0],
      );
      expect(privileges).toEqual({ app: true, other: false });
    });
  });

  // B6b: pg_dump's `SET lock_timeout = 0` and `SET statement_timeout = 0` must not lift the
  // restore's bounds. Another session creates, and holds uncommitted, the table the backup
  // creates: the backup's CREATE TABLE waits for it, and only a bound ends the wait.
  describe("the backup's own SETs never lift the restore's bounds", () => {
    const bounded = dumpAround('SET lock_timeout = 0;\nSET statement_timeout = 0;\nCREATE TABLE public.contested (id integer);\n');

    async function contested(): Promise<TestDatabase> {
      const target = await createTestDatabase({ empty: true });
      const holder = new pg.Client({ connectionString: target.ownerUrl });
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query('CREATE TABLE public.contested (id integer)');
      onTestFinished(async () => {
        await holder.end().catch(() => undefined);
        await target.drop();
      });
      return target;
    }

    it('lock_timeout: the wait ends after the restore\'s own bound', { timeout: 20_000 }, async () => {
      const target = await contested();
      const file = await crafted('lock.sql.gz', bounded);

      const error = await restoreFailure(target.ownerUrl, file, { lockTimeoutMs: 300 });

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toContain('canceling statement due to lock timeout (SQLSTATE 55P03)');
      expect((error as Error).message).toContain('restore failed and was rolled back; the database was not changed');
    });

    it("statement_timeout: the database's own bound stays", { timeout: 20_000 }, async () => {
      const target = await contested();
      await execute(target.url, `ALTER DATABASE ${target.name} SET statement_timeout = '1s'`);
      const file = await crafted('statement.sql.gz', bounded);

      const error = await restoreFailure(target.ownerUrl, file, { lockTimeoutMs: 600_000 });

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toContain('canceling statement due to statement timeout (SQLSTATE 57014)');
      expect((error as Error).message).toContain('the server cancelled the statement; the restore gives one statement 1s');
    });
  });

  // A CHECK that names only PostgreSQL's own operator, over one row of 400 bytes: a regular
  // expression with back references took minutes (more than 30 s for this one) with every table
  // held, and nothing but Ctrl-C ended it (backup audit).
  it("ends a statement of the backup that runs past its statement bound, and rolls back", { timeout: 30_000 }, async () => {
    const target = await createTestDatabase({ empty: true });
    onTestFinished(() => target.drop());
    const file = await crafted(
      'slow-check.sql.gz',
      dumpAround(
        `CREATE TABLE public.slow (s text);\nCOPY public.slow (s) FROM stdin;\n${'a'.repeat(400)}\n\\.\n\n` +
          "ALTER TABLE ONLY public.slow ADD CONSTRAINT slow_s CHECK ((s ~ '^(a+)(a+)(a+)(a+)\\1\\2\\3\\4$'::text));\n",
      ),
    );

    const error = await restoreFailure(target.ownerUrl, file, { statementTimeoutMs: 1_000 });
    // The command's bound, from RESTORE_STATEMENT_TIMEOUT.
    const command = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: '', MIGRATION_DATABASE_URL: target.ownerUrl, RESTORE_STATEMENT_TIMEOUT: '1s' });

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('canceling statement due to statement timeout (SQLSTATE 57014)');
    expect((error as Error).message).toContain('restore failed and was rolled back; the database was not changed');
    expect(command.code).toBe(1);
    expect(command.stderr).toContain('canceling statement due to statement timeout (SQLSTATE 57014)');
    // Named, with where it comes from: the server says only "statement timeout".
    for (const said of [(error as Error).message, command.stderr]) {
      expect(said).toContain(
        "the server cancelled the statement; the restore gives one statement 1s (RESTORE_STATEMENT_TIMEOUT, restoreDatabase({ statementTimeoutMs }), " +
          "or the database's or role's statement_timeout where shorter)",
      );
    }
    await expect(execute(target.url, 'SELECT 1 FROM public.slow')).rejects.toThrow('does not exist');
  });

  // A bare number is milliseconds, as PostgreSQL reads statement_timeout: 1800, meant as half an
  // hour in seconds, bounded each statement to 1.8 s, and a restore failed after holding every
  // table for nothing (an operator-path audit).
  it('refuses a bare RESTORE_STATEMENT_TIMEOUT below a minute as ambiguous, before anything', async () => {
    const file = await crafted('never-read.sql.gz', dumpAround('CREATE TABLE public.never (i int);\n'));

    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: '', MIGRATION_DATABASE_URL: database.url, RESTORE_STATEMENT_TIMEOUT: '1800' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("RESTORE_STATEMENT_TIMEOUT=1800 is ambiguous: a bare number here is milliseconds, and 1800ms is unlikely to be meant. Write the unit: '1800s' or '1800ms'");
    await expect(execute(database.url, 'SELECT 1 FROM public.never')).rejects.toThrow('does not exist');
  });

  it('asks once whether it reaches a pooler, before reading the backup', async () => {
    // Between the restore and the server: the text every connection sends, to count the probes.
    const server = new URL(database.url);
    const sent: string[] = [];
    const relay = net.createServer((client) => {
      const index = sent.push('') - 1;
      const upstream = net.connect(Number(server.port), server.hostname);
      client.on('data', (chunk: Buffer) => (sent[index] += chunk.toString('latin1')));
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => relay.close(() => resolve())));
    const target = await createTestDatabase();
    onTestFinished(() => target.drop());
    const relayed = new URL(target.ownerUrl);
    relayed.port = String((relay.address() as net.AddressInfo).port);
    const file = await crafted('once.sql.gz', dumpAround('CREATE TABLE public.planted (id integer);'));

    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: relayed.toString() });

    expect(result.code, result.stderr).toBe(0);
    const probes = sent.join('').split('pg_backend_pid() AS pid').length - 1;
    expect(probes).toBe(1);
  });
});
