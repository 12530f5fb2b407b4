import { loadModule, parseSync, scanSync, type Node, type RawStmt, type ScanToken } from 'libpg-query';
import { parseDuration } from '../db/duration.js';
import { type ConfigError, MigrationScriptError } from '../errors.js';
import { lineOfPosition } from '../sql-position.js';
import { optionOn, type OptionNode } from './parse-tree-option.js';
import { heldWhileWriting, locksKept, quotedName, statementWords, stronger, tableHold, tableKey, validatedConstraints, type LockKeptUntilCommit, type RangeVar, type TableHold } from './statements-holding-tables.js';

/** Header of a migration file that must run outside a transaction, statement by statement. */
export const noTransactionHeader = '-- migrate:no-transaction';

/**
 * Header of a migration file with a lock budget of its own (`attempt=` the longest one attempt
 * waits for a lock, `total=` the whole budget), e.g. `-- migrate:lock-wait total=1h` to outwait a
 * long transaction in short attempts. An `attempt=` above the services' `DB_LOCK_TIMEOUT` (2 s)
 * makes the calls queued behind an attempt fail: for a maintenance window only.
 */
export const lockWaitHeader = '-- migrate:lock-wait';

/** A file's own lock budget, from its {@link lockWaitHeader}; what it omits keeps the run's. */
export interface LockWaitHeader {
  attemptMs?: number;
  totalMs?: number;
}

/** One statement of a migration file: its text (no trailing semicolon) and the 1-based line it starts on. */
export interface MigrationStatement {
  text: string;
  line: number;
  /** The parse node's type, e.g. `IndexStmt`, `CreateStmt`. */
  kind: string;
  /** For `CREATE INDEX CONCURRENTLY`: the index it builds, if named (a failure leaves it INVALID). */
  concurrentIndex?: string;
  /**
   * That index as `to_regclass` reads it, quoted and, when the table is named with its
   * schema, qualified by it (an index lives in its table's schema): `"audit"."events_at"`.
   */
  concurrentIndexRef?: string;
  /**
   * A `CREATE INDEX CONCURRENTLY` without a name: one that fails leaves its index INVALID, which
   * the migrator finds only by name, and PostgreSQL names a re-run's index anew (t_x_idx1),
   * the INVALID one staying, written to on every write. Said before anything is applied (not
   * refused: a file applied elsewhere can be neither skipped nor changed).
   */
  unnamedConcurrentIndex?: true;
  /**
   * For `ALTER TABLE … DETACH PARTITION … CONCURRENTLY`: the partition, as `to_regclass` reads
   * it, and the `… DETACH PARTITION … FINALIZE` that completes a detach whose first transaction
   * committed before a lock wait ran out (`partition … already pending detach` on a plain retry).
   */
  detach?: { partitionRef: string; finalize: string };
  /**
   * `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY`, `VACUUM`
   * (not `VACUUM FULL`), `ANALYZE`: it takes no lock that reads or writes queue behind, so it
   * waits for its locks in one attempt (the whole budget) rather than in short attempts, which
   * would leave an INVALID index behind when one ran out while the build waited for older
   * transactions.
   */
  concurrent: boolean;
  /** The table it holds locked while it rewrites or scans every row of it, if it does. */
  holds?: TableHold;
  /**
   * A bulk write of a transactional file (`UPDATE`, `INSERT … SELECT` …): the tables earlier
   * statements of the file locked, which stay locked while it runs, those it writes first.
   */
  whileLocked?: TableHold[];
  /** The constraints it validates (`VALIDATE CONSTRAINT`), with their tables' keys. */
  validates?: Array<{ table: string; constraint: string }>;
}

/** A migration file checked by PostgreSQL's own parser, ready to run. */
export interface MigrationScript {
  file: string;
  /** The whole file, sent as one query when transactional. */
  sql: string;
  /** False when the file starts with {@link noTransactionHeader}. */
  transactional: boolean;
  /** The file's own lock budget, when it has a {@link lockWaitHeader}. */
  lockWait?: LockWaitHeader;
  statements: MigrationStatement[];
}

// Statements that start, end or hand off a transaction. In a transactional file any of them
// would end the migration's own transaction, so the rest and its record would autocommit.
// SAVEPOINT, RELEASE and ROLLBACK TO stay inside the migration's transaction: allowed there.
const endsTransaction = new Set([
  'TRANS_STMT_BEGIN',
  'TRANS_STMT_START',
  'TRANS_STMT_COMMIT',
  'TRANS_STMT_ROLLBACK',
  'TRANS_STMT_PREPARE',
  'TRANS_STMT_COMMIT_PREPARED',
  'TRANS_STMT_ROLLBACK_PREPARED',
]);

/**
 * Reads a migration file with PostgreSQL's own parser (libpg_query compiled to WebAssembly,
 * PostgreSQL 18's grammar, `standard_conforming_strings` on) and refuses it, naming file and
 * line, before anything runs when it: has a syntax error; controls transactions in a
 * transactional file (or at all in a no-transaction one); reads `COPY … FROM stdin`, whose
 * data a migration cannot send; or has an unknown, malformed or misplaced `-- migrate:`
 * header (`-- migrate:no-transaction`, `-- migrate:lock-wait attempt=5s total=1h`, each on a
 * line of its own at the top).
 * The statements' boundaries are the server's own, so `BEGIN ATOMIC … END` bodies, dollar
 * quotes, nested comments and `DATE'…'` literals stay whole.
 *
 * @example
 * const script = await parseMigrationScript('20251126_add_index.up.sql',
 *   '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n')
 * // { transactional: false, statements: [{ text: 'CREATE INDEX CONCURRENTLY …', line: 2, … }], … }
 */
export async function parseMigrationScript(file: string, sql: string): Promise<MigrationScript> {
  await loadModule();
  const headers = readHeaders(file, sql);
  const transactional = !headers.noTransaction;
  const bytes = Buffer.from(sql, 'utf8');
  const lineAtByte = (offset: number) => lineAt(bytes, offset);

  let stmts: RawStmt[];
  try {
    stmts = sql.trim() === '' ? [] : (parseSync(sql).stmts ?? []);
  } catch (error) {
    const cursor = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
    const copy = copyFromStdinBefore(sql, cursor);
    if (copy !== undefined) throw copyFromStdinError(file, lineAtByte(copy));
    const line = cursor === undefined || cursor < 0 ? undefined : lineOfPosition(sql, cursor + 1);
    throw new MigrationScriptError(file, line, (error as Error).message, { cause: error });
  }

  // Comments are tokens too; a statement starts at its first token that is not one. (An empty
  // file is one with no statements, as one of comments only is: the scanner fails on no text.)
  const tokens = (sql === '' ? [] : scanSync(sql).tokens).filter((token) => token.tokenName !== 'SQL_COMMENT' && token.tokenName !== 'C_COMMENT');
  // Tables this file creates before it alters them have no traffic yet.
  const createdHere = new Set<string>();
  // Indexes it creates, by tableKey of the index (in its table's schema), with their table: a
  // DROP INDEX of one locks that table, known without the catalog (whose index of that name may
  // be an older one, on a table the file drops and creates again).
  const indexesHere = new Map<string, RangeVar>();
  // Locks the file's statements took so far, kept until its COMMIT (a transactional file's):
  // each table once, with the strongest.
  const kept = new Map<string, LockKeptUntilCommit>();
  const statements = stmts.map((raw): MigrationStatement => {
    const from = raw.stmt_location ?? 0;
    const to = raw.stmt_len === undefined || raw.stmt_len === 0 ? bytes.length : from + raw.stmt_len;
    const start = firstTokenAt(tokens, from) ?? from;
    const node = raw.stmt as Node & Record<string, unknown>;
    const kind = Object.keys(node)[0] ?? 'unknown';
    const line = lineAtByte(start);
    refuse(file, line, kind, node, transactional);
    const index = (node as { IndexStmt?: { concurrent?: boolean; idxname?: string; relation?: RangeVar } }).IndexStmt;
    const created = (node as { CreateStmt?: { relation?: { schemaname?: string; relname?: string } } }).CreateStmt?.relation;
    if (created?.relname !== undefined) createdHere.add(tableKey(created));
    // An index lives in its table's schema.
    if (index?.idxname !== undefined && index.relation?.relname !== undefined) indexesHere.set(tableKey({ ...index.relation, relname: index.idxname }), index.relation);
    const text = bytes.subarray(start, to).toString('utf8').trimEnd();
    const holds = tableHold(node, createdHere);
    const validates = validatedConstraints(node);
    const whileLocked = transactional ? heldWhileWriting(node, kept.values()) : [];
    if (transactional) {
      const takenBy = `line ${line}'s ${statementWords(kind, text)}`;
      for (const { relation, lock } of locksKept(node, createdHere, indexesHere)) {
        const key = tableKey(relation);
        const before = kept.get(key);
        if (before === undefined || stronger(lock, before.lock)) kept.set(key, { relation, lock, takenBy });
      }
    }
    return {
      text,
      line,
      kind,
      concurrent: runsConcurrently(node),
      ...(holds ? { holds } : {}),
      ...(whileLocked.length > 0 ? { whileLocked } : {}),
      ...(validates.length > 0 ? { validates } : {}),
      ...(index?.concurrent && index.idxname
        ? { concurrentIndex: index.idxname, concurrentIndexRef: quotedName({ ...index.relation, relname: index.idxname }) }
        : {}),
      ...concurrentDetach(node),
      ...(index?.concurrent && index.idxname === undefined ? { unnamedConcurrentIndex: true as const } : {}),
    };
  });
  return { file, sql, transactional, ...(headers.lockWait ? { lockWait: headers.lockWait } : {}), statements };
}

// DETACH PARTITION … CONCURRENTLY commits its first transaction before it waits for the
// partitioned table's readers: an attempt that runs out of lock time there leaves the detach
// pending, which only FINALIZE completes.
function concurrentDetach(node: Record<string, unknown>): Pick<MigrationStatement, 'detach'> {
  const alter = node.AlterTableStmt as { relation?: RangeVar; cmds?: Array<{ AlterTableCmd?: { subtype?: string; def?: { PartitionCmd?: { name?: RangeVar; concurrent?: boolean } } } }> } | undefined;
  const cmds = alter?.cmds ?? [];
  const detach = cmds.length === 1 ? cmds[0]?.AlterTableCmd : undefined;
  const partition = detach?.def?.PartitionCmd;
  if (detach?.subtype !== 'AT_DetachPartition' || partition?.concurrent !== true || partition.name === undefined || alter?.relation === undefined) return {};
  return {
    detach: {
      partitionRef: quotedName(partition.name),
      finalize: `ALTER TABLE ${quotedName(alter.relation)} DETACH PARTITION ${quotedName(partition.name)} FINALIZE`,
    },
  };
}

// Statements that take nothing stronger than SHARE UPDATE EXCLUSIVE, which neither reads
// (ACCESS SHARE) nor writes (ROW EXCLUSIVE) conflict with: queries do not queue behind their
// wait, so it may last the whole budget. VACUUM FULL rewrites the table under ACCESS
// EXCLUSIVE, as ALTER TABLE does, and CLUSTER and plain REINDEX block writes: they wait in short
// attempts like any other statement. (DETACH PARTITION … CONCURRENTLY ends with ACCESS
// EXCLUSIVE on the partition, so it does too.)
function runsConcurrently(node: Record<string, unknown>): boolean {
  const index = node.IndexStmt as { concurrent?: boolean } | undefined;
  const drop = node.DropStmt as { concurrent?: boolean } | undefined;
  const reindex = node.ReindexStmt as { params?: OptionNode[] } | undefined;
  const vacuum = node.VacuumStmt as { options?: OptionNode[] } | undefined;
  return (
    index?.concurrent === true ||
    drop?.concurrent === true ||
    optionOn(reindex?.params, 'concurrently') ||
    // VACUUM and ANALYZE (the same node), unless FULL.
    (vacuum !== undefined && !optionOn(vacuum.options, 'full'))
  );
}


const headerUsage = `the headers are '${noTransactionHeader}' and '${lockWaitHeader} attempt=<duration> total=<duration>', each on a line of its own at the top of the file`;

// A line that looks like a header, however spelt: a misspelt header would silently run the
// file in a transaction (where CREATE INDEX CONCURRENTLY fails) or with the default budget,
// and a header below a comment would be ignored, so each is refused with its line instead.
const directive = /^\s*--\s*migrate:/i;
const lockWaitPattern = /^-- migrate:lock-wait((?:\s+[a-z]+=\S+)+)\s*$/;

function readHeaders(file: string, sql: string): { noTransaction: boolean; lockWait?: LockWaitHeader } {
  const lines = sql.split('\n').map((text, index) => (index === 0 ? text.replace(/^\uFEFF/, '') : text).trimEnd());
  let top = 0;
  while (top < lines.length && directive.test(lines[top]!)) top++;
  const misplaced = lines.findIndex((text, index) => index >= top && directive.test(text));
  if (misplaced >= 0) {
    throw new MigrationScriptError(file, misplaced + 1, `misplaced header '${lines[misplaced]!.trim()}': ${headerUsage}`);
  }
  const headers: { noTransaction: boolean; lockWait?: LockWaitHeader } = { noTransaction: false };
  for (const [index, text] of lines.slice(0, top).entries()) {
    const refuse = (why: string) => new MigrationScriptError(file, index + 1, `${why} '${text.trim()}': ${headerUsage}`);
    if (text === noTransactionHeader) {
      if (headers.noTransaction) throw refuse('repeated header');
      headers.noTransaction = true;
      continue;
    }
    const lockWait = lockWaitPattern.exec(text);
    if (!lockWait) throw refuse('unknown header');
    if (headers.lockWait) throw refuse('repeated header');
    headers.lockWait = readLockWait(lockWait[1]!.trim().split(/\s+/), refuse);
  }
  return headers;
}

function readLockWait(pairs: string[], refuse: (why: string) => MigrationScriptError): LockWaitHeader {
  const budget: LockWaitHeader = {};
  for (const pair of pairs) {
    const [key, value] = pair.split('=', 2) as [string, string];
    if (key !== 'attempt' && key !== 'total') throw refuse(`unknown setting '${key}' (attempt or total) in the header`);
    const field = key === 'attempt' ? 'attemptMs' : 'totalMs';
    if (budget[field] !== undefined) throw refuse(`'${key}' given twice in the header`);
    // A header has no unit of old to keep: a bare number (total=600 ran as 600 ms, where
    // MIGRATION_LOCK_TIMEOUT=600 is seconds) is refused rather than read in either.
    if (/^(\d+\.?\d*|\.\d+)$/.test(value)) throw refuse(`'${key}=${value}' has no unit (write ${key}=${value}s or ${key}=${value}ms) in the header`);
    try {
      budget[field] = parseDuration(key, value);
    } catch (error) {
      throw refuse(`${(error as ConfigError).message}, in the header`);
    }
  }
  if (budget.attemptMs !== undefined && budget.totalMs !== undefined && budget.attemptMs > budget.totalMs) {
    throw refuse('attempt longer than total in the header');
  }
  return budget;
}

function refuse(file: string, line: number, kind: string, node: Record<string, unknown>, transactional: boolean): void {
  if (kind === 'TransactionStmt') {
    const txKind = String((node.TransactionStmt as { kind?: string }).kind);
    if (transactional && endsTransaction.has(txKind)) {
      throw new MigrationScriptError(
        file,
        line,
        'transaction control (BEGIN, COMMIT, ROLLBACK, END, START TRANSACTION, PREPARE TRANSACTION) is not allowed: ' +
          'the migrator runs each file and its record in one transaction, which this would end. ' +
          `Remove it, or make the file run outside a transaction with '${noTransactionHeader}' as its first line.`,
      );
    }
    if (!transactional) {
      throw new MigrationScriptError(
        file,
        line,
        'transaction control is not allowed in a no-transaction file: each statement already commits on its own. ' +
          'Statements that must succeed or fail together belong in a migration of their own without the header.',
      );
    }
  }
  if (kind === 'CopyStmt') {
    const copy = node.CopyStmt as { is_from?: boolean; filename?: string; is_program?: boolean };
    if (copy.is_from && copy.filename === undefined && !copy.is_program) throw copyFromStdinError(file, line);
  }
}

function copyFromStdinError(file: string, line: number): MigrationScriptError {
  return new MigrationScriptError(
    file,
    line,
    'COPY … FROM stdin is not supported: its data is sent by a client such as psql, not read from the file. ' +
      'Write the rows as INSERT … VALUES instead.',
  );
}

// When the parser fails, the likeliest reason in a migration is COPY … FROM stdin followed
// by its data rows (psql's format), which are not SQL. Scan the text before the error for it.
function copyFromStdinBefore(sql: string, cursor: number | undefined): number | undefined {
  if (cursor === undefined || cursor < 0) return undefined;
  let tokens: ScanToken[];
  try {
    tokens = scanSync(Array.from(sql).slice(0, cursor).join('')).tokens;
  } catch {
    return undefined;
  }
  const words = tokens.filter((token) => token.tokenName !== 'SQL_COMMENT' && token.tokenName !== 'C_COMMENT');
  let statementStart = true;
  let copyAt: number | undefined;
  let afterFrom = false;
  let found: number | undefined;
  for (const token of words) {
    const word = token.text.toLowerCase();
    if (word === ';') {
      statementStart = true;
      copyAt = undefined;
      continue;
    }
    if (statementStart) copyAt = word === 'copy' ? token.start : undefined;
    else if (copyAt !== undefined && afterFrom && word === 'stdin') found = copyAt;
    afterFrom = copyAt !== undefined && word === 'from';
    statementStart = false;
  }
  return found;
}

function firstTokenAt(tokens: ScanToken[], offset: number): number | undefined {
  for (const token of tokens) if (token.start >= offset) return token.start;
  return undefined;
}

function lineAt(bytes: Buffer, offset: number): number {
  let line = 1;
  for (let i = 0; i < Math.min(offset, bytes.length); i++) if (bytes[i] === 10) line++;
  return line;
}
