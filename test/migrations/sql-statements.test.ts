import { describe, expect, it } from 'vitest';
import { lineOfPosition, splitSqlStatements } from '../../src/migrations/sql-statements.js';

describe('splitSqlStatements', () => {
  it('splits at top-level semicolons and reports the line each statement starts on', () => {
    const sql = 'CREATE TABLE a (x int);\n\n-- a comment; with a semicolon\nINSERT INTO a VALUES (1);\n';
    expect(splitSqlStatements(sql)).toEqual([
      { text: 'CREATE TABLE a (x int)', line: 1 },
      { text: 'INSERT INTO a VALUES (1)', line: 4 },
    ]);
  });

  it('keeps semicolons inside strings, quoted identifiers, dollar quotes and block comments', () => {
    const sql = [
      "INSERT INTO t VALUES ('a;b', 'it''s; fine', E'x\\';y');",
      'SELECT 1 AS "odd;name";',
      'DO $body$ BEGIN PERFORM 1; PERFORM $$;$$; END $body$;',
      '/* outer /* nested; */ still comment; */ SELECT 2;',
    ].join('\n');
    expect(splitSqlStatements(sql).map((s) => s.line)).toEqual([1, 2, 3, 4]);
    expect(splitSqlStatements(sql)[2]!.text).toBe('DO $body$ BEGIN PERFORM 1; PERFORM $$;$$; END $body$');
  });

  it('keeps a last statement without a semicolon and drops empty ones', () => {
    expect(splitSqlStatements(';;\nSELECT 1')).toEqual([{ text: 'SELECT 1', line: 2 }]);
  });
});

describe('lineOfPosition', () => {
  it('turns a 1-based character position into a 1-based line', () => {
    expect(lineOfPosition('SELECT *\n  FROM nowhere', 12)).toBe(2);
    expect(lineOfPosition('SELECT 1', 1)).toBe(1);
  });
});
