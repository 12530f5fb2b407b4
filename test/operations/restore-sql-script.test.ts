import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestoreError } from '../../src/errors.js';
import { restoreDatabase } from '../../src/operations/restore.js';
import { sqlScriptParts, vetSqlScript } from '../../src/operations/sql-script.js';
import { runCli } from '../support/run-cli.js';
import { execute, fillEveryTable, tableContents } from '../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { withClient } from '../../src/db/with-client.js';
import { freePort } from '../../src/embedded/free-port.js';

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

describe('restoring plain SQL: never through psql, meta-commands refused', () => {
  let workDir: string;
  let database: TestDatabase;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-restore-sql-'));
    database = await createTestDatabase();
    await fillEveryTable(database.url, { users: 20, tag: 'kept' });
  });
  afterAll(async () => {
    await database?.drop();
    await rm(workDir, { recursive: true, force: true });
  });

  async function crafted(name: string, sql: string): Promise<string> {
    const file = path.join(workDir, name);
    await writeFile(file, gz(sql));
    return file;
  }

  it('refuses a .sql.gz holding \\! touch FILE: FILE is not created and the database is unchanged', async () => {
    const marker = path.join(workDir, 'pwned');
    const file = await crafted(
      'shell.sql.gz',
      `SET client_encoding = 'UTF8';\nCREATE TABLE planted (id int);\n\\! touch ${marker}\nSELECT 1;\n`,
    );
    const before = await tableContents(database.url);

    const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: database.ownerUrl });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("line 3 of the backup's SQL: the psql meta-command '\\!' is not allowed");
    expect(result.stderr).toContain('the database was not touched');
    expect(existsSync(marker)).toBe(false);
    expect(await tableContents(database.url)).toEqual(before);
  });

  // Past the check (a file swapped after it, or a caller that skips it): the restore itself
  // refuses, after statements already ran, and rolls them back.
  it('refuses the meta-command during the restore too, rolling back what ran before it', async () => {
    const marker = path.join(workDir, 'pwned-late');
    const file = await crafted('late.sql.gz', `CREATE TABLE planted (id int);\nINSERT INTO planted VALUES (1);\n\\! touch ${marker}\n`);
    const before = await tableContents(database.url);

    const error = await restoreDatabase({
      databaseUrl: database.ownerUrl,
      backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' },
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("line 3 of the backup's SQL: the psql meta-command '\\!' is not allowed");
    expect((error as Error).message).toContain('the restore was rolled back; the database was not changed');
    expect(existsSync(marker)).toBe(false);
    expect(await tableContents(database.url)).toEqual(before);
    await expect(execute(database.url, 'SELECT * FROM planted')).rejects.toThrow('does not exist');
  });

  it('says it could not connect, and that nothing was touched, when the server does not answer', async () => {
    const file = await crafted('unreachable.sql.gz', 'SELECT 1;\n');
    const port = await freePort();
    const error = await restoreDatabase({
      databaseUrl: `postgresql://postgres:pw@127.0.0.1:${port}/kennwilliamson`,
      backup: { file, bytes: 0, format: 'sql-gzip', checksum: 'absent' },
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(new RegExp(`^could not connect to postgres@127\\.0\\.0\\.1:${port}/kennwilliamson: .*; the database was not touched$`));
  });

  it('restores what pg_dump 18.3 writes (\\restrict, COPY data, BEGIN ATOMIC) into PostgreSQL 17', async () => {
    const target = await createTestDatabase();
    try {
      const file = await crafted('pg-dump-18.sql.gz', pgDump18Script);
      const result = await runCli('db-restore', [file, '--yes'], { DATABASE_URL: target.ownerUrl });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain('restoring table public.notes (1)');

      const rows = await withClient(target.url, async (client) => {
        const notes = await client.query('SELECT id, body, "odd;name" AS odd FROM notes ORDER BY id');
        const calls = await client.query("SELECT public.shout('a') AS shout, public.twice(21) AS twice");
        const tables = await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'");
        return { notes: notes.rows, calls: calls.rows[0], tables: tables.rows[0] };
      });
      expect(rows.notes).toEqual([
        { id: 1, body: 'tab\there, backslash \\ and ! at home', odd: 'x' },
        { id: 2, body: null, odd: 'Zoë ✍️ 李' },
        { id: 3, body: '\\! not a command either', odd: ';' },
      ]);
      expect(rows.calls).toEqual({ shout: 'A\\! not a command; -- nor a comment', twice: 42 });
      // The whole public schema was replaced: the migrated tables are gone.
      expect(rows.tables).toEqual({ n: 1 });
    } finally {
      await target.drop();
    }
  });

  const refusal = async (sql: string, options: { database?: string } = {}) =>
    vetSqlScript(Readable.from([Buffer.from(sql)]), options).then(
      () => 'accepted',
      (error: Error) => error.message,
    );

  it.each([
    ['\\o /tmp/out\n', "line 1 of the backup's SQL: the psql meta-command '\\o' is not allowed"],
    ["\\copy t FROM PROGRAM 'id'\n", "the psql meta-command '\\copy' is not allowed"],
    ['\\i /etc/passwd\n', "the psql meta-command '\\i' is not allowed"],
    ['SELECT 1 \\! id\n;\n', 'a psql meta-command inside a statement is not allowed'],
    ['SELECT 1;\nCOMMIT;\n', "'COMMIT' would end the restore's one transaction"],
    ['begin;\n', "'BEGIN' would end the restore's one transaction"],
    ['\\connect other_db\n', "\\connect to another database than 'kennwilliamson' is not allowed"],
    ['\\restrict abc\nSELECT 1;\n\\unrestrict xyz\n', '\\unrestrict with a key that no \\restrict set'],
    ['\\restrict abc\nSELECT 1;\n', 'ends without its \\unrestrict line'],
    ["COPY t TO '/tmp/x';\n", 'only COPY … FROM stdin'],
    ['COPY t FROM stdin;\n1\n', 'ends inside COPY data'],
    ["SET client_encoding = 'LATIN1';\n", 'only UTF8 backups'],
    ["SELECT 'unterminated;\n", 'ends inside a quoted string'],
  ])('refuses %j', async (sql, message) => {
    expect(await refusal(sql, { database: 'kennwilliamson' })).toContain(message);
  });

  it('accepts backslashes that are data: in strings, dollar quotes, identifiers, comments and COPY rows', async () => {
    const sql =
      "SELECT '\\! a', E'\\' \\! b', $$ \\! c $$, $x$ \\o d $x$, \"\\!\";\n" +
      '/* \\! e /* nested */ still comment */ SELECT 1; -- \\! f\n' +
      'COPY t (a) FROM stdin;\n\\!\tg\n\\.\n' +
      '\\connect kennwilliamson\n\\c "kennwilliamson"\n' +
      // A parameter named begin is not a body; a COPY of many columns still reads its rows.
      'CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN 1;\nSELECT 2;\n' +
      `COPY wide (${Array.from({ length: 80 }, (_, i) => `c${i}`).join(', ')}) FROM stdin;\n\\.\n`;
    expect(await refusal(sql, { database: 'kennwilliamson' })).toBe('accepted');
    const parts: string[] = [];
    for await (const part of sqlScriptParts(Readable.from([Buffer.from(sql)]), { database: 'kennwilliamson' })) {
      parts.push(part.kind === 'copy' ? `copy ${part.table}` : part.text);
      if (part.kind === 'copy') for await (const _ of part.data) void _;
    }
    expect(parts).toEqual([
      "SELECT '\\! a', E'\\' \\! b', $$ \\! c $$, $x$ \\o d $x$, \"\\!\";",
      'SELECT 1;',
      'copy t',
      'CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN 1;',
      'SELECT 2;',
      'copy wide',
    ]);
  });
});
