import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { maxRowLength, maxStatementLength, maxStatements, sqlScriptParts, vetSqlScript } from '../../../src/operations/vetting/sql-script.js';

const vet = (sql: string | Buffer) =>
  vetSqlScript(Readable.from([typeof sql === 'string' ? Buffer.from(sql) : sql]), { database: 'kennwilliamson' }).then(
    () => 'accepted',
    (error: Error) => error.message,
  );

async function partsOf(sql: string): Promise<string[]> {
  const parts: string[] = [];
  for await (const part of sqlScriptParts(Readable.from([Buffer.from(sql)]), { database: 'kennwilliamson' })) {
    if (part.kind === 'copy') {
      const rows: Buffer[] = [];
      for await (const chunk of part.data) rows.push(chunk);
      parts.push(`copy ${part.table} at line ${part.line}: ${JSON.stringify(Buffer.concat(rows).toString())}`);
    } else parts.push(`${part.text} at line ${part.line}`);
  }
  return parts;
}

describe("reading a backup's SQL statement by statement", () => {
  it('reads backslashes, semicolons and FROM stdin inside strings, dollar quotes, identifiers and comments as data', async () => {
    const sql =
      "COMMENT ON TABLE public.t IS '\\! a; COPY public.t FROM stdin;';\n" +
      "COMMENT ON TABLE public.t IS E'\\' \\! b;';\n" +
      'CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$ SELECT \'\\! c; \' $$;\n' +
      'CREATE FUNCTION public.g() RETURNS text LANGUAGE plpgsql AS $x$ BEGIN RETURN $$\\o d;$$; END $x$;\n' +
      'CREATE TABLE public."\\!;" (a integer);\n' +
      '/* \\! e; /* nested; */ still comment */ COMMENT ON TABLE public.t IS NULL; -- \\! f;\n' +
      '\\connect kennwilliamson\n\\c "kennwilliamson"\n' +
      // A parameter named begin is not a body; BEGIN ATOMIC … END is one statement.
      'CREATE FUNCTION public.h(begin integer) RETURNS integer LANGUAGE sql RETURN 1;\n' +
      'CREATE FUNCTION public.twice(n integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\nBEGIN ATOMIC\n SELECT (n * 2);\nEND;\n';
    expect(await partsOf(sql)).toEqual([
      "COMMENT ON TABLE public.t IS '\\! a; COPY public.t FROM stdin;'; at line 1",
      "COMMENT ON TABLE public.t IS E'\\' \\! b;'; at line 2",
      "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$ SELECT '\\! c; ' $$; at line 3",
      'CREATE FUNCTION public.g() RETURNS text LANGUAGE plpgsql AS $x$ BEGIN RETURN $$\\o d;$$; END $x$; at line 4',
      'CREATE TABLE public."\\!;" (a integer); at line 5',
      'COMMENT ON TABLE public.t IS NULL; at line 6',
      'CREATE FUNCTION public.h(begin integer) RETURNS integer LANGUAGE sql RETURN 1; at line 9',
      'CREATE FUNCTION public.twice(n integer) RETURNS integer\n    LANGUAGE sql IMMUTABLE\nBEGIN ATOMIC\n SELECT (n * 2);\nEND; at line 10',
    ]);
  });

  it('takes the lines after a statement as rows only when PostgreSQL parses it as COPY table FROM stdin', async () => {
    const wide = Array.from({ length: 80 }, (_, i) => `c${i}`).join(', ');
    expect(await partsOf(`COPY public.t (a, "b;c") FROM stdin;\n\\! id\t;\n\\.\nCOPY public.wide (${wide}) FROM stdin;\n\\.\n`)).toEqual([
      'copy public.t at line 1: "\\\\! id\\t;\\n"',
      'copy public.wide at line 4: ""',
    ]);
    // FROM stdin in a string is not a COPY: the next line is read as SQL, and refused.
    expect(await vet("COMMENT ON TABLE public.t IS 'COPY public.t (a) FROM stdin;';\n\\! id\n")).toBe(
      "line 2 of the backup's SQL: the psql meta-command '\\!' is not allowed (a backup made by pg_dump holds none; it is never run)",
    );
  });

  it('refuses a COPY of a query FROM stdin, even from a table called stdin (row 3 of issue 17)', async () => {
    expect(await vet("CREATE TABLE public.stdin (x integer); COPY (SELECT 1 FROM stdin) TO PROGRAM 'touch /tmp/x';\n1\n\\.\n")).toBe(
      "line 1 of the backup's SQL: COPY to or from a program runs that program on the database server's machine",
    );
  });

  it.each([
    ['\\o /tmp/out\n', "line 1 of the backup's SQL: the psql meta-command '\\o' is not allowed"],
    ["\\copy t FROM PROGRAM 'id'\n", "the psql meta-command '\\copy' is not allowed"],
    ['\\i /etc/passwd\n', "the psql meta-command '\\i' is not allowed"],
    ['SET statement_timeout = 0 \\! id\n;\n', 'a psql meta-command inside a statement is not allowed'],
    ['\\connect other_db\n', "\\connect to another database than 'kennwilliamson' is not allowed"],
    ['\\restrict abc\nSET statement_timeout = 0;\n\\unrestrict xyz\n', '\\unrestrict with a key that no \\restrict set'],
    ['\\restrict abc\nSET statement_timeout = 0;\n', 'ends without its \\unrestrict line'],
    ['COPY public.t (a) FROM stdin; SET statement_timeout = 0;\n\\.\n', "line 1 of the backup's SQL: text after COPY … FROM stdin on the same line"],
    ['COPY public.t (a) FROM stdin;\n1\n', 'ends inside COPY data'],
    ["COMMENT ON TABLE public.t IS 'unterminated;\n", 'ends inside a quoted string'],
    ['/* unterminated\n', 'ends inside a comment'],
    ['SET statement_timeout = 0;\nGRANT SELECT ON TABLE public.users TO kennwilliamson_ap', "line 2 of the backup's SQL: the backup ends inside a statement (no ';')"],
    ["SET statement_timeout = 0;\nCOMMENT ON TABLE public.t IS 'a\u0000b';\n", "line 2 of the backup's SQL: a NUL character"],
    ['SET statement_timeout = 0;\nCOMMENT ON TABLE public.t IS IS;\n', "line 2 of the backup's SQL: PostgreSQL's parser cannot read it (syntax error at or near \"IS\")"],
  ])('refuses %j', async (sql, message) => {
    expect(await vet(sql)).toContain(message);
  });

  it('refuses SQL that is not valid UTF-8', async () => {
    expect(await vet(Buffer.from([...Buffer.from("COMMENT ON TABLE public.t IS '"), 0xff, ...Buffer.from("';\n")]))).toBe(
      "line 1 of the backup's SQL: not valid UTF-8",
    );
  });

  // Each statement is run with every table held, and checked before it: 200,000 of pg_dump's own
  // SETs (a 17 kB file) held the tables for 55 s (backup audit).
  it('refuses more statements than the bound, naming the line of the first one past it', async () => {
    const many = async function* () {
      for (;;) yield Buffer.from('SET row_security = off;\n');
    };
    await expect(vetSqlScript(many())).rejects.toThrow(
      `line ${maxStatements + 1} of the backup's SQL: more than ${maxStatements} statements, which pg_dump never writes for this schema`,
    );
  });

  it('refuses a statement longer than the bound without holding more of it', async () => {
    const endless = async function* () {
      yield Buffer.from("SET statement_timeout = 0;\nCOMMENT ON TABLE public.t IS '");
      // Never ends: only the bound stops the reading.
      for (;;) yield Buffer.alloc(1 << 20, 'x');
    };
    await expect(vetSqlScript(endless())).rejects.toThrow(
      `line 2 of the backup's SQL: a statement longer than ${maxStatementLength / 1024} KiB, which pg_dump never writes for this schema`,
    );
  });

  // The server builds a row's values in memory at many times its text before any CHECK: one
  // jsonb row of 100 MB (103 kB of gzip) took 4.4 GB of the restoring backend (backup audit).
  it('refuses a row longer than the bound, naming its line, without holding more of it', async () => {
    const long = async function* () {
      yield Buffer.from('SET statement_timeout = 0;\nCREATE TABLE public.t (id integer, body text);\nCOPY public.t (id, body) FROM stdin;\n1\tshort\n2\t');
      // 64 MiB: read to its end without the bound, and then accepted.
      for (let i = 0; i < 64; i += 1) yield Buffer.alloc(1 << 20, 'x');
      yield Buffer.from('\n\\.\n');
    };
    expect(maxRowLength).toBe(4 * 1024 * 1024);
    await expect(vetSqlScript(long())).rejects.toThrow(
      "line 5 of the backup's SQL: a row longer than 4 MiB, which no row of this schema comes near (the server builds its values in memory at many times that)",
    );
  });

  it('checks a large dump in bounded memory: rows and long lines stream through in pieces', async () => {
    const megabyte = 1 << 20;
    const rows = Buffer.from(Array.from({ length: 1024 }, (_, i) => `${i}\tZoë ✍️ ${'x'.repeat(1000)}\n`).join('')); // about 1 MB
    let peak = 0;
    const measure = () => {
      const { heapUsed, arrayBuffers } = process.memoryUsage();
      peak = Math.max(peak, heapUsed + arrayBuffers);
    };
    const dump = async function* () {
      yield Buffer.from('SET statement_timeout = 0;\nCREATE TABLE public.t (id integer, body text);\nCOPY public.t (id, body) FROM stdin;\n');
      for (let i = 0; i < 192; i += 1) {
        measure();
        yield rows;
      }
      // One row of the longest accepted, without a line break until its end.
      yield Buffer.from('192\t');
      for (let i = 0; i < 4; i += 1) {
        measure();
        yield Buffer.alloc(megabyte - (i === 3 ? 8 : 0), 'y');
      }
      yield Buffer.from('\n\\.\nSELECT pg_catalog.setval(\'public.t_id_seq\', 1, true);\n');
    };
    measure();
    const before = peak;
    peak = 0;

    await vetSqlScript(dump());

    // 196 MB of SQL went through; what stayed in memory at once is a small part of it.
    expect(peak - before).toBeLessThan(64 * megabyte);
  });
});

// What the check makes of a script fed in these chunks: its parts in order, then why it was
// refused, if it was.
async function readIn(chunks: Buffer[]): Promise<string[]> {
  const parts: string[] = [];
  try {
    for await (const part of sqlScriptParts(Readable.from(chunks), { database: 'kennwilliamson' })) parts.push(`${part.kind} at line ${part.line}: ${part.text}`);
  } catch (error) {
    parts.push(`refused: ${(error as Error).message}`);
  }
  return parts;
}

describe('reading a long line whatever the chunks it comes in', () => {
  // A line longer than 64 KiB is lexed in pieces cut where a chunk happens to end. In each
  // line here, blanks stand at `…` (outside any statement, so PostgreSQL's parser never reads
  // them and the test stays fast) for `‸` to fall at the 64 KiB mark; the line is cut once at
  // each of the `cuts` points from there, and must read as it does in one chunk.
  const pieceSize = 64 * 1024;
  const header = 'SET statement_timeout = 0;\n';
  const trailer = 'COMMENT ON TABLE public.t IS NULL;';
  const scriptOf = (line: string) => {
    const [beforeMark, fromMark] = line.replace('…', '').split('‸') as [string, string];
    const padded = line.replace('…', ' '.repeat(pieceSize - Buffer.byteLength(beforeMark))).replace('‸', '');
    const script = Buffer.from(`${header}${padded}\n${trailer}\n`);
    const mark = header.length + pieceSize;
    expect(script.subarray(mark).toString().startsWith(fromMark)).toBe(true);
    return { script, mark, after: Buffer.byteLength(fromMark) };
  };

  it.each([
    ['a closing dollar quote tag', "…CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $_$SELECT ';'‸$_$;"],
    ['an opening dollar quote tag', "…CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS ‸$body$SELECT ';'$body$;"],
    ['a dollar quote tag of two-byte characters', "…CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS ‸$éé$SELECT ';'$éé$;"],
    ['a word with $ in it, which opens no dollar quote', "…CREATE FUNCTION public.‸f$_$x() RETURNS text LANGUAGE sql AS 'SELECT 1';"],
    ['a word too long to hold, with $ in it', '…COMMENT ON TABLE public.‸a_longer_table_name$_$x IS NULL;', 24],
    ['FUNCTION, which makes BEGIN ATOMIC … END one statement', '…CREATE ‸FUNCTION public.twice(n integer) RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT (n * 2); END;'],
    ['the BEGIN of a routine body', '…CREATE FUNCTION public.twice(n integer) RETURNS integer LANGUAGE sql ‸BEGIN ATOMIC SELECT (n * 2); END;'],
    ['-- after a statement', "COMMENT ON TABLE public.t IS NULL;…‸-- ; 'x"],
    ['the rest of a -- comment longer than a piece', "--…‸'; x"],
    ['/* and */', '…COMMENT ON TABLE public.t IS NULL ‸/*/ ; */;'],
    ['a nested /* and */', '…COMMENT ON TABLE public.t IS NULL /*‸/**/**/;'],
    ["\\' in an E'' string", "…COMMENT ON TABLE public.t IS E'a‸\\'; x';"],
    ["'' in an E'' string", "…COMMENT ON TABLE public.t IS E'a‸''\\';';"],
    ["the E of E''", "…COMMENT ON TABLE public.t IS ‸E'\\';';"],
    ["\"\" in an identifier and '' in a string", `…COMMENT ON TABLE public."a‸""b" IS 'x'';''';`],
    ['a meta-command after a statement', 'COMMENT ON TABLE public.t IS NULL;…‸\\connect kennwilliamson'],
  ])('reads %s the same wherever the line is cut', async (_, line, cuts = 12) => {
    const { script, mark, after } = scriptOf(line);
    const whole = await readIn([script]);
    expect(whole.at(-1)).toBe(`sql at line 3: ${trailer}`);
    for (let cut = mark; cut <= mark + Math.min(cuts, after); cut += 1) {
      expect([cut - mark, await readIn([script.subarray(0, cut), script.subarray(cut)])]).toEqual([cut - mark, whole]);
    }
  });

  it("reads a line the same whatever the size of its chunks (the auditor's: $_$ across the 16 KiB chunk that ends at byte 81920)", async () => {
    const statement = "CREATE FUNCTION public.long_f() RETURNS text LANGUAGE sql AS $_$SELECT 'a'$_$;";
    const script = Buffer.from(`${header}${' '.repeat(81920 - header.length - statement.length + 2)}${statement}\n`);
    expect(script.subarray(81918, 81921).toString()).toBe('$_$'); // the tag's last $ starts the sixth 16 KiB chunk
    const whole = await readIn([script]);
    expect(whole).toEqual([`sql at line 1: ${header.trim()}`, `sql at line 2: ${statement}`]);
    for (const size of [1, 2, 3, 7, 1000, 4096, 16384, 65536]) {
      const chunks = Array.from({ length: Math.ceil(script.length / size) }, (_, i) => script.subarray(i * size, (i + 1) * size));
      expect([size, await readIn(chunks)]).toEqual([size, whole]);
    }
  });

  // The `;` that ends a COPY may end a piece, its line's blanks going on in the next.
  it('reads a COPY whose line goes on in blanks past a piece the same however it is cut', async () => {
    const copy = 'COPY public.t (a) FROM stdin;';
    const line = `${' '.repeat(pieceSize - copy.length)}${copy}`;
    const script = Buffer.from(`${line}${' '.repeat(1_000)}\n1\n\\.\n${trailer}\n`);
    const whole = await readIn([script]);
    expect(whole).toEqual([`copy at line 1: ${copy}`, `sql at line 4: ${trailer}`]);
    for (let cut = pieceSize - 2; cut <= pieceSize + 2; cut += 1) {
      expect([cut, await readIn([script.subarray(0, cut), script.subarray(cut)])]).toEqual([cut, whole]);
    }
    const followed = Buffer.from(`${line}${' '.repeat(1_000)}x\n1\n\\.\n`);
    const refused = ["refused: line 1 of the backup's SQL: text after COPY … FROM stdin on the same line"];
    expect(await readIn([followed])).toEqual(refused);
    expect(await readIn([followed.subarray(0, pieceSize), followed.subarray(pieceSize)])).toEqual(refused);
  });

  it('finishes a long last line without a line break whatever the chunks', async () => {
    const comment = Buffer.from(`${header}--${' '.repeat(pieceSize)}`);
    const cutShort = Buffer.concat([comment, Buffer.from('é').subarray(0, 1)]);
    for (const [script, outcome] of [
      [comment, [`sql at line 1: ${header.trim()}`]],
      [cutShort, [`sql at line 1: ${header.trim()}`, "refused: line 2 of the backup's SQL: not valid UTF-8"]],
    ] as const) {
      expect(await readIn([script])).toEqual(outcome);
      expect(await readIn([script.subarray(0, pieceSize), script.subarray(pieceSize)])).toEqual(outcome);
    }
  });

  it('refuses a statement just longer than the bound however its line is cut', async () => {
    const before = 'CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$';
    const script = Buffer.from(`${before}${' '.repeat(maxStatementLength - before.length - 2)}$$;\n`);
    const refused = `refused: line 1 of the backup's SQL: a statement longer than ${maxStatementLength / 1024} KiB, which pg_dump never writes for this schema`;
    // Only the start of each part is compared: a diff of a statement this long takes minutes.
    const outcome = async (chunks: Buffer[]) => (await readIn(chunks)).map((part) => part.slice(0, 200));
    expect(await outcome([script])).toEqual([refused]);
    expect(await outcome([script.subarray(0, pieceSize), script.subarray(pieceSize)])).toEqual([refused]);
  });
});
