import { oneLine } from '../../one-line.js';
import { RestoreError } from '../../errors.js';
import {
  type AcceptedStatementKind,
  type BackupGrantees,
  checkBackupStatement,
  loadBackupStatementParser,
  type PrivilegeChange,
} from './backup-statement-allow-list.js';

/**
 * One statement of a backup's SQL, checked and ready to send as one query (`sql`), or a
 * checked `COPY table (columns) FROM stdin` followed by its rows (`copy`). Consume `data` to
 * its end before asking for the next part.
 */
export type SqlScriptPart =
  | {
      kind: 'sql';
      text: string;
      line: number;
      /** What the allow-list accepted it as. */
      statement: AcceptedStatementKind;
      /** For `CREATE EXTENSION` and `COMMENT ON EXTENSION`: the extension. */
      extension?: string;
      /** For `SET`: the setting. */
      setting?: string;
      /** For `GRANT`, `REVOKE` and `ALTER DEFAULT PRIVILEGES`: whom it names. */
      privileges?: PrivilegeChange;
      /** Its parse tree, as the allow-list read it (libpg_query's `stmt`). */
      tree?: Record<string, unknown>;
    }
  | { kind: 'copy'; text: string; line: number; table: string; data: AsyncIterable<Buffer> };

/** Options of {@link sqlScriptParts}. */
export interface SqlScriptOptions {
  /** The database restored into: the only one a `\connect` line may name (unchecked when left out, to vet a file alone). */
  database?: string;
  /**
   * Whom the backup may grant privileges to (the role restoring and the application role);
   * a GRANT to anyone else is refused. Left out to vet a file alone (at backup time).
   */
  grantees?: BackupGrantees;
}

/**
 * The longest statement accepted, in characters. pg_dump's statements for this schema are a
 * few kilobytes at most; rows, however many, are COPY data and never count. The bound is
 * what keeps a statement that never ends (or a hostile one) from filling memory: PostgreSQL's
 * parse tree of a statement, as JSON, is some 35 times its text, and one of 4 MiB (a list of
 * two million items) took 1.4 GB and 20 s to check, and ended a process whose heap was 512 MB.
 */
export const maxStatementLength = 256 * 1024;

/**
 * The most statements other than rows a backup may hold. pg_dump writes a few hundred for this
 * schema; each is checked, and run with every table held, at a round trip or two: 200,000
 * `SET`s of a 17 kB file held the tables for 55 s.
 */
export const maxStatements = 50_000;

/**
 * The longest row of a COPY accepted, in bytes. This schema's longest text is 2,000
 * characters, and a row a few kilobytes; but the server builds a row's values in memory at many
 * times its text (a jsonb array: some 44 times), before any CHECK: one row of 100 MB, 103 kB of
 * gzip, took 4.4 GB of the restoring backend's memory, and one near COPY's 1 GB limit would
 * take the server down (a backup audit).
 */
export const maxRowLength = 4 * 1024 * 1024;

// Lines are read in pieces of at most this many bytes, so one endless line cannot fill
// memory either; COPY rows pass through in pieces of about this size too.
const pieceSize = 64 * 1024;

const dollarTag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;
// The longest dollar quote tag looked for, `$` to `$`, and so the most a piece's end is held
// for the next (see StatementLexer).
const maxHeld = 256;
// Words are held up to this length: longer than any keyword the lexer looks for.
const maxHeldWord = 16;
// psql's identifier characters, by code: letters, `_`, anything beyond ASCII; then digits and `$`.
const isIdentifierStart = (code: number) => (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95 || code >= 128;
const isIdentifierPart = (code: number) => isIdentifierStart(code) || (code >= 48 && code <= 57) || code === 36;

/** A piece of one line: all of it, or up to {@link pieceSize} bytes of a longer one. */
interface LinePiece {
  bytes: Buffer;
  /** The piece starts a line. */
  first: boolean;
  /** The piece ends its line (with LF, or at the end of the input). */
  last: boolean;
}

async function* linePieces(source: AsyncIterable<Buffer | string>): AsyncGenerator<LinePiece> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let first = true;
  for await (const chunk of source) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    while (start < buffer.length) {
      const end = buffer.indexOf(10, start);
      if (end === -1) {
        pending.push(buffer.subarray(start));
        pendingBytes += buffer.length - start;
        if (pendingBytes >= pieceSize) {
          yield { bytes: Buffer.concat(pending), first, last: false };
          pending = [];
          pendingBytes = 0;
          first = false;
        }
        break;
      }
      const line = buffer.subarray(start, end + 1);
      yield { bytes: pendingBytes === 0 ? line : Buffer.concat([...pending, line]), first, last: true };
      pending = [];
      pendingBytes = 0;
      first = true;
      start = end + 1;
    }
  }
  // Even when nothing is left of a line already cut: its readers finish it only at its last
  // piece (the lexer's held token, the decoder's unfinished character).
  if (pendingBytes > 0 || !first) yield { bytes: Buffer.concat(pending), first, last: true };
}

// `\.` alone on its line (LF, CRLF or at the very end), compared as bytes: this runs for every
// COPY row of a restore.
const isEndOfCopy = (piece: LinePiece) =>
  piece.first &&
  piece.last &&
  piece.bytes.length <= 4 &&
  piece.bytes[0] === 0x5c &&
  piece.bytes[1] === 0x2e &&
  (piece.bytes.length === 2 ||
    (piece.bytes.length === 3 && piece.bytes[2] === 0x0a) ||
    (piece.bytes.length === 4 && piece.bytes[2] === 0x0d && piece.bytes[3] === 0x0a));

/** A statement the lexer found complete: its text from its first token to its `;`. */
interface FoundStatement {
  text: string;
  line: number;
  /** Where in the piece the text after its `;` starts. */
  end: number;
}

/**
 * Finds where statements end, as psql does: a `;` outside quotes, quoted identifiers, dollar
 * quotes, comments, parentheses and the `BEGIN … END` body of a `CREATE FUNCTION` or
 * `PROCEDURE`. It decides nothing about what a statement is: that is PostgreSQL's parser's
 * job (`checkBackupStatement`), and where the two disagree the parser refuses the text.
 *
 * A long line comes in pieces cut wherever the input's chunks happen to end, so a token can
 * straddle two of them (`$_$`, `--`, the end of a block comment, `''`, `\'`, `E'`, a word).
 * Where reading on would need the next piece, the lexer keeps the token's start (a few
 * characters, {@link maxHeld} at most) and reads it again in front of the next piece; a word
 * too long to keep is finished and its rest skipped. So it finds what it would find in the
 * whole line, whatever the chunks, and the verdict cannot hang on a pipe's timing.
 */
class StatementLexer {
  mode: 'sql' | 'quote' | 'equote' | 'ident' | 'dollar' | 'block' | 'line-comment' = 'sql';
  /** Whether a statement has started (its first token was read) and not yet ended. */
  inStatement = false;
  /** The current statement's text so far, from its first token. */
  statement = '';
  /** The line its first token is on. */
  line = 0;
  private tag = '';
  private blockDepth = 0;
  private parenDepth = 0;
  private beginDepth = 0;
  private words: string[] = [];
  /** The end of the last piece, from a token that the next piece may finish. */
  private held = '';
  /** The last piece ended in a word or number too long to hold: the next goes on with it. */
  private inLongWord = false;

  // CREATE [OR REPLACE] FUNCTION|PROCEDURE: psql's test for a body whose `;` do not end it.
  private isRoutine(): boolean {
    const [a, b, c, d] = this.words;
    return a === 'CREATE' && (b === 'FUNCTION' || b === 'PROCEDURE' || (b === 'OR' && c === 'REPLACE' && (d === 'FUNCTION' || d === 'PROCEDURE')));
  }

  /**
   * Reads `piece`, a piece of line `line` (`lineEnds`: its last); returns the text read (what
   * was held from the last piece, then this one), the statements it completes and, when it
   * meets a backslash outside quotes and comments, where in that text the meta-command starts
   * (reading stops there).
   */
  read(piece: string, line: number, lineEnds: boolean): { text: string; statements: FoundStatement[]; metaCommandAt?: number } {
    const text = this.held === '' ? piece : this.held + piece;
    this.held = '';
    const statements: FoundStatement[] = [];
    // The statement's text is copied in runs, not character by character; comments and
    // blank lines between statements are not copied at all.
    let runStart = 0;
    const flush = (to: number) => {
      if (this.inStatement) this.statement += text.slice(runStart, to);
      runStart = to;
    };
    // Where the text ends before its line does: what lies at or after it is still to come.
    const unreadFrom = lineEnds ? Infinity : text.length;
    let holdFrom: number | undefined;
    let i = 0;
    if (this.inLongWord) {
      this.inLongWord = false;
      while (i < text.length && isIdentifierPart(text.charCodeAt(i))) i += 1;
      if (i >= unreadFrom) this.inLongWord = true;
    }
    if (this.mode === 'line-comment') i = text.length;
    while (i < text.length) {
      const c = text[i]!;
      if (this.mode === 'quote' || this.mode === 'equote') {
        if (c !== "'" && (c !== '\\' || this.mode === 'quote')) i += 1;
        else if (i + 1 >= unreadFrom) {
          holdFrom = i;
          break;
        } else if (c === '\\' || text[i + 1] === "'") i += 2;
        else {
          i += 1;
          this.mode = 'sql';
        }
        continue;
      }
      if (this.mode === 'ident') {
        const end = text.indexOf('"', i);
        if (end === -1) i = text.length;
        else if (end + 1 >= unreadFrom) {
          holdFrom = end;
          break;
        } else if (text[end + 1] === '"') i = end + 2;
        else {
          i = end + 1;
          this.mode = 'sql';
        }
        continue;
      }
      if (this.mode === 'dollar') {
        const end = text.indexOf(this.tag, i);
        if (end !== -1) {
          i = end + this.tag.length;
          this.mode = 'sql';
        } else if (lineEnds) i = text.length;
        else {
          // The closing tag may have begun in these last characters.
          holdFrom = Math.max(i, text.length - this.tag.length + 1);
          break;
        }
        continue;
      }
      if (this.mode === 'block') {
        if (c !== '/' && c !== '*') i += 1;
        else if (i + 1 >= unreadFrom) {
          holdFrom = i;
          break;
        } else if (c === '/' && text[i + 1] === '*') {
          this.blockDepth += 1;
          i += 2;
        } else if (c === '*' && text[i + 1] === '/') {
          this.blockDepth -= 1;
          i += 2;
          if (this.blockDepth === 0) this.mode = 'sql';
        } else i += 1;
        continue;
      }

      // mode === 'sql'
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
        i += 1;
        continue;
      }
      if (c === '-' || c === '/') {
        if (i + 1 >= unreadFrom) {
          holdFrom = i;
          break;
        }
        if (c === '-' && text[i + 1] === '-') {
          // A comment to the end of the line, which may go on in the next pieces.
          this.mode = 'line-comment';
          i = text.length;
          continue;
        }
        if (c === '/' && text[i + 1] === '*') {
          this.mode = 'block';
          this.blockDepth = 1;
          i += 2;
          continue;
        }
      }
      if (c === '\\') {
        // psql reads a backslash outside quotes as the start of a meta-command, anywhere.
        flush(i);
        return { text, statements, metaCommandAt: i };
      }
      if (!this.inStatement) {
        this.inStatement = true;
        this.statement = '';
        this.line = line;
        this.words = [];
        this.parenDepth = 0;
        this.beginDepth = 0;
        runStart = i;
      }
      const code = text.charCodeAt(i);
      if (isIdentifierStart(code)) {
        let end = i + 1;
        while (end < text.length && isIdentifierPart(text.charCodeAt(end))) end += 1;
        if (end >= unreadFrom) {
          // A word that may go on: held while it may still be a keyword looked at, or `E`.
          if (end - i <= maxHeldWord) {
            holdFrom = i;
            break;
          }
          this.inLongWord = true;
        }
        const start = i;
        i = end;
        if (end - start === 1 && (code === 69 || code === 101) && text[i] === "'") {
          this.mode = 'equote';
          i += 1;
          continue;
        }
        // Only the first words, and the words of a routine's body, are looked at.
        const routineBody = this.parenDepth === 0 && this.words.length === 4 && this.isRoutine();
        if (this.words.length >= 4 && !routineBody) continue;
        const word = text.slice(start, end).toUpperCase();
        if (this.words.length < 4) this.words.push(word);
        // As psql: BEGIN … END (and CASE … END within) of a routine body, outside parentheses.
        if (this.parenDepth === 0 && this.isRoutine()) {
          if (word === 'BEGIN' || (word === 'CASE' && this.beginDepth > 0)) this.beginDepth += 1;
          else if (word === 'END' && this.beginDepth > 0) this.beginDepth -= 1;
        }
        continue;
      }
      if (code >= 48 && code <= 57) {
        let end = i + 1;
        while (end < text.length && isIdentifierPart(text.charCodeAt(end))) end += 1;
        // Its rest is skipped, not read as a token (a `$` in it opens no dollar quote).
        if (end >= unreadFrom) this.inLongWord = true;
        i = end;
        continue;
      }
      i += 1;
      if (c === "'") this.mode = 'quote';
      else if (c === '"') this.mode = 'ident';
      else if (c === '$') {
        const window = text.slice(i - 1, i - 1 + maxHeld);
        const opening = dollarTag.exec(window)?.[0];
        if (opening) {
          this.mode = 'dollar';
          this.tag = opening;
          i += opening.length - 1;
        } else if (window.length < maxHeld && !lineEnds) {
          // The tag may end in the next piece.
          holdFrom = i - 1;
          break;
        }
      } else if (c === '(') this.parenDepth += 1;
      else if (c === ')') this.parenDepth = Math.max(0, this.parenDepth - 1);
      else if (c === ';' && this.parenDepth === 0 && this.beginDepth === 0) {
        flush(i);
        statements.push({ text: this.statement, line: this.line, end: i });
        this.inStatement = false;
        this.statement = '';
      }
    }
    if (holdFrom !== undefined) {
      flush(holdFrom);
      this.held = text.slice(holdFrom);
    } else flush(text.length);
    if (lineEnds && this.mode === 'line-comment') this.mode = 'sql';
    return { text, statements };
  }
}

/**
 * Reads a backup's SQL (pg_dump's plain format, or `pg_restore --file=-` of an archive) and
 * hands it over statement by statement, each checked first against an allow-list built on
 * PostgreSQL's own parse tree of it (`checkBackupStatement`: only the kinds of statement
 * pg_dump writes for this schema; `DO`, `CALL`, other `SELECT`s, COPY to or from a file or
 * program, roles, `SECURITY DEFINER`, untrusted languages and the rest are refused, naming
 * the line). Whether rows follow a statement is decided by that parse tree alone: only a
 * statement that PostgreSQL reads as `COPY table FROM stdin` is followed by data, up to
 * its `\.` line. psql meta-commands are never run; the only ones accepted are those pg_dump
 * writes, and they are dropped: `\connect` to the database restored into, and
 * `\restrict KEY` / `\unrestrict KEY` (pg_dump 17.6 and later, checked to pair up). Reads
 * in bounded memory: one statement (at most {@link maxStatementLength}) and a piece of a
 * line at a time. Throws {@link RestoreError}.
 *
 * @example
 * for await (const part of sqlScriptParts(gunzipped, { database: 'kennwilliamson' })) {
 *   if (part.kind === 'copy') await copyIn(part.text, part.data); else await client.query(part.text)
 * }
 */
export async function* sqlScriptParts(source: AsyncIterable<Buffer | string>, options: SqlScriptOptions): AsyncGenerator<SqlScriptPart> {
  await loadBackupStatementParser();
  const pieces = linePieces(source)[Symbol.asyncIterator]();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const lexer = new StatementLexer();
  let lineNumber = 0;
  let restrictKey: string | undefined;
  const refuseAt = (line: number, reason: string): never => {
    // The reason may quote the backup's names.
    throw new RestoreError(`line ${line} of the backup's SQL: ${oneLine(reason)}`);
  };
  const refuse = (reason: string): never => refuseAt(lineNumber, reason);

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
    let row = 0;
    for (;;) {
      const next = await pieces.next();
      if (next.done) refuse('the backup ends inside COPY data (no \\. line)');
      const piece = next.value as LinePiece;
      if (piece.first) {
        lineNumber += 1;
        row = 0;
      }
      if (isEndOfCopy(piece)) break;
      row += piece.bytes.length;
      if (row > maxRowLength) {
        refuse(`a row longer than ${maxRowLength / 1024 / 1024} MiB, which no row of this schema comes near (the server builds its values in memory at many times that)`);
      }
      chunk.push(piece.bytes);
      size += piece.bytes.length;
      if (size >= pieceSize) {
        yield Buffer.concat(chunk);
        chunk = [];
        size = 0;
      }
    }
    if (size > 0) yield Buffer.concat(chunk);
  }

  // A piece as text, in the line's UTF-8 (a character may straddle two pieces).
  const decode = (piece: LinePiece): string => {
    try {
      return decoder.decode(piece.bytes, { stream: !piece.last });
    } catch {
      return refuse('not valid UTF-8');
    }
  };

  // The pieces left of the current line, read to its end: whether they hold only blanks.
  async function restOfLineIsBlank(): Promise<boolean> {
    for (;;) {
      const next = await pieces.next();
      if (next.done) return true; // the rows' reader says what is missing
      const piece = next.value as LinePiece;
      if (decode(piece).trim() !== '') return false;
      if (piece.last) return true;
    }
  }

  const tooLong = `a statement longer than ${maxStatementLength / 1024} KiB, which pg_dump never writes for this schema`;
  let statementCount = 0;
  // A meta-command whose line goes on in the next piece: psql reads it to the line's end.
  let metaCommandText: string | undefined;
  const metaCommandRead = (more: string, lineEnds: boolean) => {
    metaCommandText = (metaCommandText ?? '') + more;
    // Bounded by its own length, not by where pieces end: a line shorter than a piece is never
    // cut, so none that was accepted before is refused now.
    if (metaCommandText.length > pieceSize) refuse('a psql meta-command line that long is not allowed');
    if (!lineEnds) return;
    metaCommand(metaCommandText.replace(/\r?\n$/, ''));
    metaCommandText = undefined;
  };

  try {
    for (;;) {
      const next = await pieces.next();
      if (next.done) break;
      const piece = next.value;
      if (piece.first) lineNumber += 1;
      const decoded = decode(piece);
      // The server reads a query only up to a NUL; the parser here would too, but differently.
      if (decoded.includes('\u0000')) refuse('a NUL character, which pg_dump never writes');
      if (metaCommandText !== undefined) {
        metaCommandRead(decoded, piece.last);
        continue;
      }

      const { text, statements, metaCommandAt } = lexer.read(decoded, lineNumber, piece.last);
      for (const [index, found] of statements.entries()) {
        const statement = found.text;
        // Checked here too, not only while a statement goes on: where a piece ends must not decide.
        if (statement.length > maxStatementLength) refuseAt(found.line, tooLong);
        if (++statementCount > maxStatements) refuseAt(found.line, `more than ${maxStatements} statements, which pg_dump never writes for this schema`);
        const verdict = checkBackupStatement(statement, options);
        if ('refused' in verdict) return refuseAt(found.line, verdict.refused);
        if (verdict.copyTable === undefined) {
          yield {
            kind: 'sql',
            text: statement,
            line: found.line,
            statement: verdict.accepted,
            ...(verdict.extension === undefined ? {} : { extension: verdict.extension }),
            ...(verdict.setting === undefined ? {} : { setting: verdict.setting }),
            ...(verdict.privileges === undefined ? {} : { privileges: verdict.privileges }),
            ...(verdict.tree === undefined ? {} : { tree: verdict.tree }),
          };
          continue;
        }
        // The rows start on the next line: nothing may follow the COPY on its own (blanks, in
        // this piece or in the rest of the line, whatever piece its ';' ends).
        const followed = index !== statements.length - 1 || text.slice(found.end).trim() !== '' || metaCommandAt !== undefined;
        if (followed || (!piece.last && !(await restOfLineIsBlank()))) refuseAt(found.line, 'text after COPY … FROM stdin on the same line');
        const data = copyRows();
        yield { kind: 'copy', text: statement, line: found.line, table: verdict.copyTable, data };
        // A consumer that only checks the script (or stopped early) leaves rows unread.
        for await (const _ of data) void _;
      }
      // After the statements this piece completes, which come first in the backup.
      if (lexer.statement.length > maxStatementLength) refuseAt(lexer.line, tooLong);
      if (metaCommandAt !== undefined) {
        if (lexer.inStatement) refuse('a psql meta-command inside a statement is not allowed');
        metaCommandRead(text.slice(metaCommandAt), piece.last);
      }
    }

    if (lexer.mode !== 'sql') refuse(`the backup ends inside ${lexer.mode === 'block' ? 'a comment' : 'a quoted string or identifier'}`);
    // psql would run a last statement without its ';'; pg_dump ends every one with it, so a
    // backup that stops in the middle of one was cut short.
    if (lexer.inStatement) refuseAt(lexer.line, "the backup ends inside a statement (no ';'): it may be cut short");
    if (restrictKey !== undefined) refuse('the backup ends without its \\unrestrict line: it may be cut short');
  } finally {
    // Stops reading the source when the parts stop early (a refusal, a consumer that breaks
    // off): a program whose output is the source would otherwise never be read to its end.
    await pieces.return(undefined);
  }
}

/**
 * Reads a whole backup script through {@link sqlScriptParts} without running anything: the
 * check a restore makes before it touches the database. Returns the script's size in bytes;
 * throws {@link RestoreError}.
 *
 * @example const sqlBytes = await vetSqlScript(createReadStream(file).pipe(createGunzip()))
 */
export async function vetSqlScript(source: AsyncIterable<Buffer | string>, options: SqlScriptOptions = {}): Promise<number> {
  let bytes = 0;
  async function* counted(): AsyncGenerator<Buffer | string> {
    for await (const chunk of source) {
      bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      yield chunk;
    }
  }
  let made = 0;
  // sqlScriptParts reads (and checks) the COPY data a consumer leaves unread itself.
  for await (const part of sqlScriptParts(counted(), options)) if (makesSomething(part)) made += 1;
  // As the restore refuses it, but before it takes the tables: pg_dump's header alone and
  // white space (a gigabyte of it, say) would otherwise be read again while every table waits.
  if (made === 0) throw new RestoreError(nothingMade);
  return bytes;
}

/** Why a script whose parts {@link makesSomething} none of is refused, by the check and the restore alike. */
export const nothingMade = "it holds no SQL statements beyond pg_dump's session settings (a dump of an empty database, or a file cut down to its header)";

/**
 * Whether a part makes something of the backup (a table, its rows, a grant …), rather than
 * only set the session up as pg_dump's header does (`SET …`, `SELECT pg_catalog.set_config(…)`,
 * which every dump starts with) or be left out by the restore: a script without one is no
 * backup of anything. (The restore also leaves out the comment of an extension it keeps, and
 * counts after that.)
 *
 * @example makesSomething({ kind: 'sql', statement: 'SET', setting: 'lock_timeout', text: 'SET lock_timeout = 0;', line: 6 }) // false
 */
export function makesSomething(part: SqlScriptPart): boolean {
  if (part.kind === 'copy') return true;
  // What a restore leaves out (grants and default privileges it sets itself) makes nothing either.
  return part.setting === undefined && part.statement !== 'SELECT pg_catalog.set_config' && part.privileges?.leaveOut !== true;
}
