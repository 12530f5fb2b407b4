import { describe, expect, it } from 'vitest';
import { MigrationScriptError } from '../../src/errors.js';
import { parseMigrationScript } from '../../src/migrations/migration-script.js';
import { lineOfPosition } from '../../src/sql-position.js';

const statementsOf = async (sql: string) =>
  (await parseMigrationScript('x.up.sql', `-- migrate:no-transaction\n${sql}`)).statements.map((s) => s.text);

const refusal = (sql: string): Promise<MigrationScriptError> =>
  parseMigrationScript('20990101000000_x.up.sql', sql).then(
    () => {
      throw new Error('expected the file to be refused');
    },
    (e: unknown) => e as MigrationScriptError,
  );

describe('parseMigrationScript: statement boundaries are PostgreSQL’s own', () => {
  it('keeps a BEGIN ATOMIC … END function body whole', async () => {
    const body = 'CREATE FUNCTION two() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND';
    expect(await statementsOf(`${body};\nSELECT two();`)).toEqual([body, 'SELECT two()']);
  });

  it('reads DATE\'…\' as a typed literal, not an E\'\' string, so a backslash in the next string does not run on', async () => {
    expect(await statementsOf("SELECT DATE'2025-01-01';\nSELECT 'C:\\';\nSELECT 3;")).toEqual([
      "SELECT DATE'2025-01-01'",
      "SELECT 'C:\\'",
      'SELECT 3',
    ]);
  });

  it('reads a$b$ as an identifier, not the start of a dollar quote', async () => {
    expect(await statementsOf('SELECT 1 AS a$b$;\nSELECT 2 AS c;\nSELECT $b$;$b$;')).toEqual([
      'SELECT 1 AS a$b$',
      'SELECT 2 AS c',
      'SELECT $b$;$b$',
    ]);
  });

  it('reads strings with standard_conforming_strings on: a backslash escapes only in E\'\' strings', async () => {
    expect(await statementsOf("SELECT 'a\\';\nSELECT E'b\\';';\nSELECT 3;")).toEqual(["SELECT 'a\\'", "SELECT E'b\\';'", 'SELECT 3']);
  });

  it('skips nested /* /* */ */ comments and semicolons inside strings, identifiers, comments and dollar quotes', async () => {
    const script = await parseMigrationScript(
      'x.up.sql',
      [
        '-- migrate:no-transaction',
        '/* outer /* inner; */ still a comment; */',
        "SELECT ';', 'it''s; fine';", // line 3
        'SELECT 1 AS ";"; -- a comment; with a semicolon',
        'DO $body$ BEGIN PERFORM 1; PERFORM $$;$$; END $body$;',
        'SELECT 4',
      ].join('\n'),
    );
    expect(script.statements.map((s) => [s.line, s.text])).toEqual([
      [3, "SELECT ';', 'it''s; fine'"],
      [4, 'SELECT 1 AS ";"'],
      [5, 'DO $body$ BEGIN PERFORM 1; PERFORM $$;$$; END $body$'],
      [6, 'SELECT 4'],
    ]);
  });

  it('counts lines in characters across multi-byte text', async () => {
    const script = await parseMigrationScript('x.up.sql', "-- migrate:no-transaction\nSELECT 'é ünïcode';\n\nSELECT '€';");
    expect(script.statements.map((s) => [s.line, s.text])).toEqual([
      [2, "SELECT 'é ünïcode'"],
      [4, "SELECT '€'"],
    ]);
    expect(lineOfPosition("SELECT 'é';\nSELECT x", 13)).toBe(2);
  });

  it('tells a transactional file from one whose first line is the no-transaction header', async () => {
    expect((await parseMigrationScript('a.up.sql', 'CREATE TABLE a (id int);')).transactional).toBe(true);
    expect((await parseMigrationScript('b.up.sql', '-- migrate:no-transaction\r\nVACUUM')).transactional).toBe(false);
    expect((await parseMigrationScript('c.up.sql', '-- only a comment\n')).statements).toEqual([]);
  });

  // As a file of comments only: before, PostgreSQL's scanner failed on no text at all, and the
  // run said only `Unexpected token 'I', "Invalid in"... is not valid JSON`, naming no file.
  it('reads an empty file as one with no statements', async () => {
    expect(await parseMigrationScript('d.up.sql', '')).toMatchObject({ transactional: true, statements: [] });
  });

  it('names the index a CREATE INDEX CONCURRENTLY builds', async () => {
    const script = await parseMigrationScript('x.up.sql', '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);');
    expect(script.statements[0]).toMatchObject({ kind: 'IndexStmt', concurrentIndex: 'users_email', concurrentIndexRef: '"users_email"', line: 2 });
    // As DROP INDEX takes it: in its table's schema, with the case a quoted name keeps.
    const qualified = await parseMigrationScript('y.up.sql', '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY "Events_At" ON audit.events (at);');
    expect(qualified.statements[0]).toMatchObject({ concurrentIndex: 'Events_At', concurrentIndexRef: '"audit"."Events_At"' });
  });
});

describe('parseMigrationScript refuses a file before anything runs', () => {
  it.each([
    ['BEGIN;', 3],
    ['COMMIT;', 3],
    ['END;', 3],
    ['ROLLBACK;', 3],
    ['ABORT;', 3],
    ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE;', 3],
    ["PREPARE TRANSACTION 'x';", 3],
  ])('%s in a transactional file, naming file and line and pointing at the header', async (statement, line) => {
    const error = await refusal(`CREATE TABLE a (id int);\n\n${statement}\nCREATE TABLE b (id int);`);
    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ file: '20990101000000_x.up.sql', line });
    expect(error.message).toContain(`20990101000000_x.up.sql line ${line}`);
    expect(error.message).toContain('-- migrate:no-transaction');
  });

  it('allows BEGIN ATOMIC and savepoints in a transactional file: they cannot end its transaction', async () => {
    const script = await parseMigrationScript(
      'x.up.sql',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nRELEASE SAVEPOINT s;',
    );
    expect(script.statements.map((s) => s.kind)).toEqual(['CreateFunctionStmt', 'TransactionStmt', 'TransactionStmt', 'TransactionStmt']);
  });

  it('refuses any transaction control in a no-transaction file', async () => {
    const error = await refusal('-- migrate:no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON t (x);\nCOMMIT;');
    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ line: 2 });
  });

  it('refuses COPY … FROM stdin with its data rows, naming the line of the COPY', async () => {
    const error = await refusal('CREATE TABLE t (id int, v text);\nCOPY t (id, v) FROM stdin;\n1\tone\n2\ttwo\n\\.\n');
    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ line: 2 });
    expect(error.message).toContain('COPY … FROM stdin is not supported');
    expect(await refusal('-- migrate:no-transaction\n\nCOPY t FROM STDIN;')).toMatchObject({ line: 3 });
    // Reading a server-side file is not client data.
    expect((await parseMigrationScript('x.up.sql', "COPY t FROM '/srv/data.csv' WITH (FORMAT csv);")).statements).toHaveLength(1);
  });

  it('refuses a syntax error with its line', async () => {
    const error = await refusal('CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,);\n');
    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ line: 3 });
    expect(error.message).toContain('syntax error');
  });

  it('refuses a misspelt or misplaced header instead of ignoring it', async () => {
    expect(await refusal('-- migrate:no_transaction\nVACUUM;')).toMatchObject({ line: 1 });
    expect(await refusal('-- adds an index\n-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);')).toMatchObject({ line: 2 });
  });
});

describe('parseMigrationScript: the lock-wait header', () => {
  it('reads a file’s own lock budget, beside the no-transaction header, in either order', async () => {
    const budget = await parseMigrationScript('x.up.sql', '-- migrate:lock-wait attempt=5s total=1h\nALTER TABLE t ADD COLUMN c int;');
    expect(budget).toMatchObject({ transactional: true, lockWait: { attemptMs: 5_000, totalMs: 3_600_000 } });
    const both = await parseMigrationScript('x.up.sql', '-- migrate:no-transaction\r\n-- migrate:lock-wait total=30min\r\nVACUUM t;');
    expect(both).toMatchObject({ transactional: false, lockWait: { totalMs: 1_800_000 } });
    const swapped = await parseMigrationScript('x.up.sql', '-- migrate:lock-wait attempt=250ms\n-- migrate:no-transaction\nVACUUM t;');
    expect(swapped).toMatchObject({ transactional: false, lockWait: { attemptMs: 250 } });
    expect((await parseMigrationScript('x.up.sql', 'SELECT 1;')).lockWait).toBeUndefined();
  });

  it.each([
    ['an unknown setting', '-- migrate:lock-wait timeout=5s\nSELECT 1;', 1, "unknown setting 'timeout'"],
    ['a bad duration', '-- migrate:lock-wait attempt=soon\nSELECT 1;', 1, 'attempt must be a duration'],
    // Read as milliseconds, total=600 gave up after 516 ms where 10 minutes were likely meant.
    ['a duration without its unit', '-- migrate:lock-wait total=600\nSELECT 1;', 1, "'total=600' has no unit (write total=600s or total=600ms)"],
    ['a fraction without its unit', '-- migrate:no-transaction\n-- migrate:lock-wait attempt=0.5\nVACUUM t;', 2, "'attempt=0.5' has no unit"],
    ['an attempt longer than the total', '-- migrate:lock-wait attempt=2min total=1min\nSELECT 1;', 1, 'attempt longer than total'],
    ['a setting given twice', '-- migrate:lock-wait total=1min total=2min\nSELECT 1;', 1, "'total' given twice"],
    ['no setting at all', '-- migrate:no-transaction\n-- migrate:lock-wait\nVACUUM t;', 2, 'unknown header'],
    ['the header twice', '-- migrate:lock-wait total=1min\n-- migrate:lock-wait total=2min\nSELECT 1;', 2, 'repeated header'],
    ['the header below a comment', '-- a long one\n-- migrate:lock-wait total=1h\nSELECT 1;', 2, 'misplaced header'],
  ])('refuses %s, naming its line', async (_what, sql, line, reason) => {
    const error = await refusal(sql);
    expect(error).toBeInstanceOf(MigrationScriptError);
    expect(error).toMatchObject({ line });
    expect(error.message).toContain(reason);
  });
});

describe('parseMigrationScript: statements that only take locks no query waits behind', () => {
  it('marks CONCURRENTLY and VACUUM, which wait for their locks in one attempt, and nothing else', async () => {
    const script = await parseMigrationScript(
      'x.up.sql',
      [
        '-- migrate:no-transaction',
        'CREATE INDEX CONCURRENTLY i ON t (x);',
        'DROP INDEX CONCURRENTLY i;',
        'REINDEX INDEX CONCURRENTLY j;',
        'VACUUM t;',
        'CREATE INDEX k ON t (x);',
        'ALTER TABLE t ADD COLUMN y int;',
      ].join('\n'),
    );
    expect(script.statements.map((statement) => statement.concurrent)).toEqual([true, true, true, true, false, false]);
  });

  // VACUUM FULL rewrites the table under ACCESS EXCLUSIVE: waiting the whole budget in one
  // attempt would queue every query of the table behind it for up to ten minutes.
  it('leaves VACUUM FULL, however spelt, to the short attempts, and keeps plain VACUUM and ANALYZE in one', async () => {
    const statements = [
      ['VACUUM FULL t;', false],
      ['VACUUM (FULL) t;', false],
      ['VACUUM (FULL true, ANALYZE) t;', false],
      ['VACUUM (FULL 1) t;', false],
      ['VACUUM FULL ANALYZE t;', false],
      ['VACUUM FULL;', false],
      ['VACUUM (FULL false) t;', true],
      ['VACUUM (FULL off) t;', true],
      ['VACUUM (FULL 0) t;', true],
      ['VACUUM (ANALYZE) t;', true],
      ['ANALYZE t;', true],
      ['REINDEX (CONCURRENTLY false) INDEX j;', false],
      ['REINDEX INDEX j;', false],
      ['CLUSTER t USING i;', false],
    ] as const;
    const script = await parseMigrationScript('x.up.sql', ['-- migrate:no-transaction', ...statements.map(([text]) => text)].join('\n'));
    expect(script.statements.map((statement) => [`${statement.text};`, statement.concurrent])).toEqual(statements);
  });
});
