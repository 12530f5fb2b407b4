import { RestoreError } from '../errors.js';

/**
 * A piece of a backup's SQL, ready to send as one simple-protocol query: complete
 * statements (`sql`), or statements ending with `COPY … FROM stdin` followed by that COPY's
 * rows (`copy`). Consume `data` to its end before asking for the next part.
 */
export type SqlScriptPart =
  | { kind: 'sql'; text: string; line: number }
  | { kind: 'copy'; text: string; line: number; table: string; data: AsyncIterable<Buffer> };

/** Options of {@link sqlScriptParts}. */
export interface SqlScriptOptions {
  /** The database restored into: the only one a `\connect` line may name (unchecked when left out, to vet a file alone). */
  database?: string;
}

// Statements that would end, or split, the one transaction a restore runs in.
const transactionControl = new Set(['BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE']);
const identifierStart = /[A-Za-z_\u0080-\uffff]/;
const identifierPart = /[A-Za-z0-9_$\u0080-\uffff]/;
const dollarTag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

async function* linesOf(source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of source) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, Buffer.from(chunk)]);
    let start = 0;
    for (let end = pending.indexOf(10, start); end !== -1; end = pending.indexOf(10, start)) {
      yield pending.subarray(start, end + 1);
      start = end + 1;
    }
    pending = pending.subarray(start);
  }
  if (pending.length > 0) yield pending;
}

// `\.` alone on its line (LF, CRLF or at the very end), compared as bytes: this runs for every
// COPY row of a restore.
const isEndOfCopy = (line: Buffer) =>
  line.length <= 4 &&
  line[0] === 0x5c &&
  line[1] === 0x2e &&
  (line.length === 2 || (line.length === 3 && line[2] === 0x0a) || (line.length === 4 && line[2] === 0x0d && line[3] === 0x0a));

/**
 * Reads a backup's SQL (pg_dump's plain format, or `pg_restore --file=-` of an archive) and
 * hands it over as queries to send to the server, refusing what a backup made by pg_dump
 * never holds and what psql alone would act on. psql meta-commands are never executed, so
 * `\!` (a shell command), `\o`, `\copy … program`, `\i` and the rest are refused with the
 * line number; the only ones accepted are those pg_dump writes, and they are dropped:
 * `\connect` to the database being restored into, `\restrict KEY` / `\unrestrict KEY`
 * (pg_dump 17.6 and later, checked to pair up), and the `\.` that ends COPY data. Also
 * refused: transaction control (`BEGIN`, `COMMIT` …: the restore is one transaction), COPY
 * other than `FROM stdin`, and a client encoding other than UTF8. Quoted strings, quoted
 * identifiers, dollar quotes, comments and `BEGIN ATOMIC` bodies are read as psql reads
 * them, so a backslash or semicolon inside them is data. Throws {@link RestoreError}.
 *
 * @example
 * for await (const part of sqlScriptParts(gunzipped, { database: 'kennwilliamson' })) {
 *   if (part.kind === 'copy') await copyIn(part.text, part.data); else await client.query(part.text)
 * }
 */
export async function* sqlScriptParts(source: AsyncIterable<Buffer | string>, options: SqlScriptOptions): AsyncGenerator<SqlScriptPart> {
  const lines = linesOf(source)[Symbol.asyncIterator]();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let lineNumber = 0;
  const refuse = (reason: string): never => {
    throw new RestoreError(`line ${lineNumber} of the backup's SQL: ${reason}`);
  };

  // Lexer state, carried across lines.
  let mode: 'sql' | 'quote' | 'equote' | 'ident' | 'dollar' | 'block' = 'sql';
  let tag = '';
  let blockDepth = 0;
  let parenDepth = 0;
  let beginDepth = 0;
  let statement = '';
  let hasCode = false;
  let words: string[] = [];
  let batch = '';
  let batchLine = 0;
  // Where the current statement's code starts (comments and blank lines before it are dropped).
  let statementLine = 0;
  let codeStart = 0;
  let restrictKey: string | undefined;

  const isRoutine = () =>
    words[0] === 'CREATE' &&
    (['FUNCTION', 'PROCEDURE'].includes(words[1] ?? '') ||
      (words[1] === 'OR' && words[2] === 'REPLACE' && ['FUNCTION', 'PROCEDURE'].includes(words[3] ?? '')));

  const resetStatement = () => {
    statement = '';
    hasCode = false;
    words = [];
    parenDepth = 0;
    beginDepth = 0;
  };

  // Checks a complete statement; returns the COPY's table when it reads COPY data.
  const finishStatement = (): string | undefined => {
    const first = words[0];
    if (first && transactionControl.has(first)) {
      refuse(`'${first}' would end the restore's one transaction; a backup made by pg_dump holds no transaction control`);
    }
    if (first === 'PREPARE' && words[1] === 'TRANSACTION') refuse('PREPARE TRANSACTION is not allowed in a restore');
    if (first === 'SET' && words[1] === 'CLIENT_ENCODING' && !/(=|\bTO)\s*'?UTF-?8'?\s*;\s*$/i.test(statement)) {
      refuse('only UTF8 backups can be restored (the statement sets another client_encoding)');
    }
    if (first === 'SET' && words[1] === 'STANDARD_CONFORMING_STRINGS' && !/(=|\bTO)\s*'?on'?\s*;\s*$/i.test(statement)) {
      refuse('standard_conforming_strings must stay on, as pg_dump writes it');
    }
    if (first === 'COPY') {
      const from = words.indexOf('FROM');
      if (from === -1 || words[from + 1] !== 'STDIN') refuse('only COPY … FROM stdin, as pg_dump writes it, is allowed');
      return /^\s*COPY\s+((?:"(?:[^"]|"")*"|[^\s("])+)/i.exec(statement.slice(codeStart))?.[1] ?? '?';
    }
    return undefined;
  };

  const connectTarget = (argument: string): string | undefined => {
    if (/^[A-Za-z0-9_]+$/.test(argument)) return argument;
    if (/^"[^"]*"$/.test(argument)) return argument.slice(1, -1);
    // pg_dump's form for names needing quotes: -reuse-previous=on "dbname='it''s'".
    const quoted = /^-reuse-previous=on\s+"dbname='((?:[^'\\"]|\\.|'')*)'"$/.exec(argument)?.[1];
    return quoted?.replace(/\\(.)/g, '$1').replace(/''/g, "'");
  };

  const metaCommand = (text: string) => {
    const name = /^\\([A-Za-z]+|.)/.exec(text)?.[1] ?? '';
    const argument = text.slice(name.length + 1).trim();
    if (name === 'connect' || name === 'c') {
      const named = connectTarget(argument);
      if (named === undefined || (options.database !== undefined && named !== options.database)) {
        refuse(`\\${name} to another database than '${options.database ?? 'the one restored into'}' is not allowed`);
      }
      return;
    }
    if (name === 'restrict' || name === 'unrestrict') {
      if (!/^[A-Za-z0-9]+$/.test(argument)) refuse(`\\${name} needs a key of letters and digits`);
      if (name === 'restrict') {
        if (restrictKey !== undefined) refuse('\\restrict while already restricted');
        restrictKey = argument;
      } else {
        if (restrictKey !== argument) refuse('\\unrestrict with a key that no \\restrict set');
        restrictKey = undefined;
      }
      return;
    }
    refuse(`the psql meta-command '\\${name}' is not allowed (a backup made by pg_dump holds none; it is never run)`);
  };

  // Rows of a COPY, in chunks of about 64 KiB, up to its `\.` line.
  async function* copyRows(): AsyncGenerator<Buffer> {
    let chunk: Buffer[] = [];
    let size = 0;
    for (;;) {
      const next = await lines.next();
      if (next.done) refuse('the backup ends inside COPY data (no \\. line)');
      lineNumber += 1;
      const line = next.value as Buffer;
      if (isEndOfCopy(line)) break;
      chunk.push(line);
      size += line.length;
      if (size >= 1 << 16) {
        yield Buffer.concat(chunk);
        chunk = [];
        size = 0;
      }
    }
    if (size > 0) yield Buffer.concat(chunk);
  }

  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    lineNumber += 1;
    let line: string;
    try {
      line = decoder.decode(next.value);
    } catch {
      return refuse('not valid UTF-8');
    }
    let i = 0;
    let copyTable: string | undefined;
    while (i < line.length) {
      const c = line[i]!;
      if (mode === 'quote' || mode === 'equote') {
        if (mode === 'equote' && c === '\\') {
          statement += line.slice(i, i + 2);
          i += 2;
        } else if (c === "'" && line[i + 1] === "'") {
          statement += "''";
          i += 2;
        } else {
          statement += c;
          i += 1;
          if (c === "'") mode = 'sql';
        }
        continue;
      }
      if (mode === 'ident') {
        const end = line.indexOf('"', i);
        const stop = end === -1 ? line.length : end + 1;
        statement += line.slice(i, stop);
        i = stop;
        if (end !== -1) {
          if (line[i] === '"') {
            statement += '"';
            i += 1;
          } else mode = 'sql';
        }
        continue;
      }
      if (mode === 'dollar') {
        const end = line.indexOf(tag, i);
        const stop = end === -1 ? line.length : end + tag.length;
        statement += line.slice(i, stop);
        i = stop;
        if (end !== -1) mode = 'sql';
        continue;
      }
      if (mode === 'block') {
        if (c === '/' && line[i + 1] === '*') blockDepth += 1;
        if (c === '*' && line[i + 1] === '/') blockDepth -= 1;
        const two = (c === '/' && line[i + 1] === '*') || (c === '*' && line[i + 1] === '/');
        statement += two ? line.slice(i, i + 2) : c;
        i += two ? 2 : 1;
        if (blockDepth === 0) mode = 'sql';
        continue;
      }

      // mode === 'sql'
      if (c === '-' && line[i + 1] === '-') {
        statement += line.slice(i);
        break;
      }
      if (c === '/' && line[i + 1] === '*') {
        mode = 'block';
        blockDepth = 1;
        statement += '/*';
        i += 2;
        continue;
      }
      if (c === '\\') {
        // psql reads a backslash outside quotes as the start of a meta-command, anywhere.
        if (hasCode) refuse('a psql meta-command inside a statement is not allowed');
        metaCommand(line.slice(i).replace(/\r?\n$/, ''));
        break;
      }
      if (/\s/.test(c)) {
        statement += c;
        i += 1;
        continue;
      }
      if (!hasCode) {
        hasCode = true;
        statementLine = lineNumber;
        codeStart = statement.length;
      }
      if (identifierStart.test(c)) {
        let end = i + 1;
        while (end < line.length && identifierPart.test(line[end]!)) end += 1;
        const word = line.slice(i, end);
        statement += word;
        i = end;
        const upper = word.toUpperCase();
        if (upper === 'E' && line[i] === "'") {
          mode = 'equote';
          statement += "'";
          i += 1;
          continue;
        }
        // A COPY's column list can be long; FROM stdin comes after it.
        if (words.length < 64 || words[0] === 'COPY') words.push(upper);
        // As psql: BEGIN … END (and CASE … END within) of a routine body, outside parentheses.
        if (isRoutine() && parenDepth === 0) {
          if (upper === 'BEGIN' || (upper === 'CASE' && beginDepth > 0)) beginDepth += 1;
          else if (upper === 'END' && beginDepth > 0) beginDepth -= 1;
        }
        continue;
      }
      if (/[0-9]/.test(c)) {
        let end = i + 1;
        while (end < line.length && identifierPart.test(line[end]!)) end += 1;
        statement += line.slice(i, end);
        i = end;
        continue;
      }
      if (c === "'") mode = 'quote';
      else if (c === '"') mode = 'ident';
      else if (c === '$') {
        const opening = dollarTag.exec(line.slice(i))?.[0];
        if (opening) {
          mode = 'dollar';
          tag = opening;
          statement += opening;
          i += opening.length;
          continue;
        }
      } else if (c === '(') parenDepth += 1;
      else if (c === ')') parenDepth = Math.max(0, parenDepth - 1);
      statement += c;
      i += 1;
      if (c === ';' && parenDepth === 0 && beginDepth === 0) {
        const table = finishStatement();
        if (batch === '') batchLine = statementLine;
        batch += (batch === '' ? '' : ' ') + statement.slice(codeStart);
        resetStatement();
        if (table !== undefined) {
          // The rows start on the next line, whatever follows the COPY on this one.
          copyTable = table;
          if (line.slice(i).trim() !== '') refuse('text after COPY … FROM stdin on the same line');
          break;
        }
      }
    }

    if (copyTable !== undefined) {
      const data = copyRows();
      const part: SqlScriptPart = { kind: 'copy', text: batch, line: batchLine, table: copyTable, data };
      batch = '';
      yield part;
      // A consumer that only checks the script (or stopped early) leaves rows unread.
      for await (const _ of data) void _;
    } else if (batch !== '') {
      // Each line's statements as one query, so that a failure names its line.
      yield { kind: 'sql', text: batch, line: batchLine };
      batch = '';
    }
  }

  if (mode !== 'sql') refuse(`the backup ends inside ${mode === 'block' ? 'a comment' : 'a quoted string or identifier'}`);
  if (restrictKey !== undefined) refuse('the backup ends without its \\unrestrict line: it may be cut short');
  // psql runs a last statement without ';' at the end of its input; so does this.
  if (hasCode) {
    if (finishStatement() !== undefined) refuse('the backup ends at a COPY without its data');
    if (batch === '') batchLine = statementLine;
    batch += (batch === '' ? '' : ' ') + statement.slice(codeStart);
  }
  if (batch.trim() !== '') yield { kind: 'sql', text: batch, line: batchLine };
}

/**
 * Reads a whole backup script through {@link sqlScriptParts} without running anything: the
 * check a restore makes before it touches the database. Throws {@link RestoreError}.
 *
 * @example await vetSqlScript(createReadStream(file).pipe(createGunzip()))
 */
export async function vetSqlScript(source: AsyncIterable<Buffer | string>, options: SqlScriptOptions = {}): Promise<void> {
  // sqlScriptParts reads (and checks) the COPY data a consumer leaves unread itself.
  for await (const _ of sqlScriptParts(source, options)) void _;
}
