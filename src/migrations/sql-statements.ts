/** One statement of a SQL script and the 1-based line on which it starts. */
export interface SqlStatement {
  text: string;
  line: number;
}

/**
 * Splits a PostgreSQL script into statements at top-level semicolons, skipping those inside
 * quotes, quoted identifiers, dollar-quoted bodies and comments. Running statements one at a
 * time is what lets a failed migration name the line it failed on.
 *
 * @example
 * splitSqlStatements("CREATE TABLE a (x int);\nDO $$ BEGIN PERFORM 1; END $$;")
 * // [{ text: 'CREATE TABLE a (x int)', line: 1 }, { text: 'DO $$ BEGIN PERFORM 1; END $$', line: 2 }]
 */
export function splitSqlStatements(sql: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  let line = 1;
  let start = -1; // index of the current statement's first significant character
  let startLine = 1;
  let i = 0;

  const advanceTo = (end: number): void => {
    for (let j = i; j < end; j++) if (sql.charCodeAt(j) === 10) line++;
    i = end;
  };
  const markStart = (): void => {
    if (start < 0) {
      start = i;
      startLine = line;
    }
  };

  while (i < sql.length) {
    const ch = sql[i]!;
    const next = sql[i + 1];
    if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      advanceTo(end < 0 ? sql.length : end);
    } else if (ch === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < sql.length && depth > 0) {
        if (sql[j] === '/' && sql[j + 1] === '*') (depth++, (j += 2));
        else if (sql[j] === '*' && sql[j + 1] === '/') (depth--, (j += 2));
        else j++;
      }
      advanceTo(j);
    } else if (ch === "'" || ch === '"') {
      markStart();
      // A doubled quote is an escaped quote; backslash escapes only matter in E'' strings.
      const escaped = ch === "'" && i > 0 && /[eE]/.test(sql[i - 1]!);
      let j = i + 1;
      while (j < sql.length) {
        if (escaped && sql[j] === '\\') j += 2;
        else if (sql[j] === ch && sql[j + 1] === ch) j += 2;
        else if (sql[j] === ch) break;
        else j++;
      }
      advanceTo(Math.min(j + 1, sql.length));
    } else if (ch === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i, i + 64))) {
      markStart();
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64))![0];
      const close = sql.indexOf(tag, i + tag.length);
      advanceTo(close < 0 ? sql.length : close + tag.length);
    } else if (ch === ';') {
      if (start >= 0) statements.push({ text: sql.slice(start, i).trim(), line: startLine });
      start = -1;
      advanceTo(i + 1);
    } else {
      if (!/\s/.test(ch)) markStart();
      advanceTo(i + 1);
    }
  }
  if (start >= 0 && sql.slice(start).trim() !== '') {
    statements.push({ text: sql.slice(start).trim(), line: startLine });
  }
  return statements;
}

/** The 1-based line, within `text`, of a 1-based character position PostgreSQL reported. */
export function lineOfPosition(text: string, position: number): number {
  let line = 1;
  for (let j = 0; j < Math.min(position - 1, text.length); j++) if (text.charCodeAt(j) === 10) line++;
  return line;
}
