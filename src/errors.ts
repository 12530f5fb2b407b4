/**
 * Every error this package throws extends {@link DbError}, so a service can tell ours from
 * anything else with one `instanceof`, and every wrapped failure keeps the original as
 * `cause`. PostgreSQL errors are mapped by SQLSTATE in {@link mapDatabaseError}, the one
 * place that knows those codes. Messages never contain tokens, password hashes or
 * connection passwords.
 */

import { NoResultError } from 'kysely';
import { type BlockingSession, describeBlockingSessions } from './blocking-session.js';

export type { BlockingSession } from './blocking-session.js';

// The names of an error's classes, from its own up to DbError, under a registered symbol.
const errorClasses = Symbol.for('@kennwilliamson/db/error-classes');

/** Base class of every error this package throws. */
export class DbError extends Error {
  /** A stable, machine-readable name for the failure (for logs and API responses). */
  readonly code: string = 'DB_ERROR';
  /**
   * Whether running the same operation again may succeed: a lost connection, a deadlock, a
   * serialization failure or a lock not available. See {@link isRetryable}.
   */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    const classes: string[] = [];
    for (let type: unknown = new.target; type !== Error && typeof type === 'function'; type = Object.getPrototypeOf(type)) {
      classes.push((type as { name: string }).name);
    }
    Object.defineProperty(this, errorClasses, { value: classes });
  }

  /**
   * `error instanceof UniqueViolationError` holds also for an error made by the other build of
   * this package: a service that loads both (its code requires the CommonJS build, an ES module
   * dependency imports the other) has two classes of each name, and an error of one copy
   * would otherwise be no instance of the other's. Decided by the class names recorded on the
   * error, which only this package's errors carry.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const classes = (value as { [errorClasses]?: unknown } | null | undefined)?.[errorClasses];
    return Array.isArray(classes) && classes.includes(this.name);
  }
}

/** Configuration is missing or invalid; the message names the variable or option. */
export class ConfigError extends DbError {
  override readonly code = 'CONFIG_INVALID';

  constructor(
    readonly variable: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** No connection became free within the acquire timeout. */
export class PoolTimeoutError extends DbError {
  override readonly code = 'POOL_TIMEOUT';

  constructor(
    readonly waitedMs: number,
    readonly maxConnections: number,
    readonly inUse: number,
    readonly waiting: number,
    options?: { cause?: unknown },
  ) {
    super(
      `Timed out after ${waitedMs} ms waiting for a database connection ` +
        `(pool max ${maxConnections}, ${inUse} in use, ${waiting} waiting)`,
      options,
    );
  }
}

/** The pool was ended (`db.destroy()`): it hands out no connection and will never be ready. */
export class PoolClosedError extends DbError {
  override readonly code = 'POOL_CLOSED';
}

/**
 * `poolOf(db).ready()` waited its whole timeout without the pool reaching its minimum of open
 * connections that answer (the server is unreachable, refusing, or too slow to accept, or a
 * pooler takes logins that its server cannot serve). The last failed
 * attempt, if any, is the `cause`.
 */
export class PoolNotReadyError extends DbError {
  override readonly code = 'POOL_NOT_READY';

  constructor(
    readonly waitedMs: number,
    readonly open: number,
    readonly minConnections: number,
    options?: { cause?: unknown },
  ) {
    super(
      `The connection pool was not ready after ${waitedMs} ms: ${open} of its minimum ${minConnections} connection(s) open and answering`,
      options,
    );
  }
}

/**
 * The database could not be reached, or the connection was lost: refused or reset, closed by
 * the server (SQLSTATE 57P01 terminated by an administrator, 57P02 crash, 57P03 starting up or
 * shutting down, 25P03 idle in a transaction too long, class 08 but for PgBouncer's refusal of a
 * transaction in statement mode, a `ConfigError`), silent past the call
 * deadline or the TCP keepalive (`ETIMEDOUT`), a login past the connect timeout, or ended in
 * the middle of a query. Retryable; `reason` is the SQLSTATE, the system error code
 * (`ECONNREFUSED`), `deadline`, `connect-timeout` or `terminated`, and the message says which
 * bound fired when one did. When a socket failed, `server` is the address and port it tried
 * (`127.0.0.1:5433`), or the host name that did not resolve, and the message names it. When
 * the server or a pooler in front of it said why (PgBouncer's `query_wait_timeout`, `server
 * login has been failing`, PostgreSQL's `the database system is starting up`), its own words
 * are in the message as `serverMessage`, not only in `cause`: they are what an operator acts on.
 */
export class ConnectionError extends DbError {
  override readonly code = 'CONNECTION_FAILED';
  override readonly retryable = true;
  readonly server: string | undefined;
  /** What the server or pooler said, when it said something (a message with a SQLSTATE). */
  readonly serverMessage: string | undefined;

  constructor(
    readonly reason: string,
    options?: { cause?: unknown; server?: string | undefined; serverMessage?: string | undefined; detail?: string | undefined },
  ) {
    const to = options?.server === undefined ? '' : ` to ${options.server}`;
    const said = [options?.serverMessage, options?.detail].filter(Boolean).join('; ');
    super(`The database connection${to} failed (${reason}${said ? `: ${said}` : ''}); the operation may be retried`, options);
    this.server = options?.server;
    this.serverMessage = options?.serverMessage;
  }
}

/** SQLSTATE 40P01: PostgreSQL broke a deadlock by cancelling this transaction. Retry the whole transaction. */
export class DeadlockError extends DbError {
  override readonly code = 'DEADLOCK';
  override readonly retryable = true;
  readonly sqlState = '40P01';

  constructor(options?: { cause?: unknown }) {
    super('The transaction was cancelled to break a deadlock; retry it', options);
  }
}

/** SQLSTATE 40001: a concurrent transaction changed what this one read. Retry the whole transaction. */
export class SerializationError extends DbError {
  override readonly code = 'SERIALIZATION_FAILURE';
  override readonly retryable = true;
  readonly sqlState = '40001';

  constructor(options?: { cause?: unknown }) {
    super('The transaction could not be serialized with a concurrent one; retry it', options);
  }
}

/**
 * SQLSTATE 55P03: a lock (a row another transaction is changing, a table an `ALTER` holds) was
 * not available within `lock_timeout`, or at once with `NOWAIT`. Retryable: the holder
 * usually finishes soon; retry the whole transaction, after a pause. `lockTimeoutMs` is the
 * bound that fired, when the pool set it.
 *
 * Also a statement cancelled by `statement_timeout` (SQLSTATE 57014, `limit`
 * `'statement_timeout'`) while it waited for a row another transaction held: on a busy row
 * (one held by one transaction after another) each wait starts a new `lock_timeout`, and
 * `statement_timeout` ends the queue; a retry is as right then as after one long wait.
 */
export class LockNotAvailableError extends DbError {
  override readonly code = 'LOCK_NOT_AVAILABLE';
  override readonly retryable = true;
  /** 55P03, or 57014 where `statement_timeout` ended the wait. */
  readonly sqlState: '55P03' | '57014';
  /** The bound that ended the wait. */
  readonly limit: 'lock_timeout' | 'statement_timeout';
  readonly lockTimeoutMs: number | undefined;
  readonly statementTimeoutMs: number | undefined;
  /**
   * It never reached the server: it waited in the process behind a call for the same user's
   * row that failed so (its `cause`), and the row was not found free right after.
   */
  readonly behindCallForRow: boolean;

  constructor(options?: {
    cause?: unknown;
    lockTimeoutMs?: number | undefined;
    limit?: 'lock_timeout' | 'statement_timeout' | undefined;
    statementTimeoutMs?: number | undefined;
    /** It waited in the process behind a call for the same row, which failed so (its `cause`), and the row was not found free. */
    behindCallForRow?: boolean | undefined;
    /** Words of a caller that knows what waited (see {@link MigrationRecordLockedError}). */
    message?: string | undefined;
  }) {
    const limit = options?.limit ?? 'lock_timeout';
    const boundMs = limit === 'statement_timeout' ? options?.statementTimeoutMs : options?.lockTimeoutMs;
    super(
      options?.message !== undefined
        ? options.message
        : options?.behindCallForRow
        ? 'A lock was not available in time: the call ahead of this one for the same row waited for it until ' +
            `${limit}${boundMs === undefined ? '' : ` (${boundMs} ms)`}, and the row was not found free right after (or could not be looked at); ` +
            'this one failed with it, without a connection; retry the transaction after a pause'
        : limit === 'statement_timeout'
        ? `A row lock was not available in time: the statement waited for the row's holders, one after another, until statement_timeout` +
            `${options?.statementTimeoutMs === undefined ? '' : ` (${options.statementTimeoutMs} ms)`} cancelled it; retry the transaction after a pause`
        : options?.lockTimeoutMs === undefined
        ? 'A lock was not available in time (lock_timeout or NOWAIT); retry the transaction'
        : `A lock was not available within lock_timeout (${options.lockTimeoutMs} ms); retry the transaction, ` +
          'or give it more time with withTimeouts(db, { lockTimeout }, …)',
      options,
    );
    this.sqlState = limit === 'statement_timeout' ? '57014' : '55P03';
    this.limit = limit;
    this.lockTimeoutMs = options?.lockTimeoutMs;
    this.statementTimeoutMs = options?.statementTimeoutMs;
    this.behindCallForRow = options?.behindCallForRow === true;
  }
}

/** Which bound cancelled a statement, as far as the caller can tell (see {@link QueryCanceledError}). */
export type CancelReason = 'statement_timeout' | 'cancel_request' | 'unknown';

/**
 * SQLSTATE 57014: the statement was cancelled, by `statement_timeout` or by a cancel request
 * (`pg_cancel_backend`). `reason` says which, judged by how long the statement ran against the
 * pool's `statement_timeout` (`unknown` where the pool cannot tell, as behind a pooler, whose
 * server takes the role's own). Not retryable: the same statement would meet the same bound;
 * give a call that needs more time a larger one with `withTimeouts`.
 */
export class QueryCanceledError extends DbError {
  override readonly code = 'QUERY_CANCELED';
  readonly sqlState = '57014';
  readonly reason: CancelReason;
  readonly elapsedMs: number | undefined;
  readonly statementTimeoutMs: number | undefined;

  constructor(options?: { cause?: unknown; reason?: CancelReason | undefined; elapsedMs?: number | undefined; statementTimeoutMs?: number | undefined }) {
    const reason = options?.reason ?? 'unknown';
    const after = options?.elapsedMs === undefined ? '' : ` after ${options.elapsedMs} ms`;
    const limit = options?.statementTimeoutMs === undefined ? 'statement_timeout' : `statement_timeout (${options.statementTimeoutMs} ms)`;
    super(
      reason === 'statement_timeout'
        ? `The statement was cancelled${after}: ${limit} fired. Give a call that needs longer more time with withTimeouts(db, { statementTimeout }, …)`
        : reason === 'cancel_request'
        ? `The statement was cancelled${after} by a cancel request (pg_cancel_backend or a client's cancel), before ${limit}`
        : `The statement was cancelled${after} (${limit} or a cancel request)`,
      options,
    );
    this.reason = reason;
    this.elapsedMs = options?.elapsedMs;
    this.statementTimeoutMs = options?.statementTimeoutMs;
  }
}

/**
 * SQLSTATE class 22 (data exception): PostgreSQL rejected a value, e.g. 22P02 invalid text
 * for its type, 22003 a number out of range, 22021 a NUL character. The message never
 * repeats the value (PostgreSQL's own message, which may, stays in `cause`).
 */
export class DataExceptionError extends DbError {
  override readonly code = 'DATA_EXCEPTION';

  constructor(
    readonly sqlState: string,
    options?: { cause?: unknown },
  ) {
    super(`PostgreSQL rejected a value (SQLSTATE ${sqlState})`, options);
  }
}

/**
 * SQLSTATE 25P02: an earlier statement of this transaction failed, so PostgreSQL ignores every
 * further statement until the transaction ends. Roll it back; to carry on after an expected
 * failure (say a `UniqueViolationError`), run that step under `withSavepoint`.
 */
export class TransactionAbortedError extends DbError {
  override readonly code = 'TRANSACTION_ABORTED';
  readonly sqlState = '25P02';

  constructor(options?: { cause?: unknown }) {
    super(
      'The transaction was aborted by an earlier error; roll it back, or run the failing step under withSavepoint',
      options,
    );
  }
}

/**
 * A named (server-side prepared) statement failed before it ran, inside a transaction: the
 * connection had lost it (SQLSTATE 26000, after `DISCARD ALL` or behind a pooler), already held
 * it (42P05), or a migration had changed its result type (0A000, "cached plan must not change
 * result type"). The pool has repaired what it could (outside a transaction it retries the
 * call itself); the transaction is aborted, and running it again may succeed. Retryable.
 */
export class PreparedStatementError extends DbError {
  override readonly code = 'PREPARED_STATEMENT_INVALID';
  override readonly retryable = true;

  constructor(
    readonly sqlState: string,
    options?: { cause?: unknown },
  ) {
    super(`A prepared statement was missing or outdated on its connection (SQLSTATE ${sqlState}); retry the transaction`, options);
  }
}

/**
 * Any other failure of the database or its driver: an SQLSTATE without a class of its own
 * (`sqlState` says which; PostgreSQL's message is kept), or an error with no SQLSTATE at all.
 */
export class DatabaseError extends DbError {
  override readonly code = 'DATABASE_ERROR';

  constructor(
    readonly sqlState: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A migration file failed; names the file, the line and PostgreSQL's message. */
export class MigrationError extends DbError {
  override readonly code: string = 'MIGRATION_FAILED';

  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly databaseMessage: string,
    options?: { cause?: unknown },
  ) {
    super(`Migration ${file}${line === undefined ? '' : ` failed at line ${line}`}: ${databaseMessage}`, options);
  }
}

/**
 * A no-transaction migration (`-- migrate:no-transaction`) failed part-way. The statements
 * before the failing one took effect and stay; the migration is not recorded. `cleanup` says
 * what may need undoing by hand before the next run (e.g. an INVALID index).
 */
export class MigrationPartiallyAppliedError extends MigrationError {
  constructor(
    file: string,
    line: number | undefined,
    databaseMessage: string,
    /** How many of the file's statements succeeded (and stay applied) before the failure. */
    readonly statementsApplied: number,
    readonly cleanup: string,
    options?: { cause?: unknown },
  ) {
    super(file, line, databaseMessage, options);
    this.message +=
      `. It ran without a transaction: the ${statementsApplied} statement(s) before it took effect and stay, ` +
      `and the migration is not recorded. ${cleanup}`;
  }
}

/**
 * A migration file was refused before any of it ran (transaction control in a transactional
 * file, a syntax error, `COPY … FROM stdin`, an unknown `-- migrate:` header); names file and line.
 */
export class MigrationScriptError extends DbError {
  override readonly code = 'MIGRATION_REFUSED';

  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Migration ${file}${line === undefined ? '' : ` line ${line}`}: ${reason}`, options);
  }
}

/** An applied migration's file no longer matches the checksum recorded when it ran. */
export class MigrationChecksumError extends DbError {
  override readonly code = 'MIGRATION_CHECKSUM_MISMATCH';

  constructor(
    readonly file: string,
    readonly recorded: string,
    readonly actual: string,
  ) {
    super(
      `Checksum mismatch: ${file} was changed after it was applied ` +
        `(recorded ${recorded.slice(0, 12)}…, file now ${actual.slice(0, 12)}…). ` +
        'Write a new migration instead of editing an applied one.',
    );
  }
}

/** The database records a migration whose file is not in the migrations folder. */
export class MigrationMissingError extends DbError {
  override readonly code = 'MIGRATION_MISSING';

  constructor(readonly migration: string) {
    // An older release deployed over a newer schema, most often: say the way back (README: Rolling back).
    super(
      `Migration ${migration} is recorded as applied but ${migration}.up.sql is missing: a package older than the schema? ` +
        'Deploy it without migrating (its release step, or a migration at start-up), and revert the schema, if at all, once no ' +
        "instance of the newer release (which fails on the older schema) runs, with the release that applied it (migrate down --to NAME) " +
        'or its migrations folder (--migrations-dir DIR); README: Rolling back',
    );
  }
}

/** Who holds the migration lock, as far as `pg_stat_activity` tells. */
export interface MigrationLockHolder {
  /** The server process (behind a pooler: the server connection's backend). */
  pid: number;
  applicationName: string;
  /** When the holder's transaction began, i.e. since when it has held the lock. */
  since?: Date | undefined;
}

function describeHolder(holder: MigrationLockHolder | undefined): string {
  if (holder === undefined) return 'held by a session that has since ended or is not visible to this role';
  const since = holder.since ? ` since ${holder.since.toISOString()}` : '';
  return `held by pid ${holder.pid} (application '${holder.applicationName}')${since}`;
}

/**
 * Another migration run held the lock for longer than the lock timeout. `limit` says which
 * bound ended the wait: the migrator's own (`MIGRATION_LOCK_TIMEOUT`, PostgreSQL's
 * `lock_timeout` on the waiting connection) or a `statement_timeout` set for the migrating role
 * or the database, which cancels the wait when it is shorter.
 */
export class MigrationLockTimeoutError extends DbError {
  override readonly code = 'MIGRATION_LOCK_TIMEOUT';
  readonly limit: 'lock_timeout' | 'statement_timeout';

  constructor(
    readonly waitedMs: number,
    readonly holder: MigrationLockHolder | undefined,
    options?: { cause?: unknown; limit?: 'lock_timeout' | 'statement_timeout' | undefined },
  ) {
    super(
      `Timed out after ${waitedMs} ms waiting for the migration lock, ${describeHolder(holder)}. ` +
        (options?.limit === 'statement_timeout'
          ? 'The statement_timeout of the migrating role or database cancelled the wait before MIGRATION_LOCK_TIMEOUT; ' +
            'raise that statement_timeout (ALTER ROLE … SET statement_timeout) or wait for the other run.'
          : 'Another migration run is in progress (or stuck); raise MIGRATION_LOCK_TIMEOUT to wait longer.'),
      options,
    );
    this.limit = options?.limit ?? 'lock_timeout';
  }
}

/**
 * A statement on the migrations record (`schema_migrations`: `migrate status`'s read, a run's
 * read, record or removal of a migration) waited for the table's lock longer than the run
 * waits for another run (`MIGRATION_LOCK_TIMEOUT`, PostgreSQL's `lock_timeout` on it): a
 * restore holds the table for its whole run, and so may an operator's `LOCK TABLE`. A
 * {@link LockNotAvailableError} (code `LOCK_NOT_AVAILABLE`) that says what waited and names
 * the sessions seen blocking it. Nothing was applied or reverted by the statement that waited.
 */
export class MigrationRecordLockedError extends LockNotAvailableError {
  constructor(
    /** What waited: `the read of the applied migrations`, `the record of the migration` … */
    readonly statement: string,
    readonly waitedMs: number,
    /** Who held the table as it gave up; undefined where they could not be looked at. */
    readonly blockers: readonly BlockingSession[] | undefined,
    options: { cause?: unknown; lockTimeoutMs: number },
  ) {
    super({
      ...options,
      message:
        `Timed out after ${waitedMs} ms waiting for the migrations record's table (${statement}), ` +
        `${blockers === undefined ? 'held by sessions that could not be looked at' : describeBlockingSessions(blockers)}: ` +
        "a restore holds it for its whole run, as may a migration or an operator's LOCK TABLE. Run it again once that is done, " +
        'or raise MIGRATION_LOCK_TIMEOUT to wait longer.',
    });
  }
}

/**
 * The connection holding the migration lock was lost mid-run (its session ended, or the
 * network dropped it), so another run may have started: the migrator stops. The message says
 * what stays: a transactional migration is rolled back whole; a no-transaction one keeps the
 * statements that had committed, and is not recorded.
 */
export class MigrationLockLostError extends DbError {
  override readonly code = 'MIGRATION_LOCK_LOST';

  constructor(options?: { cause?: unknown; detail?: string | undefined }) {
    super(
      `The connection holding the migration lock was lost; ${options?.detail ?? 'the current migration was rolled back'}. Run the migrations again.`,
      options,
    );
  }
}

/**
 * A migration could not take its locks within its budget: each attempt waited up to its
 * `lock_timeout` and rolled back (so that traffic queued behind it went on), and the total
 * budget ran out. Names the sessions that blocked the last attempt. A transactional migration
 * left nothing applied; a no-transaction one keeps `statementsApplied` statements, and a
 * `CREATE INDEX CONCURRENTLY` that ran out of time after it made its index (while it waited
 * for older transactions) leaves that index behind, INVALID: `invalidIndex` names it.
 */
export class MigrationBlockedError extends MigrationError {
  override readonly code = 'MIGRATION_BLOCKED';
  readonly invalidIndex: string | undefined;

  constructor(
    file: string,
    line: number | undefined,
    readonly attempts: number,
    readonly waitedMs: number,
    readonly blockers: readonly BlockingSession[],
    readonly statementsApplied: number,
    budget: string,
    options?: { cause?: unknown; invalidIndex?: string | undefined },
  ) {
    const invalidIndex = options?.invalidIndex;
    super(
      file,
      line,
      `gave up waiting for its locks after ${attempts} attempt(s) over ${waitedMs} ms (${budget}), ${describeBlockingSessions(blockers)}. ` +
        (statementsApplied === 0 && invalidIndex === undefined
          ? 'Nothing of this migration was applied.'
          : `It runs without a transaction: the ${statementsApplied} statement(s) before this one took effect and stay, and the migration is not recorded.`) +
        (invalidIndex === undefined
          ? ''
          : ` This CREATE INDEX CONCURRENTLY left its index ${invalidIndex} behind, INVALID (unused, yet maintained on every write): ` +
            `drop it with DROP INDEX CONCURRENTLY ${invalidIndex}; before the next run, which would otherwise refuse it.`) +
        " Run it again when the blocking session is done, or give the file more time with a '-- migrate:lock-wait' header",
      options,
    );
    this.invalidIndex = invalidIndex;
  }
}

/** The role migrating cannot create objects: migrations need the owner's (direct) URL. */
export class MigrationPermissionError extends DbError {
  override readonly code = 'MIGRATION_PERMISSION';

  constructor(
    readonly role: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Role '${role}' cannot create objects in the schema, so it cannot run migrations. ` +
        'Migrations need the database owner: set MIGRATION_DATABASE_URL to the owner\'s direct connection ' +
        '(DATABASE_URL is what services query with, usually the application role through a pooler).',
      options,
    );
  }
}

/**
 * A backup, restore, setup or migration was refused because its URL reaches a connection
 * pooler (the server process that answers is not the one PostgreSQL announced at login). A
 * pooler in transaction mode hands the server connection to other clients afterwards, with
 * whatever session settings the operation left on it. `variable` names where the URL came
 * from, when known.
 */
export class DirectConnectionRequiredError extends DbError {
  override readonly code = 'DIRECT_CONNECTION_REQUIRED';

  constructor(
    readonly operation: string,
    readonly variable: string | undefined,
  ) {
    const through =
      variable === 'DATABASE_URL'
        ? `MIGRATION_DATABASE_URL is not set, and DATABASE_URL, which ${operation} falls back to, reaches a connection pooler: ` +
          "that is the services' URL (usually the application role through PgBouncer), not the owner's direct connection"
        : `${variable ?? 'its database URL'} reaches a connection pooler`;
    super(
      `${operation} refused: ${through} (the server process that answers is not the one PostgreSQL announced at login). ` +
        'Backups, restores, setup and migrations never run through a pooler: in transaction mode it hands their server ' +
        'connection to the services next, with the session settings left on it (pg_dump empties search_path, for one). ' +
        "Set MIGRATION_DATABASE_URL to the owner's direct connection to PostgreSQL.",
    );
  }
}

/**
 * Input was rejected, before any query ran or (for a caller's transaction at an isolation
 * level the call cannot run in, `field` `db`) before anything of the call took effect;
 * `field` names the offending input.
 */
export class ValidationError extends DbError {
  override readonly code = 'VALIDATION';

  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** The row does not exist, or is not the caller's to see. */
export class NotFoundError extends DbError {
  override readonly code = 'NOT_FOUND';

  constructor(
    readonly entity: string,
    options?: { cause?: unknown },
  ) {
    super(`${entity} not found`, options);
  }
}

/** The acting user lacks the role the operation requires. */
export class ForbiddenError extends DbError {
  override readonly code = 'FORBIDDEN';

  constructor(readonly requiredRole: string) {
    super(`This operation requires the ${requiredRole} role`);
  }
}

/** The row changed state under us (another request won a race). */
export class ConflictError extends DbError {
  override readonly code = 'CONFLICT';
}

/** Details PostgreSQL reports with an integrity violation. */
export interface IntegrityDetails {
  /** PostgreSQL's SQLSTATE, e.g. `23505`. */
  sqlState: string;
  constraint: string | undefined;
  table: string | undefined;
  column: string | undefined;
}

/** Base of the errors PostgreSQL raises for SQLSTATE class 23 (integrity constraint violation). */
export class IntegrityError extends DbError {
  override readonly code: string = 'INTEGRITY';
  readonly sqlState: string;
  readonly constraint: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;

  constructor(message: string, details: IntegrityDetails, options?: { cause?: unknown }) {
    super(message, options);
    this.sqlState = details.sqlState;
    this.constraint = details.constraint;
    this.table = details.table;
    this.column = details.column;
  }
}

/** SQLSTATE 23505. `field` is the input the unique constraint protects (`email`, `slug`). */
export class UniqueViolationError extends IntegrityError {
  override readonly code = 'UNIQUE_VIOLATION';
  readonly field: string | undefined;

  constructor(details: IntegrityDetails, options?: { cause?: unknown }) {
    const field = details.constraint === undefined ? undefined : uniqueConstraintFields[details.constraint];
    super(field === undefined ? 'Value already exists' : `${field} is already taken`, details, options);
    this.field = field;
  }
}

/** SQLSTATE 23503. */
export class ForeignKeyViolationError extends IntegrityError {
  override readonly code = 'FOREIGN_KEY_VIOLATION';

  constructor(details: IntegrityDetails, options?: { cause?: unknown }) {
    super(`Referenced row does not exist or is still referenced (${details.constraint ?? 'foreign key'})`, details, options);
  }
}

/** SQLSTATE 23502. */
export class NotNullViolationError extends IntegrityError {
  override readonly code = 'NOT_NULL_VIOLATION';

  constructor(details: IntegrityDetails, options?: { cause?: unknown }) {
    super(`${details.column ?? 'A column'} must not be null`, details, options);
  }
}

/** SQLSTATE 23514. */
export class CheckViolationError extends IntegrityError {
  override readonly code = 'CHECK_VIOLATION';

  constructor(details: IntegrityDetails, options?: { cause?: unknown }) {
    super(`Value rejected by ${details.constraint ?? 'a check constraint'}`, details, options);
  }
}

/** The refresh token is malformed or unknown. */
export class TokenInvalidError extends DbError {
  override readonly code = 'TOKEN_INVALID';

  constructor() {
    super('Refresh token is invalid');
  }
}

/** The refresh token (or its family) has expired. */
export class TokenExpiredError extends DbError {
  override readonly code = 'TOKEN_EXPIRED';

  constructor() {
    super('Refresh token has expired');
  }
}

/** A revoked refresh token was presented again; its whole family has been revoked. */
export class TokenReusedError extends DbError {
  override readonly code = 'TOKEN_REUSED';

  constructor(readonly familyId: string) {
    super('Refresh token was already used; every session of this login has been revoked');
  }
}

/** The user is deactivated (or unknown) and may not hold sessions. */
export class UserInactiveError extends DbError {
  override readonly code = 'USER_INACTIVE';

  constructor() {
    super('User is inactive');
  }
}

// The unique constraints and indexes of the schema, and the input field each one protects.
const uniqueConstraintFields: Record<string, string> = {
  users_email_key: 'email',
  users_slug_key: 'slug',
  roles_name_key: 'name',
  refresh_tokens_token_hash_key: 'token',
};

interface PgErrorFields {
  code?: unknown;
  constraint?: unknown;
  table?: unknown;
  column?: unknown;
  detail?: unknown;
  message?: unknown;
}

function pgField(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

const sqlStatePattern = /^[0-9A-Z]{5}$/;

// System errors of a socket that never connected or broke: the server is down, restarting or
// unreachable, or the network dropped the connection.
const connectionErrnos = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT', // a Unix socket path that does not exist: no server is listening there
]);

// SQLSTATEs that end the session: 57P01 admin shutdown or pg_terminate_backend, 57P02 crash
// shutdown, 57P03 cannot connect now (starting up, shutting down), 57P05 idle session timeout,
// 53300 too many connections, 25P03 idle in transaction session timeout, 25P04 transaction
// timeout (PostgreSQL 17); class 08 is "connection exception".
const connectionSqlStates = new Set(['57P01', '57P02', '57P03', '57P05', '53300', '25P03', '25P04']);

// The bounds that end a session, named in the error so that a caller sees which one fired.
const sessionBoundDetails: Record<string, string> = {
  '25P03': 'the server ended the session: it sat idle inside a transaction longer than idle_in_transaction_session_timeout',
  '25P04': 'the server ended the session: its transaction ran longer than transaction_timeout',
  '57P05': 'the server ended the session: it sat idle longer than idle_session_timeout',
};

// pg raises these without a code when the socket closes under a query or a client is used after
// its connection broke. They are pg's own fixed texts, not PostgreSQL's (which are localised and
// mapped by SQLSTATE only).
const connectionMessages = [
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
];

// PgBouncer in pool_mode = statement closes a client (FATAL, SQLSTATE 08P01) as soon as the
// server says a transaction is open: every BEGIN fails, and so does every retry. 08P01 alone
// cannot tell this apart from PgBouncer's other refusals (an unknown database, a failed server
// login), which a retry may get past; its text can. PgBouncer's texts are fixed in its source
// and not translated (unlike PostgreSQL's, mapped by SQLSTATE only): the first is what its
// server.c sends today (1.18 and 1.24 alike), the second what older releases sent.
const statementPoolingRefusals = ['transaction blocks not allowed in statement pooling mode', 'Long transactions not allowed'];

// What a failed socket tried: Node's system errors carry the address and port (or, when the
// name did not resolve, the host name); a host with several addresses fails with an
// AggregateError holding one such error per address. Never the URL, which holds a password.
function socketPeer(error: object): string | undefined {
  const one = (candidate: unknown): string | undefined => {
    const { address, port, hostname } = (candidate ?? {}) as { address?: unknown; port?: unknown; hostname?: unknown };
    if (typeof address === 'string') {
      const host = address.includes(':') ? `[${address}]` : address;
      return typeof port === 'number' ? `${host}:${port}` : host;
    }
    return typeof hostname === 'string' ? hostname : undefined;
  };
  const nested = (error as { errors?: unknown }).errors;
  const peers = [...new Set((Array.isArray(nested) ? nested : [error]).map(one).filter((peer) => peer !== undefined))];
  return peers.length === 0 ? one(error) : peers.join(' and ');
}

// "Failing row contains (…)" repeats the whole row, password hash included, and "Key
// (lower(email))=(kenn@example.org) already exists" the value of a unique or foreign key; the
// error travels on as `cause` and may be logged, so the values go.
function scrubDetail(fields: PgErrorFields): void {
  const detail = fields.detail;
  if (typeof detail !== 'string') return;
  if (detail.startsWith('Failing row contains')) {
    fields.detail = 'Failing row contains (values withheld)';
  } else if (detail.startsWith('Key (')) {
    const scrubbed = detail.replace(/^Key \((.*?)\)=\(.*\)( [^()]*)$/s, 'Key ($1)=(values withheld)$2');
    fields.detail = scrubbed === detail ? 'Key (values withheld)' : scrubbed;
  }
}

// Kysely's AbortedTransactionError (0.28.19 and later: a COMMIT that PostgreSQL completed as
// ROLLBACK), known by the symbol every copy of Kysely registers; createDb's connections mark
// their own error of that COMMIT with it too (db/kysely-aborted-transaction.ts).
function isKyselyAbortedTransaction(error: unknown): boolean {
  return typeof error === 'object' && error !== null && Symbol.for('kysely.AbortedTransactionError') in error;
}

// Kysely's NoResultError, also from another copy of Kysely than the one this module loaded.
function isNoResultError(error: unknown): boolean {
  return error instanceof NoResultError || (error instanceof Error && error.constructor.name === 'NoResultError');
}

/**
 * Turns any error from `pg`, pg-pool or Kysely into this package's typed error, by SQLSTATE
 * (or, for a socket, by system error code), keeping the original as `cause`:
 * - class 23: `UniqueViolationError`, `ForeignKeyViolationError`, `NotNullViolationError`,
 *   `CheckViolationError` (other codes of the class: `IntegrityError`);
 * - 40P01 `DeadlockError`, 40001 `SerializationError`, 55P03 `LockNotAvailableError`
 *   (all three retryable), 57014 `QueryCanceledError`, 25P02 `TransactionAbortedError`,
 *   class 22 `DataExceptionError`;
 * - a lost or refused connection: `ConnectionError` (retryable); but PgBouncer's 08P01 that
 *   refuses a transaction in `pool_mode = statement` (which no retry gets past): `ConfigError`
 *   (`variable` `pool_mode`), the one SQLSTATE whose mapping reads the message too (PgBouncer's
 *   fixed text);
 * - Kysely's `NoResultError`: `NotFoundError` (entity `row`); its `AbortedTransactionError`
 *   (a COMMIT that rolled back): `TransactionAbortedError`;
 * - anything else: `DatabaseError`. A `DbError` is returned as it is.
 *
 * @example
 * try { await db.insertInto('users').values(row).execute() }
 * catch (err) { throw mapDatabaseError(err) } // UniqueViolationError { field: 'email' }
 */
export function mapDatabaseError(error: unknown): DbError {
  if (error instanceof DbError) return error;
  if (isNoResultError(error)) return new NotFoundError('row', { cause: error });
  if (isKyselyAbortedTransaction(error)) return new TransactionAbortedError({ cause: error });
  if (typeof error !== 'object' || error === null) {
    return new DatabaseError(undefined, 'The database call failed', { cause: error });
  }
  const fields = error as PgErrorFields;
  scrubDetail(fields);
  const code = pgField(fields.code);
  const sqlState = code !== undefined && sqlStatePattern.test(code) ? code : undefined;
  const message = pgField(fields.message) ?? '';

  // ENOENT is a connection's only from connect() (a Unix socket nobody listens on); from open()
  // it is a file the connection settings name (sslrootcert), which no retry will bring.
  if (code !== undefined && connectionErrnos.has(code) && !(code === 'ENOENT' && (error as { syscall?: unknown }).syscall !== 'connect')) {
    const server = socketPeer(error);
    return new ConnectionError(code, { cause: error, ...(server === undefined ? {} : { server }) });
  }
  if (sqlState === undefined) {
    // pg's connect timer is the only source of 'timeout expired': the login never finished.
    if (message === 'timeout expired') return new ConnectionError('connect-timeout', { cause: error });
    if (connectionMessages.includes(message)) return new ConnectionError('terminated', { cause: error });
    return new DatabaseError(undefined, `The database call failed: ${message || 'unknown error'}`, { cause: error });
  }
  if (sqlState === '08P01' && statementPoolingRefusals.includes(message)) {
    return new ConfigError(
      'pool_mode',
      `The connection pooler refuses every transaction (08P01: ${message}): it runs in statement pooling mode ` +
        '(PgBouncer pool_mode = statement), which this library cannot work behind. Set pool_mode = transaction ' +
        '(or session) for this database and user; retrying cannot succeed',
      { cause: error },
    );
  }
  if (connectionSqlStates.has(sqlState) || sqlState.startsWith('08')) {
    // A message that comes with a SQLSTATE is the server's (or the pooler's) own: a fixed
    // text without row values, so it may be shown.
    const detail = sessionBoundDetails[sqlState];
    return new ConnectionError(sqlState, {
      cause: error,
      ...(message ? { serverMessage: message } : {}),
      ...(detail === undefined ? {} : { detail }),
    });
  }

  const details: IntegrityDetails = {
    sqlState,
    constraint: pgField(fields.constraint),
    table: pgField(fields.table),
    column: pgField(fields.column),
  };
  switch (sqlState) {
    case '23505':
      return new UniqueViolationError(details, { cause: error });
    case '23503':
      return new ForeignKeyViolationError(details, { cause: error });
    case '23502':
      return new NotNullViolationError(details, { cause: error });
    case '23514':
      return new CheckViolationError(details, { cause: error });
    case '40P01':
      return new DeadlockError({ cause: error });
    case '40001':
      return new SerializationError({ cause: error });
    case '55P03':
      return new LockNotAvailableError({ cause: error });
    case '57014':
      return new QueryCanceledError({ cause: error });
    case '25P02':
      return new TransactionAbortedError({ cause: error });
  }
  if (sqlState.startsWith('23')) {
    return new IntegrityError(`Integrity constraint violated (SQLSTATE ${sqlState})`, details, { cause: error });
  }
  if (sqlState.startsWith('22')) return new DataExceptionError(sqlState, { cause: error });
  return new DatabaseError(sqlState, `${message} (SQLSTATE ${sqlState})`, { cause: error });
}

/**
 * Whether running the failed operation again may succeed: true for a `DbError` marked
 * `retryable` (`ConnectionError`, `DeadlockError`, `SerializationError`,
 * `LockNotAvailableError`), false for everything else. Retry the whole transaction, not the
 * one statement, and only work that is safe to repeat: a connection lost during `COMMIT` may
 * have committed.
 *
 * @example
 * for (let attempt = 1; ; attempt++) {
 *   try { return await users.setActive(db, id, false) }
 *   catch (error) { if (!isRetryable(error) || attempt === 3) throw error }
 * }
 */
export function isRetryable(error: unknown): boolean {
  return error instanceof DbError && error.retryable;
}

/**
 * A backup could not be made. `tool` names the program that failed (`pg_dump`,
 * `pg_restore`), and the message carries that program's own words.
 */
export class BackupError extends DbError {
  override readonly code = 'BACKUP_FAILED';

  constructor(
    message: string,
    readonly tool?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A restore was refused or failed; the database was left as it was. */
export class RestoreError extends DbError {
  override readonly code = 'RESTORE_FAILED';
}

/** A file does not match the SHA-256 recorded in its `.sha256` file beside it. */
export class ChecksumMismatchError extends DbError {
  override readonly code = 'CHECKSUM_MISMATCH';

  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `Checksum mismatch: ${file} has SHA-256 ${actual.slice(0, 12)}…, its .sha256 file says ` +
        `${expected.slice(0, 12)}…; the file is damaged or not the one the checksum was made for`,
    );
  }
}

/**
 * No usable PostgreSQL client program was found: none at all, or none whose major version
 * is at least `neededMajor`. `found` lists what was looked at, as `15 at /usr/bin/pg_dump`.
 */
export class PgToolNotFoundError extends DbError {
  override readonly code = 'PG_TOOL_NOT_FOUND';

  constructor(
    readonly tool: string,
    readonly neededMajor: number | undefined,
    readonly found: readonly string[],
    readonly lookedAt: string,
  ) {
    super(
      found.length === 0
        ? `no ${tool} found (looked at ${lookedAt}); install the PostgreSQL client tools` +
            `${neededMajor === undefined ? '' : ` ${neededMajor} or newer`}`
        : `needs ${tool} >= ${neededMajor ?? '?'}, found ${found.join(', ')}; install the PostgreSQL ` +
            `${neededMajor ?? ''} client tools or point ${tool.toUpperCase()} at a newer ${tool}`,
    );
  }
}

/**
 * Copying a backup from another host failed. `reason` says why in a word, for callers that
 * want to react (`key`: the SSH key cannot be used; `host-key`: the host is not in
 * known_hosts or its key changed; `auth`: the login was refused; `connect`: the host
 * cannot be reached; `not-found`: no such remote file; `checksum`: the copy does not match;
 * `exists`: the file is already in the backup folder; `space`: the backup folder's disk has no
 * room for the size the host announces; `transfer`: anything else).
 */
export class DownloadError extends DbError {
  override readonly code = 'DOWNLOAD_FAILED';

  constructor(
    readonly reason: 'key' | 'host-key' | 'auth' | 'connect' | 'not-found' | 'checksum' | 'exists' | 'space' | 'transfer',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The application role cannot be made least-privileged (it is a superuser, owns objects, …). */
export class AppRoleError extends DbError {
  override readonly code = 'APP_ROLE_INVALID';

  constructor(
    readonly role: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Set-up cannot go on with the role it was given: a privilege is missing (CREATEDB to create
 * the database, CREATEROLE to create roles), or a role has powers it must not have. The
 * message names what is missing and the statement that grants it.
 */
export class ProvisioningError extends DbError {
  override readonly code = 'PROVISIONING_REFUSED';

  constructor(
    message: string,
    /** The privilege or attribute that is missing or in the way (`CREATEDB`, `CREATEROLE`, `SUPERUSER` …), when one is. */
    readonly privilege?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
