import { loadModule, normalizeSync, parseSync, scanSync, type ScanToken } from 'libpg-query';

/** The longest shape {@link statementShape} returns, in characters, `…` included. */
export const statementShapeLength = 80;

// Tokens that carry no data: keywords, identifiers, placeholders, and operators and
// punctuation (which the scanner often names UNKNOWN, as it does B'…', X'…' and U&'…').
// Everything else is data (string, number and bit-string constants) and comments are
// dropped: an allow-list, not a list of the kinds of literal.
function carriesNoData(token: ScanToken): boolean {
  return token.keywordKind !== 0 || token.tokenName === 'IDENT' || token.tokenName === 'PARAM' || /^[^\w\s'"$]+$/.test(token.text);
}
const comment = new Set(['SQL_COMMENT', 'C_COMMENT']);

/**
 * The shape of a statement another session runs, as `pg_stat_activity` shows it, fit for a
 * message or a log line: never its data. An admin's `UPDATE users SET password_hash = '…'
 * WHERE email = '…'` is exactly the session that blocks a migration, and its hash and email
 * must not reach stderr. PostgreSQL's own normalization (libpg_query's, as
 * `pg_stat_statements` does it) turns constants into `$1`, `$2` …; what it leaves (the
 * literals of `PREPARE`, `EXECUTE` and `COPY`, comments) is dropped or replaced too. Text
 * that does not parse, most often a statement cut short at `track_activity_query_size`
 * bytes inside a literal, is reduced to its first keyword: `UPDATE …`. (libpg-query's
 * `normalize` returns some errors, quoting the text, as if they were its result, so the text
 * is parsed first.)
 *
 * @example
 * await statementShape("UPDATE users SET password_hash = 'x' WHERE email = 'a@b.c'") // 'UPDATE users SET password_hash = $1 WHERE email = $2'
 * await statementShape("UPDATE users SET password_hash = 'x' WHERE email = 'a@b") // 'UPDATE …'
 */
export async function statementShape(text: string): Promise<string> {
  await loadModule();
  if (text.trim() === '') return '';
  let normalized: string;
  let tokens: ScanToken[];
  try {
    parseSync(text);
    normalized = normalizeSync(text);
    tokens = scanSync(normalized).tokens;
  } catch {
    return firstKeyword(text);
  }
  return cut(withoutData(normalized, tokens));
}

function withoutData(normalized: string, tokens: ScanToken[]): string {
  const bytes = Buffer.from(normalized, 'utf8');
  let next = 1 + Math.max(0, ...tokens.filter((t) => t.tokenName === 'PARAM').map((t) => Number(t.text.slice(1)) || 0));
  let shape = '';
  let end = 0;
  for (const token of tokens) {
    // Between two tokens there is only whitespace (comments are tokens): one space, or none.
    const space = token.start > end && shape !== '' ? ' ' : '';
    end = token.end;
    if (comment.has(token.tokenName)) continue;
    shape += space + (carriesNoData(token) ? bytes.subarray(token.start, token.end).toString('utf8') : `$${next++}`);
  }
  return shape;
}

// The statement's kind: its first word, when the scanner knows it as a keyword.
function firstKeyword(text: string): string {
  const word = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*([A-Za-z_]+)/.exec(text)?.[1];
  if (word === undefined) return '';
  try {
    return scanSync(word).tokens[0]?.keywordKind ? `${word.toUpperCase()} …` : '';
  } catch {
    return '';
  }
}

function cut(shape: string): string {
  return shape.length <= statementShapeLength ? shape : `${shape.slice(0, statementShapeLength - 1)}…`;
}
