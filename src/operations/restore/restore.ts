import type pg from 'pg';
import { type Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { oneLine } from '../../one-line.js';
import { formatDuration } from '../../db/duration.js';
import { answeredWithin, destroyConnection, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { databaseTarget } from '../../db/database-target.js';
import { withClient } from '../../db/with-client.js';
import { endServerSessions } from '../../db/end-server-sessions.js';
import { lineOfPosition } from '../../sql-position.js';
import { ConnectionError, RestoreError } from '../../errors.js';
import { grantAppRole } from '../../provisioning/app-role.js';
import { superuserExtensions } from '../../provisioning/provision-database.js';
import { type PgToolExit, spawnPgTool, toolErrorText } from '../pg-tools/pg-tool-process.js';
import { findPgTool, type FindPgToolOptions } from '../pg-tools/pg-tools.js';
import { clearPublicSchema, type KeptExtension } from './clear-public-schema.js';
import { byteProgress } from '../files/progress-reporter.js';
import { defaultPgRestoreStallTimeoutMs, watchedOutput, watchedStream } from '../files/watched-output.js';
import { requireRestrictedSession, restoreSession, type RestoreOwner, type RestoreSession } from './restore-session.js';
import { deferrableTriggers, excessRestoredPrivileges } from './restored-privileges.js';
import { unsafeInRestoredPublic } from './unsafe-in-restored-public.js';
import { codeBeyondPublic, unsafeCallIn, workNoMigrationDoes } from './unsafe-calls.js';
import { callsOfMigrations } from './migration-calls.js';
import { functionNoMigrationMakes, functionsOfMigrations, type MigrationFunction } from './migration-functions.js';
import { type CopyStallGuard, ScriptQuery } from './script-query.js';
import { answeredWhileRunning, whileRunning } from '../../db/answered-while-running.js';
import { optionMs } from '../../db/option-ms.js';
import { sessionLooks } from '../../db/session-looks.js';
import { leadingWords } from '../../db/leading-words.js';
import { serverFailure } from './server-failure.js';
import { makesSomething, nothingMade, type SqlScriptPart, sqlScriptParts } from '../vetting/sql-script.js';
import { backupExtensions } from '../vetting/backup-statement-allow-list.js';
import { openBackupFile } from '../files/open-backup-file.js';
import { identityChange, type VerifiedBackup } from '../vetting/verify-backup-file.js';
import { dumpFrame } from '../vetting/verify-sql-dump.js';
import { silentClientBoundsSession } from '../../db/silent-client-bounds.js';
import { describeBlockingSessions } from '../../blocking-session.js';
import { defaultLockWait, withLockRetries } from '../../migrations/lock-retries.js';
import { lockPublicTables } from './lock-public-tables.js';
import { watchForStop } from './stopped-process-watchdog.js';
import { defaultMigrationsDir } from '../../migrations/default-migrations-dir.js';
import { listMigrationFiles } from '../../migrations/migration-files.js';
import { type MigrationState, migrationStates } from '../../migrations/migration-states.js';
import { migrationsTable, qualifiedMigrationsTable } from '../../migrations/migration-storage.js';
import { type BeyondPublicWatch, watchBeyondPublic } from './watch-beyond-public.js';

/** What {@link restoreDatabase} restores, and into which database. */
export interface RestoreOptions {
  /**
   * The database whose `public` schema is replaced by the backup's, as its owner, directly: a
   * URL that reaches a connection pooler is refused with `DirectConnectionRequiredError`.
   */
  databaseUrl: string;
  /** A backup checked by `verifyBackupFile`. */
  backup: VerifiedBackup;
  /** Receives progress lines (tables restored). */
  log?: ((line: string) => void) | undefined;
  /** Aborting stops the restore before its COMMIT: the database stays as it was. */
  signal?: AbortSignal | undefined;
  /** Where to look for pg_restore when `backup` names none (tests narrow it); see `findPgTool`. */
  toolSearch?: Omit<FindPgToolOptions, 'minMajor' | 'target'> | undefined;
  /**
   * The database owner's password (and name, to check it), for when `databaseUrl` logs in as
   * a role with powers beyond the database (a superuser): the restore then logs in as the
   * owner instead, and refuses without it. See `restoreSession`.
   */
  owner?: RestoreOwner | undefined;
  /**
   * `DB_APP_USER`, the application role of the database restored into, which then gets the
   * release step's grants (`grantAppRole`) in the restore's transaction; unnamed, the role
   * the owner's default privileges in `public` give new tables to before the restore gets
   * them. The backup may grant only to the owner and the application role; a backup granting
   * to any other role, or to PUBLIC, is refused. See `restoreSession` and `checkBackupStatement`.
   */
  appRole?: string | undefined;
  /**
   * What `restoreSession(databaseUrl, owner, { appRole })` returned, when the caller checked
   * the connection and the roles itself before reading the backup; asked here otherwise.
   */
  session?: RestoreSession | undefined;
  /** Longest wait for a lock held by another session (default 30 s); the backup's own `SET lock_timeout` never lifts it. */
  lockTimeoutMs?: number | undefined;
  /**
   * The longest any one statement may run (default 30 min), the backup's (a table's rows, an
   * index's build, a constraint's check of the rows) and the restore's own: PostgreSQL's
   * `statement_timeout` (or a shorter one the server, database or role sets), which the
   * backup's own `SET statement_timeout` never lifts. Then the
   * restore is rolled back. A backup's expressions run over its rows with every table held, and
   * some that name only PostgreSQL's own functions and operators cost as long as the backup
   * likes per row (a regular expression with back references, a list of a million items).
   */
  statementTimeoutMs?: number | undefined;
  /**
   * How long pg_restore, reading a custom archive, may write nothing while the restore waits
   * for it (default 60 s): then it is taken for stuck (stopped, or reading from a hung disk),
   * stopped, and the restore rolled back, rather than hold every table of public meanwhile.
   */
  stallTimeoutMs?: number | undefined;
  /**
   * How long the server may read none of a table's rows sent to it, or leave their end
   * unanswered (default 60 s), before the restore looks at its progress from another
   * connection (`pg_stat_progress_copy`): a server whose counts moved since the last look is
   * given as long again; one whose counts stood still (a backend that stopped while its host
   * still acknowledges, which would otherwise be waited for without end) has its connection
   * closed, and the restore is rolled back. A row may take up to this long to store. Any other
   * statement that may run long (the backup's, and the restore's own that empty public, run the
   * deferred checks and grant) is looked at (`pg_stat_activity`) after this long without an
   * answer too: still running one, it is given as long again; running none (its answer or the
   * statement itself was lost on the way), its connection is closed, and the restore rolled back.
   */
  serverStallTimeoutMs?: number | undefined;
  /**
   * The migrations (default: the package's, installed with it), whose functions, as they
   * define them, are the only ones a restored `public` may hold: the owner runs them at the
   * next migration that writes a table (see the README's Restore). A service with migrations
   * of its own, or bundled away from the package, passes the folder, as it does to `migrate`.
   */
  migrationsDir?: string | undefined;
}

/** A finished restore. */
export interface RestoreResult {
  /** Tables whose data was loaded. */
  tables: number;
  /**
   * The migrations (of `migrationsDir`, default the package's) that the restored record lacks,
   * oldest first: a backup older than the release, whose services need them applied (the
   * release step) before they use the database.
   */
  pendingMigrations: string[];
}

/**
 * Run first, in the restore's transaction, before {@link clearPublicSchema} empties `public`
 * for the backup. The lock timeout makes a restore fail clearly, rather than hang, while a
 * session holds locks on the old tables or on names the backup creates. The statement
 * timeout is `statementTimeoutMs`, which the caller makes the server's, the database's or the
 * role's where one is set and shorter (as for migrations): the backup's expressions run over
 * its rows, and may cost as long as they like. The backup's own `SET statement_timeout = 0`, `lock_timeout = 0`,
 * `idle_in_transaction_session_timeout = 0` and `transaction_timeout = 0` are never sent:
 * they would lift these bounds for the rest of the restore. The backup's statements were
 * parsed with standard strings and names resolved in pg_catalog only (as pg_dump writes them,
 * under an empty search_path); the server reads them the same way even when a database or role
 * setting says otherwise. The role is the session's own again (`ROLE NONE`): the backup's code
 * may switch it (`set_config('role', 'pg_database_owner', false)`), and the catalog checks,
 * which ask what the current role's roles own and did, would then look at nothing of the
 * owner's. The session's temporary schema, which an empty search_path would
 * search first for types and tables, comes last: the backup's code may make a domain
 * `pg_temp.text` there, which would otherwise stand in for every unqualified `text` of the
 * backup's statements and of the restore's own catalog checks, and run its CHECK's function
 * in the middle of them. A restore that stops answering while its host and connection stay up
 * (Ctrl-Z, a paused VM) held every table of public for as long as it was stopped: idle in the
 * transaction for `idleMs` (its longest wait for the backup's next statement, and a round
 * trip), the server ends the session, which rolls the restore back. (The bounds
 * for a silent host are the session's, set once before the first attempt: see restoreDatabase.)
 *
 * @example
 * await client.query(restorePrelude(30_000, 70_000, 1_800_000))
 */
export function restorePrelude(lockTimeoutMs: number, idleMs: number, statementTimeoutMs: number): string {
  return `SET LOCAL ROLE NONE;
SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))};
SET LOCAL idle_in_transaction_session_timeout = ${Math.max(1, Math.round(idleMs))};
SET LOCAL statement_timeout = ${Math.max(1, Math.round(statementTimeoutMs))};
SET LOCAL search_path = pg_catalog, pg_temp;
SET LOCAL standard_conforming_strings = on;
SET LOCAL client_encoding = 'UTF8';
`;
}

/** How long one statement of a restore may run by default (see `RestoreOptions.statementTimeoutMs`). */
export const defaultRestoreStatementTimeoutMs = 30 * 60_000;

// The backup's own bounds, which would lift the restore's (pg_dump writes them all as 0).
const restoreBounds = new Set(['lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout', 'transaction_timeout']);

// The restore's failures on the server side (a statement, BEGIN, COMMIT), already worded as
// rolled back; anything else that stops a restore is worded where it is caught.
const serverRefusals = new WeakSet<RestoreError>();

// A session's start as a number, the same whatever the DateStyle and time zone of the session
// that reads it (a time zone's abbreviation, which some DateStyles write, may be read back as
// another zone's).
const startedMicroseconds = '(EXTRACT(EPOCH FROM backend_start) * 1000000)::bigint';

// An interrupted restore ends its server session itself, from a connection of its own (a role
// may end its own sessions). Closing its end of the connection is not enough while the server
// runs one of the backup's statements: the backup's code may have turned the server's check
// of the connection off within it (set_config in a CHECK's function, which the restore sets
// back only after the statement) and keep it running, for ever, holding every table of
// public that the services' queries wait for. The session is known by its process and the
// time it started (its application_name is the backup's code's to change, and a process id
// may be taken again). Waits up to 5 s for it to go; says why, if it did not.
function endInterruptedSession(url: string, session: { pid: number; started: string } | undefined): Promise<string | undefined> {
  if (session === undefined) return Promise.resolve('its server session could not be told apart');
  return endServerSessions({
    url,
    which: `pid = $1 AND ${startedMicroseconds} = $2::bigint`,
    params: [session.pid, session.started],
    applicationName: 'kennwilliamson-restore-stop',
    what: "ending the interrupted restore's session",
    pid: session.pid,
  });
}

// Why the restored migrations record is not one the release step can go on from, if it is
// not: the backup's tables are then not what this release's migrations made, and the step
// would fail on them or skip what they lack. Tables with no migration recorded (no record, or
// an empty one: tables from elsewhere, over which every migration would run again and fail on
// the first CREATE), a migration this release does not have (a newer release's backup, another
// service's migrations, or a forged row: its step refuses such a record, MIGRATION_MISSING), or
// one applied from other SQL than this release's file (a changed checksum: refused the same
// way, MIGRATION_CHECKSUM_MISMATCH). A backup with no table beside an empty record (a database
// set up and never migrated) has nothing to tell.
function recordProblem(states: readonly MigrationState[], recorded: boolean, tables: boolean, unknownCount: number): string | undefined {
  const named = (state: MigrationState['state']) => states.filter((each) => each.state === state).map((each) => each.name);
  if (tables && states.every((each) => each.state === 'pending')) {
    return (
      `the backup has tables but ${recorded ? 'an empty migrations record' : 'no migrations record'} (${qualifiedMigrationsTable}): ` +
      'which migrations made its tables cannot be told, and the release step would apply every one again over them; ' +
      "restore a backup of this project's database (kennwilliamson-db backup)"
    );
  }
  const unknown = named('missing');
  if (unknown.length > 0) {
    return (
      `the backup's migrations record names ${unknownCount} migration(s) that this release does not have (${listed(unknown, unknownCount)}): ` +
      "restore it with the release that made it (its package holds those migrations), with the folder that holds them (--migrations-dir, a service's own), " +
      'or a backup of this release'
    );
  }
  const changed = named('changed');
  if (changed.length > 0) {
    return (
      `the backup's migrations record says ${changed.length} migration(s) were applied from other SQL than this release's files (${listed(changed)}: ` +
      'the checksums differ): its tables may not be what these migrations make; restore a backup made with this release'
    );
  }
  return undefined;
}

const listed = (names: readonly string[], count = names.length) => (count > 5 ? `${names.slice(0, 5).join(', ')} and ${count - 5} more` : names.join(', '));

function rolledBack(failure: string, cause: unknown): RestoreError {
  const error = new RestoreError(`restore failed and was rolled back; the database was not changed:\n${failure}`, { cause });
  serverRefusals.add(error);
  return error;
}

// The restore's rows go to a server that stopped taking them, and whose backend shows no
// progress with them either: the connection is closed, which fails the COPY (and rolls the
// restore back, on the server, once it notices). Progress is measured from one look to the
// next, a bound apart: a backend that takes its time over each row (a CHECK of seconds) moves
// its counts between two looks that far apart, where two looks seconds apart might not see it
// move. The first look only sets the mark, so a backend that stopped is given up on at the
// second, twice the bound after it stopped.
function copyStallGuard(
  client: pg.ClientBase,
  table: string,
  timeoutMs: number,
  progress: { url: string; pid: number | undefined; looks: Set<Promise<unknown>> },
): CopyStallGuard {
  let mark: string | undefined;
  // A look that fails (no connection to be had while the services queue behind the restore's
  // locks, or no answer within its own deadline) tells nothing: the server is given one more
  // bound, and given up on as the looks' count says (see SessionLooks).
  const looks = sessionLooks(progress.url, 'kennwilliamson-restore', progress.looks);
  let lookedInVain = false;
  return {
    timeoutMs,
    stillWorking: async () => {
      const pid = progress.pid;
      if (pid === undefined) return false;
      let counts: string | undefined;
      try {
        counts = await looks.look("the look at the COPY's progress", (client) => copyProgress(client, pid));
      } catch (error) {
        lookedInVain = looks.failed(error);
        return !lookedInVain;
      }
      looks.answered();
      const moved = counts !== undefined && counts !== mark;
      mark = counts;
      return moved;
    },
    onStall: (what) => {
      const stalled = what === 'read' ? `read none of table ${table}'s rows sent to it` : `did not answer the end of table ${table}'s rows`;
      const unseen = lookedInVain
        ? `its progress with them could not be looked at in pg_stat_progress_copy, ${looks.failures()}`
        : 'made no progress with them that pg_stat_progress_copy shows';
      destroyConnection(
        client,
        new ConnectionError('deadline', {
          detail: `the server ${stalled} for ${timeoutMs / 1000} s at a time, and ${unseen}; the connection was closed`,
        }),
      );
    },
  };
}

// pg_dump's own calls of such functions (its set_config and setval, as the allow-list admits
// them), and statements with no expressions to call one in.
const pgDumpsOwnCalls = new Set(['SELECT pg_catalog.set_config', 'SELECT pg_catalog.setval', 'SET', 'COMMENT']);

// A backup's function that is none of the migrations', refused before it is made.
const backupFunctionRefusal = ({ name, parsedBody }: { name: string; parsedBody: boolean }) =>
  `function public.${name}, which no migration defines so (the same name, body and language): its body would run while the backup's rows load, ` +
  "as the owner, and could act and then put a migration's body in its place before the check; " +
  (parsedBody
    ? 'its body is no quoted text with a language (BEGIN ATOMIC or RETURN, which PostgreSQL keeps parsed), so no migration can be told to define it: write it with a quoted body'
    : 'a service with migrations of its own restores with their folder (restore --migrations-dir DIR, restoreDatabase({ migrationsDir }))');

/** How long the server may take no visible step with a table's rows, before it is looked at (see serverStallTimeoutMs). */
const defaultServerStallTimeoutMs = 60_000;

// The restore's backend's counts in pg_stat_progress_copy (its role sees its own backends
// there), on a connection of the looks'; none once its COPY ended with the answer unsent.
async function copyProgress(client: pg.Client, pid: number): Promise<string | undefined> {
  const { rows } = await client.query<{ processed: string }>(
    "SELECT bytes_processed::text || ':' || tuples_processed::text AS processed FROM pg_catalog.pg_stat_progress_copy WHERE pid = $1",
    [pid],
  );
  return rows[0]?.processed;
}

// The same, located by line in the backup's SQL, and a cancelled statement said with the
// restore's bound and where it comes from (the server says only "canceling statement due to
// statement timeout", in its own language, which the SQLSTATE does not depend on).
function statementFailure(error: unknown, part: SqlScriptPart, kept: KeptExtension[], statementBoundMs: number): string {
  const { text, line } = part;
  const offset = Number((error as { position?: string }).position);
  const at = Number.isInteger(offset) && offset > 0 ? line + lineOfPosition(text, offset) - 1 : line;
  const timedOut = (error as { code?: string }).code === '57014'
    ? `\nthe server cancelled the statement; the restore gives one statement ${formatDuration(statementBoundMs)} (RESTORE_STATEMENT_TIMEOUT, restoreDatabase({ statementTimeoutMs }), ` +
      "or the database's or role's statement_timeout where shorter)"
    : '';
  return `${serverFailure(error)} at line ${at} of the backup's SQL${timedOut}${missingRoleAdvice(error, text)}${extensionAdvice(error, part, kept)}`;
}

// SQLSTATE 42501 while emptying public: the restoring role does not own the schema (whose
// owner may drop anything in it but extensions), as where setup --admin never ran.
function schemaOwnerAdvice(error: unknown): string {
  if ((error as { code?: string }).code !== '42501') return '';
  return (
    "\nthe role restoring must own the public schema (through pg_database_owner) to replace what is in it: run setup --admin " +
    "on this server (as a superuser, ADMIN_DATABASE_URL), which makes the database's owner the owner of public and of everything in it, then restore again"
  );
}

// A backup's CREATE EXTENSION that failed: the extension is missing from this database and
// the owner may not create it (42501: only a superuser may create pg_uuidv7), or the server
// does not have it at all (0A000; 58P01 from minor releases that said "could not open
// extension control file"). And a backup's CREATE FUNCTION that collides (42723) with a
// function of an extension that a superuser created here and the restore keeps: the backup
// comes from a server without that extension.
function extensionAdvice(error: unknown, part: SqlScriptPart, kept: KeptExtension[]): string {
  if (part.kind !== 'sql') return '';
  const code = (error as { code?: string }).code;
  const extension = part.extension;
  if (part.statement === 'CREATE EXTENSION' && extension) {
    const superuserOnly = superuserExtensions.includes(extension);
    if (code === '42501') {
      return (
        `\nthe backup uses the extension ${extension}, which this database does not have and ` +
        `${superuserOnly ? 'which only a superuser may create' : 'which the role restoring may not create'}: run setup --admin on this ` +
        `server first (as a superuser, ADMIN_DATABASE_URL; it ${superuserOnly ? `creates ${extension} where the server has it` : 'makes the owner the owner of the database'}), then restore again`
      );
    }
    if (code === '0A000' || code === '58P01') {
      return (
        `\nthe backup uses the extension ${extension}, which this PostgreSQL server does not have ` +
        `(the backup comes from one that has it${extension === 'pg_uuidv7' ? ', such as the compose image ghcr.io/fboulnois/pg_uuidv7' : ''}): ` +
        `restore it on a server with ${extension} installed, after setup --admin there, or install ${extension} on this server and run setup --admin`
      );
    }
  }
  if (part.statement === 'CREATE FUNCTION' && code === '42723') {
    const statement = part.text.replace(/^(?:\s+|--[^\n]*\n?)+/, '');
    const owner = kept.find((candidate) =>
      candidate.functions.some((name) =>
        new RegExp(`^CREATE\\s+(?:OR\\s+REPLACE\\s+)?FUNCTION\\s+public\\.("?)${name.replace(/[^A-Za-z0-9_]/g, '\\$&')}\\1\\s*\\(`, 'i').test(statement),
      ),
    );
    if (owner) {
      return (
        `\nin this database that function belongs to the extension ${owner.name}, which '${owner.owner}' created and a restore keeps ` +
        `(the owner could not create it again), while the backup defines it itself (it comes from a server without ${owner.name}): ` +
        `restore it on a server without ${owner.name}, or have a superuser run DROP EXTENSION ${owner.name} CASCADE in this database ` +
        `first (which also drops the column defaults that call it; the restore brings back the backup's)`
      );
    }
  }
  return '';
}

// SQLSTATE 42704 (undefined object) from a GRANT, REVOKE or ALTER DEFAULT PRIVILEGES of the
// backup: the objects are the backup's own, so what is missing is the role it grants to,
// i.e. the application role on a server where it was never created.
function missingRoleAdvice(error: unknown, text: string): string {
  if ((error as { code?: string }).code !== '42704') return '';
  const statement = text.replace(/^(?:\s+|--[^\n]*\n?)+/, '');
  if (!/^(?:GRANT|REVOKE|ALTER\s+DEFAULT\s+PRIVILEGES)\b/i.test(statement)) return '';
  return (
    '\nthe backup grants privileges to a role this server does not have (on a new server: the application role, or the owner): ' +
    'run the provisioning step (setup --admin, with DB_APP_USER and DB_APP_PASSWORD) on this server first, then restore again'
  );
}

// The restore's transaction begins, and takes every table of public before anything else
// (lockPublicTables), in attempts that each wait briefly and roll back when they run out
// (withLockRetries, as a migration's statements do), letting the services' queries queued
// behind them through, until `lockTimeoutMs` in all is spent; then it gives up, naming who
// held the tables. A deadlock with a service's transaction ends an attempt the same way.
async function beginHoldingTables(
  client: pg.ClientBase,
  step: (sql: string) => Promise<unknown>,
  restore: { url: string; database: string; lockTimeoutMs: number; idleMs: number; statementTimeoutMs: number; log: (line: string) => void; signal?: AbortSignal },
): Promise<void> {
  // The backend's process, as the login announced it: the restore's connection reaches
  // PostgreSQL itself (restoreSession refused a pooler).
  const pid = (client as pg.ClientBase & { processID: number | null }).processID;
  // Loaded here, not with the command: it reads blockers' queries with PostgreSQL's parser.
  const { blockerMonitor } = await import('../../migrations/lock-blockers.js');
  const monitor = blockerMonitor(restore.url, 'kennwilliamson-restore-monitor');
  try {
    await withLockRetries(
      {
        policy: { ...defaultLockWait, totalMs: restore.lockTimeoutMs },
        monitor,
        warn: restore.log,
        what: `restoring into '${restore.database}'`,
        undo: async () => void (await answeredWithin(client, roundTripDeadlineMs, 'ROLLBACK', () => client.query('ROLLBACK')).catch(() => undefined)),
        // The monitor found the attempt's session silent: its answer may never come.
        silent: (error) => destroyConnection(client, error),
        retryDeadlocks: true,
        // Ctrl-C between two attempts ends the pause at once.
        ...(restore.signal ? { signal: restore.signal } : {}),
        exhausted: ({ attempts, waitedMs, blockers, error }) =>
          rolledBack(
            `gave up waiting for the migration lock and the locks on the tables of public after ${attempts} attempt(s) over ${waitedMs} ms, ` +
              `${describeBlockingSessions(blockers)}; run it again when the blocking session is done`,
            error,
          ),
      },
      async ({ lockTimeoutMs, watch }) => {
        // Round trips that do no work get a deadline; LOCK TABLE, the attempt's statement
        // timeout and one more (the monitor watches it besides).
        const bounded = (what: string, ms: number, call: () => Promise<unknown>) =>
          answeredWithin(client, ms, what, call).catch((error: unknown) => {
            throw error instanceof RestoreError ? error : rolledBack(serverFailure(error), error);
          });
        await bounded('BEGIN', roundTripDeadlineMs, () => step('BEGIN'));
        await bounded("the restore's settings", roundTripDeadlineMs, () => step(restorePrelude(restore.lockTimeoutMs, restore.idleMs, restore.statementTimeoutMs)));
        if (pid !== null) watch(pid);
        await answeredWithin(client, lockTimeoutMs + roundTripDeadlineMs, 'LOCK TABLE', () =>
          lockPublicTables(client, lockTimeoutMs, restore.lockTimeoutMs, restore.statementTimeoutMs),
        ).catch((error: unknown) => {
          throw rolledBack(`${serverFailure(error)} while taking the tables of public`, error);
        });
      },
    );
  } finally {
    await monitor.close();
  }
}

// A refusal's list, said in its first five.
const firstFive = (lines: string[]) => `${lines.slice(0, 5).join('; ')}${lines.length > 5 ? ` and ${lines.length - 5} more` : ''}`;

// Before COMMIT: the catalog is asked what the backup's statements left (the second layer,
// behind the allow-list): a privilege in public beyond the owner's and the application
// role's stops the restore, which is rolled back; then the application role gets exactly
// the release step's grants.
async function finishPrivileges(
  client: pg.ClientBase,
  session: RestoreSession,
  database: string,
  beyondPublic: BeyondPublicWatch,
  keptExtensions: readonly string[],
  knownFunctions: readonly MigrationFunction[],
  log: (line: string) => void,
): Promise<void> {
  // What the backup (and any default privileges it met) granted is checked first, before the
  // grants below would put the application role's to exactly the release step's.
  const excess = await excessRestoredPrivileges(client, session.grantees, session.appRole ?? session.knownAppRole);
  if (excess.length > 0) {
    throw new RestoreError(
      `the backup left privileges in the public schema beyond the owner's and the application role's: ${firstFive(excess)}`,
    );
  }
  // A trigger or constraint that can be deferred could defer itself again past the check above
  // (SET CONSTRAINTS ALL DEFERRED from within), and act at COMMIT; this schema has none.
  const deferrable = await deferrableTriggers(client);
  if (deferrable.length > 0) {
    throw new RestoreError(`the backup left a trigger or constraint that can be deferred to COMMIT, after this check: ${deferrable.join('; ')}`);
  }
  // A restore replaces public and nothing else; what its code changed elsewhere (a schema
  // named after the application role, which comes first in its search path; the database's
  // settings; the owner's password) no later restore would empty.
  const beyond = await beyondPublic.changes();
  if (beyond.length > 0) {
    throw new RestoreError(
      `while the backup's statements ran, this changed beyond the public schema, which a restore leaves as it is: ${firstFive(beyond)} ` +
        "(the backup's own code did, or another session meanwhile: then restore again)",
    );
  }
  // What public may not hold, whether the backup's text or its functions made it.
  const planted = await unsafeInRestoredPublic(client, [...backupExtensions, ...keptExtensions], knownFunctions);
  if (planted.length > 0) {
    // Most likely a service's own functions, its migrations' folder not given.
    const notMigrations = planted.some((what) => what.includes('which no migration defines so'))
      ? '. If those are functions of your own migrations, restore with their folder (restore --migrations-dir DIR, restoreDatabase({ migrationsDir }))'
      : '';
    throw new RestoreError(`the backup left what it may not hold, in its statements or made by its own code while they ran: ${planted.join('; ')}${notMigrations}`);
  }
  // Without DB_APP_USER, the role the owner's default privileges gave the release step's
  // privileges before the restore emptied the schema (one role, and only with exactly those:
  // a read-only role's SELECT makes it no application role): the services log in as it, and a
  // backup made before it existed (or that left its grants out) would otherwise restore
  // tables it may not read, failing every call until the next release step.
  if (session.appRole !== undefined) {
    await grantAppRole(client, session.appRole, database);
    log(`gave the application role '${session.appRole}' its grants, as the release step does`);
  } else if (session.knownAppRole !== undefined) {
    await grantAppRole(client, session.knownAppRole, database);
    log(`gave the application role '${session.knownAppRole}' (the owner's default privileges named it before the restore) its grants, as the release step does`);
  }
}

/**
 * Restores a verified backup into a database, all or nothing, with no psql involved: the
 * backup's SQL (from `pg_restore --file=- --no-owner` for a custom archive, which only
 * reads the archive and connects nowhere; gunzipped for `.sql.gz`) is checked statement by
 * statement by `sqlScriptParts` (PostgreSQL's parse tree of each against an allow-list of
 * what pg_dump writes; no psql meta-command is ever run) and each statement is sent alone
 * over one connection inside one transaction that first empties the `public` schema
 * (`clearPublicSchema`: all but extensions a superuser created, which stay as they are);
 * COMMIT is sent only after the whole backup went through. On any failure (a statement
 * fails halfway, pg_restore or gzip fails, the server goes away, Ctrl-C) it throws
 * {@link RestoreError} and the old data is untouched. The SQL runs as a role whose
 * powers end at the database (see `restoreSession`): the URL's own, or, when that is a
 * superuser or the like, the database's owner given `owner.password`; otherwise it refuses
 * before reading the backup. Objects are owned by that role (the owner who runs migrations);
 * the backup's grants may go only to it and to the application role (`session.grantees`: a
 * GRANT to PUBLIC or any other role is refused), and before COMMIT the catalog is checked to
 * hold no privilege in `public` beyond those (`excessRestoredPrivileges`). While it holds the
 * tables, a process stopped for longer than its idle limit (`stallTimeoutMs` and a round trip)
 * is sent SIGTERM (see `watchForStop`): a service that restores in-process ends as on SIGTERM.
 *
 * @example
 * const backup = await verifyBackupFile(file)
 * await restoreDatabase({ databaseUrl, backup, log: console.error })
 */
export async function restoreDatabase(options: RestoreOptions): Promise<RestoreResult> {
  const log = options.log ?? (() => undefined);
  const { backup, signal } = options;
  signal?.throwIfAborted();
  // Refused before anything is done: a bound no timer can hold would fire at once, again and again.
  const stallTimeoutMs = optionMs('stallTimeoutMs', options.stallTimeoutMs ?? defaultPgRestoreStallTimeoutMs);
  const serverStallTimeoutMs = optionMs('serverStallTimeoutMs', options.serverStallTimeoutMs ?? defaultServerStallTimeoutMs);
  const lockTimeoutMs = optionMs('lockTimeoutMs', options.lockTimeoutMs ?? 30_000);
  const statementTimeoutMs = optionMs('statementTimeoutMs', options.statementTimeoutMs ?? defaultRestoreStatementTimeoutMs);
  // Which role runs the backup's SQL, decided before anything of the backup is read: never
  // one whose powers reach beyond the database (a superuser's reach the server's programs).
  const session =
    options.session ?? (await restoreSession(options.databaseUrl, options.owner, options.appRole === undefined ? {} : { appRole: options.appRole }));
  const target = databaseTarget(session.url);
  if (session.insteadOf) {
    log(`restoring as the database's owner '${session.role}', not as '${session.insteadOf}', whose powers reach beyond the database`);
  }

  // The longest the restore's transaction may wait idle: for the backup's next statement, which
  // the stall watch bounds, and a round trip.
  const idleMs = stallTimeoutMs + roundTripDeadlineMs;
  // The COPY guards' looks at the server's progress still under way: the restore waits for them
  // before it returns, so that none of their connections outlives it.
  const progressLooks = new Set<Promise<unknown>>();
  // Read before anything else: a folder that is not there is said now, not after the backup loaded.
  // Read once: its functions are the only ones a restored public may hold, and the names the
  // restored record lacks are said afterwards.
  const { migrationFiles, knownFunctions, knownCalls } = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir())
    .then(async (files) => {
      const functions = await functionsOfMigrations(files);
      return { migrationFiles: files, knownFunctions: functions, knownCalls: await callsOfMigrations(files, functions) };
    })
    .catch((error: unknown) => {
      throw new RestoreError(`refusing to restore ${backup.file}: ${(error as Error).message}; the database was not touched`, { cause: error });
    });
  // The file checked, and no other: a rename over it or a write to it since is refused, and so
  // is anything but a regular file (a FIFO would hold the read, and every table, for ever).
  const refuseFile = (reason: string, cause?: unknown): never => {
    throw new RestoreError(`refusing to restore ${backup.file}: ${reason}; the database was not touched`, { cause });
  };
  const { handle, info } = await openBackupFile(backup.file).catch((error: NodeJS.ErrnoException) =>
    refuseFile(error.code === 'ENOTFILE' ? 'it is no longer a regular file' : `cannot read it (${error.code ?? error.message})`, error),
  );
  const changed = backup.identity === undefined ? undefined : identityChange(backup.identity, info);
  if (changed !== undefined) {
    await handle.close();
    refuseFile(`it changed since it was checked (${changed}): check it again`);
  }
  let source: Readable;
  let sourceDone: () => Promise<void>;
  const closeSource = () => handle.close();
  let sourceEnded = false;
  let stopSource = () => void source.destroy();
  // A plain dump's header and trailer, as the SQL went by (see verifySqlDump).
  let frame: ReturnType<typeof dumpFrame> | undefined;
  if (backup.format === 'custom') {
    // Reads the archive only: the container's pg_restore would do as well as a local one.
    const pgRestore =
      backup.pgRestore ??
      (await findPgTool('pg_restore', options.toolSearch ?? {}).catch(async (error: unknown) => {
        await closeSource();
        throw error;
      }));
    log(`restoring ${backup.file} into ${target.description}, read by pg_restore ${pgRestore.version} at ${pgRestore.location}`);
    const reader = spawnPgTool(pgRestore, ['--file=-', '--no-owner'], {
      stdio: [handle.fd, 'pipe'],
      ...(signal ? { signal } : {}),
    });
    // Read from now on: Node discards the unread output of a program that has exited, which
    // pg_restore may do while the connection is still being opened.
    source = watchedOutput(reader.child, stallTimeoutMs, () =>
      new Error(`pg_restore ${pgRestore.version} wrote nothing for ${stallTimeoutMs / 1000} s while the restore waited for it (stopped, or stuck reading the backup); it was stopped`),
    );
    // Destroying the watched output only unpipes: pg_restore would wait on a full pipe for ever,
    // and keep this process alive with it.
    stopSource = () => {
      source.destroy();
      if (sourceEnded) return;
      reader.child.stdout!.destroy();
      reader.stop();
    };
    sourceDone = async () => {
      const exit: PgToolExit = await reader.exited;
      if (exit.code !== 0) throw new RestoreError(`pg_restore failed while reading the backup:\n${toolErrorText(exit.stderr)}`);
    };
  } else {
    log(`restoring ${backup.file} into ${target.description}`);
    const file = handle.createReadStream({ autoClose: false });
    const progress = byteProgress('read', backup.bytes, log);
    file.on('data', () => progress(file.bytesRead));
    // A disk or network mount that hangs would hold the read, and the restore every table of
    // public, for ever: bounded as pg_restore's output is for an archive.
    const compressed = watchedStream(file, stallTimeoutMs, () =>
      new Error(`the backup's file gave nothing for ${stallTimeoutMs / 1000} s while the restore waited for it (a hung disk or network mount?); the read was stopped`),
    );
    const gunzip = compressed.pipe(createGunzip());
    const watched = dumpFrame();
    frame = watched;
    source = gunzip.pipe(
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          watched.inspect(chunk);
          done(null, chunk);
        },
      }),
    );
    compressed.on('error', (error) => source.destroy(error));
    gunzip.on('error', (error) => source.destroy(error));
    stopSource = () => {
      source.destroy();
      gunzip.destroy();
      compressed.destroy();
      file.destroy();
    };
    sourceDone = async () => undefined;
  }

  let connected = false;
  // Once COMMIT is on its way the outcome is the server's: Ctrl-C neither stops the restore then
  // nor makes its failure read as "not committed".
  let committing = false;
  let ownSession: { pid: number; started: string } | undefined;
  let sessionNotEnded: Promise<string | undefined> | undefined;
  source.once('end', () => (sourceEnded = true));
  let tables = 0;
  let pendingMigrations: string[] = [];
  try {
    await withClient(
      session.url,
      async (client) => {
        // restoreSession refused a pooler already, on this host, port and database (the
        // owner's URL differs only in its login). The role check again, on the session that runs the backup, before its first statement,
        // with names resolved in pg_catalog only (each transaction then sets search_path to
        // pg_catalog, pg_temp: restorePrelude).
        // The restore's own round trips do no work: a server that stops answering them
        // (frozen, or behind a path that stalls while its kernel acknowledges) fails them at a
        // deadline. The backup's statements, which may run long, get none.
        const roundTrip = <T>(what: string, call: () => Promise<T>) => answeredWithin(client, roundTripDeadlineMs, what, call);
        // Without JIT: a server built with LLVM (Debian's, the official images) compiled the
        // restore's catalog checks, whose estimates over the catalogs pass jit_above_cost, at
        // 0.2-0.4 s each (PostgreSQL 15), for work of a few milliseconds; the backup's own
        // statements (DDL, COPY, a foreign key's check) gain nothing from it either.
        await roundTrip("the session's settings", () => client.query('SET search_path = pg_catalog; SET jit = off'));
        await roundTrip('the check of the role', () => requireRestrictedSession(client));
        connected = true;
        // With the statement_timeout the server, database or role gives the session, read once,
        // before any of the backup's code could change it: the restore's own bound gives way to
        // a shorter one, and is then set as it is after every statement of the backup.
        const { rows: started } = await roundTrip('the look at its own session', () =>
          client.query<{ pid: number; started: string; statement_timeout_ms: number }>(
            `SELECT pid, ${startedMicroseconds}::text AS started,
                    (EXTRACT(EPOCH FROM pg_catalog.current_setting('statement_timeout')::pg_catalog.interval) * 1000)::pg_catalog.float8 AS statement_timeout_ms
               FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()`,
          ),
        );
        ownSession = started[0];
        const ownStatementMs = started[0]?.statement_timeout_ms ?? 0;
        const statementBoundMs = ownStatementMs > 0 ? Math.min(ownStatementMs, statementTimeoutMs) : statementTimeoutMs;
        // The restore's statements that may run long (the backup's, and its own that drop,
        // check and grant) are waited for while the server runs them, and no longer.
        const watchedSession = { url: session.url, pid: ownSession?.pid, looks: progressLooks, applicationName: 'kennwilliamson-restore' };
        const running = whileRunning(client, serverStallTimeoutMs, watchedSession);
        // A restore whose host goes silent is ended by the server within about 10 s, rather
        // than holding every table of public, which each service query queues behind, for
        // hours. For the session, not its transaction: an attempt that runs out of lock time
        // aborts the transaction, which takes SET LOCAL's settings back at once, and the
        // session would then linger for the kernel's quarter of an hour. The connection is
        // the restore's own, and closed after it.
        await roundTrip('the bounds for a silent host', () => client.query(silentClientBoundsSession)).catch((error: unknown) => {
          throw rolledBack(serverFailure(error), error);
        });
        // The restore's own statements: their failure (a lock timeout on the old tables, a
        // deferred constraint at COMMIT, a lost connection) rolls everything back too. Those
        // that do no work of their own get a round trip's deadline; SET CONSTRAINTS checks every
        // deferred constraint over the restored rows, and is waited for while the server runs it.
        const step = (sql: string, what?: string) =>
          (what === undefined ? running.query(sql) : roundTrip(what, () => client.query(sql))).catch((error: unknown) => {
            throw rolledBack(serverFailure(error), error);
          });
        // Ctrl-C: stop reading and drop the connection; the server rolls the transaction back.
        // The transaction's settings and the session's bounds for a silent host, in one round
        // trip; set within the transaction, the latter go back to the values set above if it
        // aborts.
        const restoreSettings = `${restorePrelude(lockTimeoutMs, idleMs, statementBoundMs)}${silentClientBoundsSession}`;
        // Once COMMIT is on its way the outcome is the server's: the restore waits for its answer.
        const onAbort = () => {
          if (committing) return;
          source.destroy(new Error('interrupted'));
          void client.end().catch(() => undefined);
          sessionNotEnded = endInterruptedSession(session.url, ownSession);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        // Stopped while it holds the tables (Ctrl-Z, SIGSTOP), as long as it may wait idle.
        let watchdog: { stop(): void } | undefined;
        try {
          await beginHoldingTables(client, step, {
            url: session.url,
            database: target.database,
            lockTimeoutMs,
            idleMs,
            statementTimeoutMs: statementBoundMs,
            log,
            ...(signal ? { signal } : {}),
          });
          watchdog = watchForStop(idleMs);
          const { kept } = await clearPublicSchema(running).catch((error: unknown) => {
            if (error instanceof RestoreError) throw rolledBack(error.message, error);
            throw rolledBack(`${serverFailure(error)} while emptying the public schema${schemaOwnerAdvice(error)}`, error);
          });
          for (const extension of kept) {
            log(
              `keeping the extension ${extension.name} in public as it is: '${extension.owner}' created it, and only a superuser may create it again`,
            );
          }
          const keptNames = new Set(kept.map((extension) => extension.name));
          // From here on, whatever changes beyond public is the backup's doing (its code runs as
          // the owner): asked before COMMIT, in finishPrivileges.
          const beyondPublic = await watchBeyondPublic(running).catch((error: unknown) => {
            throw rolledBack(error instanceof RestoreError ? error.message : `${serverFailure(error)} while reading the catalog`, error);
          });
          let made = 0;
          for await (const part of sqlScriptParts(source, { database: target.database, grantees: session.grantees })) {
            signal?.throwIfAborted();
            // Only an extension's owner may comment on it; a kept one keeps its own comment.
            if (part.kind === 'sql' && part.statement === 'COMMENT' && part.extension && keptNames.has(part.extension)) continue;
            // The backup's `SET lock_timeout = 0` and the like would lift the restore's bounds.
            if (part.kind === 'sql' && part.setting !== undefined && restoreBounds.has(part.setting)) continue;
            // What the check accepted only to be left out: default privileges of the owner where
            // the backup was made (only that role or a superuser could set them), a REVOKE from
            // a role a restore grants nothing to (it may not exist here), and with DB_APP_USER a
            // GRANT to another role by name. The restore gives the application role its grants
            // itself (finishPrivileges).
            if (part.kind === 'sql' && part.privileges?.leaveOut) continue;
            const unknownFunction = part.kind === 'sql' && part.statement === 'CREATE FUNCTION' ? functionNoMigrationMakes(part.tree ?? {}, knownFunctions) : undefined;
            if (unknownFunction !== undefined) {
              throw rolledBack(`${oneLine(backupFunctionRefusal(unknownFunction))} at line ${part.line} of the backup's SQL`, undefined);
            }
            // Code of another schema, which no check of names alone tells from PostgreSQL's or a
            // migration's, would run as the restoring role as the rows load.
            const beyond = part.kind === 'sql' ? codeBeyondPublic(part.tree) : undefined;
            if (beyond !== undefined) {
              throw rolledBack(
                `the ${oneLine(beyond)}, code outside the public schema, which would run as the restoring role while the rows load: ` +
                  `refused before it could run, at line ${part.line} of the backup's SQL`,
                undefined,
              );
            }
            // pg_dump's own set_config and setval aside, an expression that calls such a function
            // would run it as the rows load, before the check before COMMIT could refuse it.
            const unsafeCall = part.kind === 'sql' && !pgDumpsOwnCalls.has(part.statement) ? unsafeCallIn(part.tree) : undefined;
            if (unsafeCall !== undefined) {
              throw rolledBack(
                `an expression that calls ${oneLine(unsafeCall)}, which acts beyond its row (on the session, other sessions or the server) or runs SQL text: ` +
                  `refused before it could run, at line ${part.line} of the backup's SQL`,
                undefined,
              );
            }
            // Any other computation the migrations never make may spend the server's time or
            // memory for as long as the backup likes, row after row, with every table held.
            const unknownWork = part.kind === 'sql' && !pgDumpsOwnCalls.has(part.statement) ? workNoMigrationDoes(part.tree, knownCalls) : undefined;
            if (unknownWork !== undefined) {
              throw rolledBack(
                `an expression that ${oneLine(unknownWork)}, as no migration's SQL does (a backup's expressions run as its rows load, ` +
                  `with every table held, and may take the server's time or memory for as long as they like): refused before it could run, at line ${part.line} of the backup's SQL` +
                  '; a service with migrations of its own restores with their folder (restore --migrations-dir DIR, restoreDatabase({ migrationsDir }))',
                undefined,
              );
            }
            if (makesSomething(part)) made += 1;
            // The name is the backup's: a line break in it would start a line of its choosing
            // ("Restored … into …") among the progress, which a terminal's escaping keeps.
            if (part.kind === 'copy') log(`restoring table ${oneLine(part.table)} (${++tables}${backup.tables ? ` of ${backup.tables}` : ''})`);
            const query =
              part.kind === 'copy'
                ? new ScriptQuery(part.text, part.data, copyStallGuard(client, part.table, serverStallTimeoutMs, { url: session.url, pid: ownSession?.pid, looks: progressLooks }))
                : new ScriptQuery(part.text);
            client.query(query);
            // A COPY's rows have their own watch (copyStallGuard); any other statement is
            // waited for while the server runs it.
            const answered = part.kind === 'copy' ? query.done : answeredWhileRunning(client, serverStallTimeoutMs, leadingWords(part.text) ?? 'a statement', watchedSession, () => query.done);
            await answered.catch((error: unknown) => {
              if (query.failedReading) throw error; // the backup's stream broke, not the server
              throw rolledBack(statementFailure(error, part, kept, statementBoundMs), error);
            });
            // The backup's own functions run while its statements do (a CHECK as its rows load,
            // a trigger, an index expression) and may change settings for the rest of the
            // session: standard_conforming_strings or client_encoding turned, the next
            // statement would reach the server read otherwise than the vetting read it
            // (SECURITY DEFINER hidden in a string), a timeout lifted, or the bounds for a
            // silent host (the restore would hold every table for the kernel's quarter of an
            // hour, or two hours, after its host went silent). Set again after each.
            await step(restoreSettings, "the restore's settings");
          }
          await sourceDone();
          // A script that makes nothing (pg_dump's header alone) would leave an empty schema
          // behind: never a restore's result.
          if (made === 0) throw new RestoreError(nothingMade);
          // verifyBackupFile checked this, but the file may have changed since (or a caller
          // skipped the check): a dump cut short between statements vets clean statement by
          // statement, and would leave out what came last (indexes, constraints, sequences).
          const problem = frame?.problem();
          if (problem !== undefined) throw new RestoreError(problem);
          // Deferred constraints and constraint triggers fire now, not at COMMIT: a backup's
          // trigger deferred to COMMIT would grant what it likes after the catalog was asked.
          await step('SET CONSTRAINTS ALL IMMEDIATE');
          // What fired there was the backup's code too: the restore's settings again, before
          // the catalog is asked with them.
          await step(restoreSettings, "the restore's settings");
          await finishPrivileges(running, session, target.database, beyondPublic, [...keptNames], knownFunctions, log).catch((error: unknown) => {
            throw rolledBack(error instanceof RestoreError ? error.message : `${serverFailure(error)} while setting the restored objects' privileges`, error);
          });
          // What the restored record says is applied, for what is left to apply (a backup older
          // than the release), read before COMMIT: a record the release step cannot go on from is
          // refused here, with nothing changed (see recordProblem).
          const readRecord = async () => {
            const { rows: present } = await client.query<{ present: boolean; tables: boolean }>(
              `SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present,
                      EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = 'public'::pg_catalog.regnamespace AND relkind IN ('r', 'p') AND relname <> $2) AS tables`,
              [qualifiedMigrationsTable, migrationsTable],
            );
            const { present: recorded, tables } = present[0]!;
            // Read in bounded memory: the backup's rows may be many, with names of 200 kB each (a
            // record of 5,000 such took 1.1 GB of memory and printed a 1 MB refusal). A record with
            // more rows than the release has files names migrations it lacks, among the first ones
            // read past those files' count; no migration's name is 200 characters long.
            if (!recorded) return { states: migrationStates(migrationFiles, []), recorded, tables, unknownCount: 0 };
            // The names the release lacks are counted over every row, in the same read.
            const names = migrationFiles.map((file) => file.name);
            const { rows } = await client.query<{ name: string; checksum: string; unknown: number }>(
              `SELECT pg_catalog.left(name, 200) AS name, pg_catalog.left(checksum, 64) AS checksum,
                      (pg_catalog.count(*) FILTER (WHERE NOT name OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])) OVER ())::pg_catalog.int4 AS unknown
                 FROM ${qualifiedMigrationsTable}
                ORDER BY name OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) DESC, name LIMIT $2`,
              [names, names.length + 5],
            );
            return { states: migrationStates(migrationFiles, rows), recorded, tables, unknownCount: rows[0]?.unknown ?? 0 };
          };
          const record = await roundTrip('the look at the migrations record', readRecord).catch((error: unknown) => {
            throw rolledBack(`${serverFailure(error)} while reading the migrations record`, error);
          });
          const recordRefused = recordProblem(record.states, record.recorded, record.tables, record.unknownCount);
          if (recordRefused !== undefined) throw rolledBack(recordRefused, undefined);
          pendingMigrations = record.states.filter((each) => each.state === 'pending').map((each) => each.name);
          // Never COMMIT once interrupted, whatever was already sent.
          signal?.throwIfAborted();
          committing = true;
          await roundTrip('COMMIT', () => client.query('COMMIT')).catch((error: unknown) => {
            if (!(error instanceof ConnectionError && error.reason === 'deadline')) throw rolledBack(serverFailure(error), error);
            // Sent, and never answered: whether it committed is the server's to tell.
            const unknown = new RestoreError(
              `no answer to COMMIT within ${roundTripDeadlineMs} ms; the connection was closed: the restore may or may not be committed; ` +
                'look at the tables before running it again',
              { cause: error },
            );
            serverRefusals.add(unknown);
            throw unknown;
          });
        } catch (error) {
          const rolledBackHere = await roundTrip('ROLLBACK', () => client.query('ROLLBACK')).then(
            () => true,
            () => false,
          );
          // No ROLLBACK answered: the connection is closed (a stall's bound, a deadline), and the
          // server may go on with the backup's statement for ever, holding every table of public,
          // where the backup's code turned its check of the connection off within it. Ended from
          // a connection of its own, as for Ctrl-C; what cannot be ended is said.
          if (!rolledBackHere && !committing) sessionNotEnded ??= endInterruptedSession(session.url, ownSession);
          throw error;
        } finally {
          watchdog?.stop();
          signal?.removeEventListener('abort', onAbort);
        }
      },
      'kennwilliamson-restore',
    );
  } catch (error) {
    const failure = await restoreFailure(error);
    const notEnded = await sessionNotEnded;
    if (notEnded === undefined || (signal?.aborted && !committing)) throw failure;
    // Not rolled back yet: the server does so when the session ends.
    const rolledBackSaid = /^restore failed and was rolled back; the database was not changed:\n|\nthe restore was rolled back; the database was not changed$/;
    throw new RestoreError(
      `${failure.message.replace(rolledBackSaid, '')}\nrestore failed: nothing was committed, but ${notEnded}: it holds the tables of public ` +
        `until it ends, and is rolled back then${ownSession ? ` (SELECT pg_terminate_backend(${ownSession.pid}), as its role or a superuser)` : ''}`,
      { cause: failure.cause ?? error },
    );
  } finally {
    await closeSource();
    await Promise.allSettled(progressLooks);
  }
  log(`restored ${tables} tables from ${backup.file}`);
  if (pendingMigrations.length > 0) {
    log(
      `the backup is older than these migrations: ${pendingMigrations.length} of them not applied (${pendingMigrations[0]}` +
        `${pendingMigrations.length > 1 ? ` to ${pendingMigrations.at(-1)}` : ''}): apply them (the release step: kennwilliamson-db migrate, ` +
        'or setup) before the services use the database, whose code expects them',
    );
  }
  return { tables, pendingMigrations };

  // The restore's failure as it is reported, once the source is stopped.
  async function restoreFailure(error: unknown): Promise<RestoreError> {
    if (!connected) {
      stopSource();
      if (error instanceof RestoreError) return error;
      return new RestoreError(
        `could not connect to ${target.description}: ${(error as Error).message}; the database was not touched`,
        { cause: error },
      );
    }
    const ended = sourceEnded;
    stopSource();
    // An aborted program or connection reports itself as some other failure: the interruption
    // comes first, once the server's session (and with it every lock of the restore) is gone.
    if (signal?.aborted && !committing) {
      const notEnded = await sessionNotEnded;
      if (notEnded !== undefined) {
        return new RestoreError(
          `restore interrupted before its COMMIT; nothing was committed, but ${notEnded}: it holds the tables of public until it ends` +
            `${ownSession ? ` (SELECT pg_terminate_backend(${ownSession.pid}), as its role or a superuser)` : ''}`,
          { cause: error },
        );
      }
      return new RestoreError('restore interrupted before its COMMIT; the database was not changed', { cause: error });
    }
    // When the stream ended by itself, a failed pg_restore is the cause: its account comes first.
    const readFailure = ended
      ? await sourceDone().then(
          () => undefined,
          (failure: unknown) => failure,
        )
      : undefined;
    if (readFailure instanceof RestoreError) {
      return new RestoreError(`${readFailure.message}\nthe restore was rolled back; the database was not changed`, { cause: error });
    }
    if (error instanceof RestoreError) {
      if (serverRefusals.has(error)) return error;
      // Refused by the vetting (a statement outside the allow-list, a meta-command …) after earlier parts ran.
      return new RestoreError(`refusing to restore ${backup.file}: ${error.message}\nthe restore was rolled back; the database was not changed`, {
        cause: error,
      });
    }
    return new RestoreError(
      `reading the backup failed: ${(error as Error).message}\nthe restore was rolled back; the database was not changed`,
      { cause: error },
    );
  }
}
