import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Umzug, MigrationError as UmzugMigrationError } from 'umzug';
import { answeredWithin, answeringWithin, destroyConnection, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { requireDirectConnection } from '../db/direct-connection.js';
import { librarySchema } from '../db/library-schema.js';
import { warnOnStderr } from '../db/warn-on-stderr.js';
import { refuseOtherRecordOwner } from './record-owner-refusal.js';
import { refuseSuperuserLogin } from './superuser-refusal.js';
import { answeredWhileRunning } from '../db/answered-while-running.js';
import { optionMs } from '../db/option-ms.js';
import { leadingWords } from '../db/leading-words.js';
import { withClient } from '../db/with-client.js';
import {
  ConfigError,
  ConnectionError,
  DbError,
  mapDatabaseError,
  MigrationBlockedError,
  MigrationChecksumError,
  MigrationError,
  MigrationLockLostError,
  MigrationMissingError,
  MigrationPartiallyAppliedError,
  MigrationPermissionError,
  MigrationScriptError,
} from '../errors.js';
import { type BlockerMonitor, blockerMonitor } from './lock-blockers.js';
import { tableLockHolders } from './table-lock-holders.js';
import { requireAppliedTarget } from './applied-target.js';
import { attemptsBeyondRoleBounds, roleLockTimeouts } from './attempts-beyond-role-bounds.js';
import { statementsHoldingBusyTables } from './statements-holding-tables.js';
import { defaultLockWait, describeLockWait, type LockWaitPolicy, lockWaitOf, withLockRetries } from './lock-retries.js';
import { defaultMigrationsDir } from './default-migrations-dir.js';
import { type MigrationLock, withMigrationLock } from './migration-lock.js';
import { migrationDatabaseUrl, migrationLockTimeoutMs, migrationUrlVariable } from './migration-settings.js';
import { listMigrationFiles, type MigrationFile } from './migration-files.js';
import { type MigrationState, migrationStates } from './migration-states.js';
import {
  type AppliedMigration,
  type MigrationContext,
  PostgresMigrationStorage,
  qualifiedMigrationsTable,
} from './migration-storage.js';
import { lineOfPosition } from '../sql-position.js';
import { type MigrationScript, type MigrationStatement, noTransactionHeader, parseMigrationScript } from './migration-script.js';
import { silentClientBoundsLocal, silentClientBoundsReset, silentClientBoundsSession } from '../db/silent-client-bounds.js';

export type { MigrationState } from './migration-states.js';

export interface MigratorOptions {
  /**
   * The database to migrate, as its owner (migrations create and alter tables), directly:
   * `migrate` and `migrateDown` refuse a connection pooler (`DirectConnectionRequiredError`),
   * whose next clients would inherit what a migration leaves on the session. Default:
   * `MIGRATION_DATABASE_URL`, else `DATABASE_URL`.
   */
  databaseUrl?: string | undefined;
  /**
   * Refuses a superuser's login before anything runs, before the migration lock is asked for,
   * as the commands do (`migrate`, `setup`'s release step). What a superuser's migration
   * creates is its own: the owner's grants to the application role never reach it, and the
   * owner's backups cannot read it.
   */
  refuseSuperuser?: boolean | undefined;
  /**
   * Refuses, the same way and as the commands do, a login that is not the owner of the
   * migrations record where the database has one (a hosted platform's administrator, or any
   * other role than the one that made the schema): its migration would create objects of its
   * own, out of reach of the owner's grants to the application role and of the owner's backups.
   */
  refuseOtherOwner?: boolean | undefined;
  /**
   * Folder of `<name>.up.sql` / `<name>.down.sql` pairs; defaults to this package's own
   * `migrations/`. A service that bundles this library (esbuild, webpack) must copy that
   * folder and pass its path here, since the bundle no longer sits inside the package, and
   * keep `libpg-query` external: it loads its WebAssembly parser from its own folder.
   */
  migrationsDir?: string | undefined;
  /** Receives one line per event (applied, reverted, waiting for the lock). Silent by default. */
  log?: ((line: string) => void) | undefined;
  /** Longest wait for another run's lock (default: `MIGRATION_LOCK_TIMEOUT` seconds, else 5 minutes). */
  lockTimeoutMs?: number | undefined;
  /**
   * How each migration waits for the locks its statements need (see {@link LockWaitPolicy}):
   * short attempts, rolled back and retried, so that traffic never queues long behind a
   * migration waiting for a long transaction. A file's `-- migrate:lock-wait` header overrides
   * `attemptMs` and `totalMs` for that file.
   */
  lockWait?: { [K in keyof LockWaitPolicy]?: LockWaitPolicy[K] | undefined } | undefined;
  /**
   * Receives one line per failed lock attempt, naming who blocked it, and, before anything is
   * applied, one per file whose attempts may outwait a role's lock_timeout here; and one when a
   * statement on the migrations record (`migrate status`'s read too) waits for its table,
   * naming who holds it (a restore). Default: stderr.
   */
  warn?: ((line: string) => void) | undefined;
  /**
   * How long a migration's statements may go unanswered (default 60 s) before the run looks at
   * its session from another connection (`pg_stat_activity`): running a statement (a long
   * index build, a table's rewrite, a wait for its locks), it is given as long again; running
   * none for this long (or 10 s, if less), its statement or its answer was lost on the way (a
   * path that stalls while its kernel acknowledges, which TCP never tells), and the connection
   * is closed: the run fails with a retryable `ConnectionError` rather than wait for ever with
   * the migration lock held. A session stays idle until the whole statement has arrived: a file
   * whose text takes longer than this to reach the server (megabytes over a slow path) needs a
   * longer bound. From 1 ms to 2147483647 ms, else `ConfigError`.
   */
  serverStallTimeoutMs?: number | undefined;
}

/** A migration {@link migrate} would apply, as a dry run lists it. */
export interface PlannedMigration {
  name: string;
  /** The up file, e.g. `20250914134643_initial_schema.up.sql`. */
  file: string;
  /** SHA-256 (hex) of the up file: what the run would record. */
  checksum: string;
  /** False for a `-- migrate:no-transaction` file, run statement by statement. */
  transactional: boolean;
  /** How it waits for its locks: the run's policy, or its own `-- migrate:lock-wait` header. */
  lockWait: { attemptMs: number; totalMs: number; fromHeader: boolean };
}

/** A migration applied or reverted by one run, with how long its transaction took. */
export interface MigrationRun {
  name: string;
  durationMs: number;
}

const storage = new PostgresMigrationStorage();
const migratorApplicationName = 'kennwilliamson-migrate';

function runPolicy(options: MigratorOptions): LockWaitPolicy {
  return { ...defaultLockWait, ...Object.fromEntries(Object.entries(options.lockWait ?? {}).filter(([, v]) => v !== undefined)) };
}

/**
 * Applies every pending migration (or those up to and including `to`), oldest first, each in
 * its own transaction together with its record (a `-- migrate:no-transaction` file runs
 * statement by statement and is recorded once all succeeded), while holding the migration
 * lock; concurrent callers wait and then find nothing left to do. Every pending file is read
 * by PostgreSQL's parser first, so a refused file stops the run before anything is applied.
 * Refuses to start if an applied migration's file was changed or removed.
 * With `dryRun: true` it takes the lock, makes the same checks, and returns what would run
 * without changing anything (not even creating `schema_migrations`).
 * A service with several instances runs it in its release step (`kennwilliamson-db setup`)
 * rather than at start-up, where every instance would hold the owner's URL and a start could
 * wait for the migration lock and then for the migrations' table locks (10 min by default).
 *
 * @example
 * const applied = await migrate({ log: console.log }) // MIGRATION_DATABASE_URL, else DATABASE_URL
 * // applied 20250914134643_initial_schema (41 ms) …
 * const plan = await migrate({ dryRun: true }) // [{ name, file, checksum, transactional }, …]
 */
export async function migrate(options: MigratorOptions & { to?: string | undefined; dryRun: true }): Promise<PlannedMigration[]>;
export async function migrate(options?: MigratorOptions & { to?: string | undefined; dryRun?: false | undefined }): Promise<MigrationRun[]>;
// A flag read at run time (`process.argv.includes('--dry-run')`): either answer.
export async function migrate(options: MigratorOptions & { to?: string | undefined; dryRun?: boolean | undefined }): Promise<MigrationRun[] | PlannedMigration[]>;
export async function migrate(
  options: MigratorOptions & { to?: string | undefined; dryRun?: boolean | undefined } = {},
): Promise<MigrationRun[] | PlannedMigration[]> {
  return withMigrator(options, async ({ umzug, runs, files, scripts, client }) => {
    const pending = await pendingUpTo(umzug, options.to);
    // Read every file this run would apply before applying the first, so that one refused
    // file does not leave the database half-way through a release.
    const applying: MigrationScript[] = [];
    for (const name of pending) applying.push(await scripts.up(name));
    await assertCanRunWithoutTransaction(client, applying);
    if (applying.length > 0) {
      const warn = options.warn ?? warnOnStderr;
      const [bounds, holding] = await answeredWithin(client, roundTripDeadlineMs, 'the look at the roles and tables', async () => [
        await roleLockTimeouts(client),
        // Advice only: a table in a schema the owner may not use (to_regclass refuses, 42501) says nothing.
        await statementsHoldingBusyTables(client, applying).catch((error: unknown) => {
          if ((error as { code?: unknown }).code === '42501') return [];
          throw error;
        }),
      ]);
      for (const line of attemptsBeyondRoleBounds(applying, runPolicy(options), bounds)) warn(line);
      for (const line of holding) warn(line);
      for (const script of applying) {
        for (const statement of script.statements.filter((each) => each.unnamedConcurrentIndex)) {
          warn(
            `${script.file}:${statement.line}: CREATE INDEX CONCURRENTLY without a name: if it fails, its INVALID index stays where the migrator ` +
              'cannot find it, and a run after builds another beside it (find it with SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid). Name the index',
          );
        }
      }
    }
    if (options.dryRun) {
      const checksums = new Map(files.map((file) => [file.name, file.checksum]));
      return pending.map((name, index): PlannedMigration => {
        const script = applying[index]!;
        const policy = lockWaitOf(runPolicy(options), script.lockWait);
        return {
          name,
          file: script.file,
          checksum: checksums.get(name)!,
          transactional: script.transactional,
          lockWait: { attemptMs: policy.attemptMs, totalMs: policy.totalMs, fromHeader: script.lockWait !== undefined },
        };
      });
    }
    await umzug.up(options.to === undefined ? {} : { to: options.to });
    return runs;
  }, { dryRun: options.dryRun === true });
}

// The names `umzug.up({ to })` would apply, in order; refused, as Umzug would, when `to` is not one of them.
async function pendingUpTo(umzug: MigrationUmzug, to: string | undefined): Promise<string[]> {
  const pending = (await umzug.pending()).map((migration) => migration.name);
  if (to === undefined) return pending;
  const index = pending.indexOf(to);
  if (index < 0) throw new ConfigError('to', `no pending migration is named ${to}`);
  return pending.slice(0, index + 1);
}

/**
 * Reverts the last applied migration, or with `to` every migration back to and including
 * that one (`to: 0` reverts all), each in its own transaction.
 *
 * @example
 * await migrateDown({ databaseUrl, to: '20250914134654_add_refresh_tokens_and_user_active' })
 */
export async function migrateDown(options: MigratorOptions & { to?: string | 0 | undefined }): Promise<MigrationRun[]> {
  return withMigrator(options, async ({ umzug, runs, scripts, client }) => {
    // As for up: every file this run would revert is read before the first is.
    const executed = (await umzug.executed()).map((migration) => migration.name).reverse();
    const to = options.to;
    if (typeof to === 'string') requireAppliedTarget(to, executed, 'to');
    const count = to === undefined ? Math.min(1, executed.length) : to === 0 ? executed.length : executed.indexOf(to) + 1;
    const reverting = await Promise.all(executed.slice(0, Math.max(0, count)).map((name) => scripts.down(name)));
    await assertCanRunWithoutTransaction(client, reverting);
    await umzug.down(options.to === undefined ? {} : { to: options.to });
    return runs;
  }, { reverting: true });
}

/**
 * Lists every migration with its state: applied, pending, changed since it was applied, or
 * recorded but missing from the folder. Reads only; takes no lock.
 *
 * @example
 * const states = await migrationStatus({ databaseUrl })
 * states.filter((m) => m.state === 'pending')
 */
export async function migrationStatus(options: MigratorOptions = {}): Promise<MigrationState[]> {
  const files = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir());
  // A server that lets the login in and then never answers ends the call at a deadline, as it
  // ends every command's first check: the look for the table takes no lock and gets a round
  // trip's; the read of the record waits for a restore or a migration that holds the table,
  // as long as a run waits for another's lock (MIGRATION_LOCK_TIMEOUT, bounded on the server
  // too), and gets that and a round trip's.
  const lockTimeoutMs = optionMs('lockTimeoutMs', options.lockTimeoutMs ?? migrationLockTimeoutMs());
  // In one read-only transaction, its bound SET LOCAL: `migrate status` works through a pooler,
  // which hands the server connection to the services next, and a session SET went with it (their
  // 2 s lock bound became the run's 5 min until the pooler closed the connection).
  const databaseUrl = options.databaseUrl ?? migrationDatabaseUrl();
  // Only a read that waits (for a restore, say) looks at who holds the table.
  const recordWatch = { holders: () => recordHolders(databaseUrl), warn: options.warn ?? warnOnStderr };
  const readStatus = async (client: pg.Client) => {
    const exists = await answeredWithin(client, roundTripDeadlineMs, 'the look for the migrations table', () =>
      client
        .query(`BEGIN READ ONLY; SET LOCAL lock_timeout = ${lockTimeoutMs}`)
        .then(() => migrationsTableExists(client)),
    );
    const applied = exists ? await storage.applied(client, lockTimeoutMs, recordWatch) : [];
    await answeredWithin(client, roundTripDeadlineMs, 'COMMIT', () => client.query('COMMIT'));
    return migrationStates(files, applied);
  };
  // Every failure of the read typed, in one place (the connection's own are already).
  return withClient(databaseUrl, readStatus, migratorApplicationName).catch((error: unknown) => Promise.reject(mapDatabaseError(error)));
}

// Who holds the migrations record's table, from a connection named as the run's monitor.
const recordHolders = (databaseUrl: string) => tableLockHolders(databaseUrl, qualifiedMigrationsTable, 'kennwilliamson-migrate-monitor');

// A changed or missing applied migration means the database and the code disagree about the
// schema's history; nothing may run until a person decides which is right.
function assertHistoryIntact(files: MigrationFile[], applied: AppliedMigration[]): void {
  const byName = new Map(files.map((file) => [file.name, file]));
  for (const row of applied) {
    const file = byName.get(row.name);
    if (file === undefined) throw new MigrationMissingError(row.name);
    if (file.checksum !== row.checksum) {
      throw new MigrationChecksumError(path.basename(file.upPath), row.checksum, file.checksum);
    }
  }
}

type MigrationUmzug = Umzug<MigrationContext>;

/** Each file read and parsed once per run, on first use. */
interface MigrationScripts {
  up(name: string): Promise<MigrationScript>;
  down(name: string): Promise<MigrationScript>;
}

interface MigratorRun {
  client: pg.ClientBase;
  umzug: MigrationUmzug;
  runs: MigrationRun[];
  files: MigrationFile[];
  scripts: MigrationScripts;
}

function migrationScripts(files: MigrationFile[]): MigrationScripts {
  const byName = new Map(files.map((file) => [file.name, file]));
  const cache = new Map<string, Promise<MigrationScript>>();
  const load = (name: string, direction: 'up' | 'down') => {
    const key = `${direction} ${name}`;
    let script = cache.get(key);
    if (script === undefined) {
      const file = byName.get(name);
      if (file === undefined) throw new MigrationMissingError(name);
      script =
        direction === 'up'
          ? parseMigrationScript(path.basename(file.upPath), file.upSql)
          : readFile(file.downPath, 'utf8').then((sql) => parseMigrationScript(path.basename(file.downPath), sql));
      cache.set(key, script);
    }
    return script;
  };
  return { up: (name) => load(name, 'up'), down: (name) => load(name, 'down') };
}

async function withMigrator<T>(
  options: MigratorOptions,
  command: (run: MigratorRun) => Promise<T>,
  { dryRun = false, reverting = false }: { dryRun?: boolean; reverting?: boolean } = {},
): Promise<T> {
  const databaseUrl = options.databaseUrl ?? migrationDatabaseUrl();
  const timeoutMs = optionMs('lockTimeoutMs', options.lockTimeoutMs ?? migrationLockTimeoutMs());
  const files = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir());
  const scripts = migrationScripts(files);
  const log = options.log ?? (() => undefined);
  const waits: LockWaits = {
    run: runPolicy(options),
    warn: options.warn ?? warnOnStderr,
    monitor: blockerMonitor(databaseUrl, 'kennwilliamson-migrate-monitor'),
    statements: { url: databaseUrl, timeoutMs: optionMs('serverStallTimeoutMs', options.serverStallTimeoutMs ?? defaultServerStallTimeoutMs), looks: new Set() },
  };
  const onWait = (holder: { pid: number; applicationName: string } | undefined) =>
    log(`waiting for another migration run to finish${holder ? ` (pid ${holder.pid}, ${holder.applicationName})` : ''}…`);

  try {
    // Through a pooler, the session settings a migration may leave (a `SET` in a file) would
    // reach the services. Checked before the lock is asked for, so a refused run never waits
    // for another one.
    const variable = migrationUrlVariable(databaseUrl);
    const refusePooler = (holder: pg.ClientBase) => requireDirectConnection(holder, { operation: 'migrate', variable });
    // A superuser, or a role other than the record's owner, where the caller refuses them,
    // the same way: before the lock too.
    const refuse = async (holder: pg.ClientBase) => {
      await refusePooler(holder);
      const named = variable ?? 'databaseUrl';
      const nothing = reverting ? 'nothing was reverted' : 'nothing was applied';
      // Each look under a round trip's deadline, as the pooler's check before them.
      const bounded = answeringWithin(holder, roundTripDeadlineMs);
      if (options.refuseSuperuser === true) await refuseSuperuserLogin(bounded, named, nothing);
      if (options.refuseOtherOwner === true) await refuseOtherRecordOwner(bounded, named, nothing);
    };

    return await withMigrationLock({ databaseUrl, timeoutMs, onWait, beforeLock: refuse }, (lock) =>
      withClient(
        databaseUrl,
        async (client) => {
          // Every round trip of the run's own gets a deadline (a server that stops answering
          // while its kernel acknowledges is never found out by TCP), and those on the record
          // wait for its table's lock (a restore holds it for its whole run) as long as a run
          // waits for another's lock: lock_timeout for the session, which each file's attempts
          // replace with their own (SET LOCAL; a no-transaction file's SET, reset after it).
          await answeredWithin(client, roundTripDeadlineMs, 'the check of the role and its search_path', async () => {
            await client.query(`SET lock_timeout = ${Math.max(1, Math.round(timeoutMs))}`);
            await assertCanMigrate(client);
          });
          // A dry run changes nothing: without the table, nothing has been applied yet.
          const recordWatch = { holders: () => recordHolders(databaseUrl), warn: waits.warn };
          if (!dryRun) await storage.ensureTable(client, timeoutMs, recordWatch);
          const tableExists = () => answeredWithin(client, roundTripDeadlineMs, 'the look for the migrations table', () => migrationsTableExists(client));
          const applied = dryRun && !(await tableExists()) ? [] : await storage.applied(client, timeoutMs, recordWatch);
          assertHistoryIntact(files, applied);
          const context: MigrationContext = {
            client,
            checksums: new Map(files.map((file) => [file.name, file.checksum])),
            lockTimeoutMs: timeoutMs,
            recordWatch,
            ...(dryRun ? { applied: applied.map((row) => row.name) } : {}),
          };
          const runs: MigrationRun[] = [];
          const umzug = createUmzug(files, scripts, context, storage, runs, log, lock, waits);
          try {
            return await command({ client, umzug, runs, files, scripts });
          } catch (error) {
            if (context.startedAt !== undefined) await answeredWithin(client, roundTripDeadlineMs, 'ROLLBACK', () => client.query('ROLLBACK')).catch(() => undefined);
            throw error;
          }
        },
        migratorApplicationName,
      ),
    );
  } catch (error) {
    throw migratorError(error);
  } finally {
    // The looks first: they may be on the monitor's connection.
    await Promise.allSettled(waits.statements.looks);
    await waits.monitor.close();
  }
}

/** How the migrations of one run wait for their locks, and where they say so. */
interface LockWaits {
  run: LockWaitPolicy;
  warn: (line: string) => void;
  monitor: BlockerMonitor;
  /** Where the statements' sessions are looked at when their answer is late, and after how long. */
  statements: { url: string; timeoutMs: number; looks: Set<Promise<unknown>> };
}

// A migration's statements, waited for while the server runs them (see serverStallTimeoutMs).
const defaultServerStallTimeoutMs = 60_000;

function whileRunningOn<T>(client: pg.ClientBase, pid: number | undefined, waits: LockWaits, what: string, call: () => Promise<T>): Promise<T> {
  const { url, timeoutMs, looks } = waits.statements;
  // From the monitor's connection: a fourth of the run's, refused where the owner may have three
  // (a CONNECTION LIMIT, a full server), took a healthy index build for lost after ten looks.
  return answeredWhileRunning(client, timeoutMs, what, { url, pid, looks, applicationName: migratorApplicationName, lookFrom: waits.monitor }, call);
}

async function migrationsTableExists(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [qualifiedMigrationsTable]);
  return rows[0]?.exists === true;
}

// The application role (least privilege, what services query with) cannot create anything;
// say which URL is needed instead of failing later on the first CREATE. Migrations create
// their objects in the first schema of search_path, while every statement of the library
// names public: a search_path set elsewhere (on the role, the database) would put the tables
// where the library never looks, or nowhere (''), so it is refused before anything runs.
async function assertCanMigrate(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ role: string; schema: string | null; search_path: string; can_create: boolean }>(
    `SELECT current_user AS role, current_schema() AS schema, current_setting('search_path') AS search_path,
            has_schema_privilege($1, 'CREATE') AS can_create`,
    [librarySchema],
  );
  const row = rows[0]!;
  if (row.schema !== librarySchema) {
    throw new ConfigError(
      'search_path',
      `Migrations create the library's tables in the first schema of search_path, which must be ${librarySchema}; ` +
        `this connection's search_path is '${row.search_path}' (${row.schema === null ? 'no schema' : `schema ${row.schema}`}), ` +
        `set on the role or the database: RESET it (ALTER ROLE … RESET search_path; ALTER DATABASE … RESET search_path)`,
    );
  }
  if (!row.can_create) throw new MigrationPermissionError(row.role);
}

// Each migration and its record share one transaction: BEGIN before the SQL (again for every
// attempt that ran out of lock time), the SQL, the storage's INSERT (or DELETE), COMMIT when
// Umzug reports it done. A no-transaction file runs its statements one by one in autocommit
// instead, and opens the transaction only for its record, so it is recorded only once every
// statement succeeded.
function createUmzug(
  files: MigrationFile[],
  scripts: MigrationScripts,
  context: MigrationContext,
  migrationStorage: PostgresMigrationStorage,
  runs: MigrationRun[],
  log: (line: string) => void,
  lock: MigrationLock,
  waits: LockWaits,
): MigrationUmzug {
  const umzug = new Umzug<MigrationContext>({
    context,
    storage: migrationStorage,
    logger: undefined,
    migrations: files.map((file) => ({
      name: file.name,
      path: file.upPath,
      up: async ({ context: ctx }) => runScript(ctx, await scripts.up(file.name), lock, waits),
      down: async ({ context: ctx }) => runScript(ctx, await scripts.down(file.name), lock, waits),
    })),
  });
  const begin = async ({ context: ctx }: { context: MigrationContext }) => {
    ctx.startedAt = performance.now();
  };
  const commit = (verb: string, direction: 'up' | 'down') => async ({ name, context: ctx }: { name: string; context: MigrationContext }) => {
    // Deferred constraints and constraint triggers are checked now, for as long as they take,
    // so that COMMIT does no work of its own (one that waits for a synchronous standby keeps the
    // migration's locks, and the traffic queued behind them, meanwhile); and before the look at
    // the lock, which they may outlast. Watched as the file's statements are: held back on the
    // way, its answer was waited for without end, with the migration lock held.
    const pid = (ctx.client as pg.ClientBase & { processID: number | null }).processID ?? undefined;
    await whileRunningOn(ctx.client, pid, waits, 'SET CONSTRAINTS', () => ctx.client.query('SET CONSTRAINTS ALL IMMEDIATE'));
    // Never commit a migration whose lock is gone: another run may have started it too.
    try {
      await lock.assertHeld();
    } catch (error) {
      const script = await scripts[direction](name);
      if (script.transactional || !(error instanceof MigrationLockLostError)) throw error;
      const count = script.statements.length;
      throw new MigrationLockLostError({
        cause: error.cause,
        detail:
          `${script.file} runs without a transaction: all ${count} of its statement(s) took effect and stay, ` +
          `but it is not recorded${direction === 'down' ? ' as reverted' : ''}`,
      });
    }
    // Past its deadline the connection is closed, and whether it committed is the record's to tell.
    await answeredWithin(ctx.client, roundTripDeadlineMs, 'COMMIT', () => ctx.client.query('COMMIT'), `so ${name} may or may not be ${verb}: \`migrate status\` tells`);
    const durationMs = Math.round(performance.now() - (ctx.startedAt ?? performance.now()));
    delete ctx.startedAt;
    runs.push({ name, durationMs });
    log(`${verb} ${name} (${durationMs} ms)`);
    // A file's session-level SET (search_path, session_replication_role…) stayed for the files
    // after it: where the next file's tables went depended on how many files a release applied
    // at once. Each file starts from the session's defaults, and the run's own lock wait; and as
    // the role it logged in as (RESET ALL leaves the role, and a file's SET ROLE made the next
    // file's tables that role's; RESET ROLE goes back to the login's own, or its `-c role=`).
    await answeredWithin(ctx.client, roundTripDeadlineMs, "the reset of the file's settings", () =>
      ctx.client.query(`RESET ALL; RESET ROLE; SET lock_timeout = ${Math.max(1, Math.round(ctx.lockTimeoutMs))}`),
    );
  };
  umzug.on('migrating', begin);
  umzug.on('reverting', begin);
  umzug.on('migrated', commit('applied', 'up'));
  umzug.on('reverted', commit('reverted', 'down'));
  return umzug;
}

async function runScript(ctx: MigrationContext, script: MigrationScript, lock: MigrationLock, waits: LockWaits): Promise<void> {
  const policy = lockWaitOf(waits.run, script.lockWait);
  if (script.transactional) await runTransactional(ctx, script, policy, waits);
  else await runWithoutTransaction(ctx.client, script, lock, policy, waits, ctx.lockTimeoutMs);
}

// The whole file as one simple-protocol query: the server itself finds the statements, and an
// error's position counts from the start of the file. Without a position, the number of
// statements the server completed tells which one failed. Every attempt is a transaction of
// its own, under its own lock_timeout; one that runs out of lock time rolls back whole.
async function runTransactional(ctx: MigrationContext, script: MigrationScript, policy: LockWaitPolicy, waits: LockWaits): Promise<void> {
  const client = ctx.client;
  await withLockRetries(
    {
      policy,
      monitor: waits.monitor,
      warn: waits.warn,
      what: script.file,
      undo: () => answeredWithin(client, roundTripDeadlineMs, 'ROLLBACK', () => client.query('ROLLBACK')).then(() => undefined),
      silent: (error) => destroyConnection(client, error),
      exhausted: ({ attempts, waitedMs, blockers, error }) =>
        new MigrationBlockedError(script.file, (error as MigrationError).line, attempts, waitedMs, blockers, 0, describeLockWait(policy), {
          cause: error,
        }),
    },
    async ({ lockTimeoutMs, watch }) => {
      ctx.startedAt = performance.now();
      // SET LOCAL, not SET: it ends with the transaction, so nothing stays on a pooled session.
      // If this process dies mid-statement, the server notices within a second and rolls back,
      // instead of finishing a long statement for nobody; if its host goes silent, within
      // about 10 s (silentClientBoundsLocal), instead of holding the file's table locks, which
      // every query on those tables queues behind, for hours. The file is read as the parser
      // read it, with standard_conforming_strings on, whatever the database's default. A
      // migrator that stops answering while its host and connection stay up (Ctrl-Z in the
      // terminal, a paused VM) left the file's locks held for as long as it stayed stopped, an
      // outage of its tables: idle in this transaction past migrationIdleLimitMs, the server ends
      // the session, which rolls the file back.
      const results = (await answeredWithin(client, roundTripDeadlineMs, 'BEGIN and its settings', () =>
        client.query(
          `BEGIN; ${silentClientBoundsLocal} SET LOCAL standard_conforming_strings = on; ` +
            `SET LOCAL idle_in_transaction_session_timeout = ${migrationIdleLimitMs}; ` +
            `SET LOCAL lock_timeout = ${lockTimeoutMs}; SELECT pg_catalog.pg_backend_pid() AS pid`,
        ),
      )) as unknown as Array<pg.QueryResult<{ pid: number }>>;
      const pid = results[results.length - 1]!.rows[0]!.pid;
      watch(pid);
      if (script.statements.length > 0) {
        const query = new StatementCountingQuery(script.sql);
        try {
          await whileRunningOn(client, pid, waits, 'its statements', () => query.run(client));
        } catch (error) {
          const position = Number((error as { position?: string }).position);
          const line = position > 0 ? lineOfPosition(script.sql, position) : script.statements[query.completed]?.line;
          throw migrationError(script.file, line, error);
        }
      }
      // The record is written next, in this transaction: it waits for its table no longer than
      // the run's lock wait, as every read and write of the record does, and within the
      // deadline that storage gives it, whatever lock_timeout the attempt or the file itself
      // (its own SET LOCAL) left in force.
      const recordLockTimeoutMs = Math.max(1, Math.round(Math.min(lockTimeoutMs, ctx.lockTimeoutMs)));
      await answeredWithin(client, roundTripDeadlineMs, 'SET LOCAL lock_timeout', () => client.query(`SET LOCAL lock_timeout = ${recordLockTimeoutMs}`));
    },
  );
}

// The longest a migration's transaction waits idle for the migrator: between its statements
// the migrator sends the next at once, and the longest it waits meanwhile is a look at the
// migration lock on its other connection, bounded by a round trip's deadline.
const migrationIdleLimitMs = roundTripDeadlineMs + 5_000;

// The parser split the file with standard_conforming_strings on; statements sent one at a
// time cannot set it for themselves (SET LOCAL needs a transaction, and a session SET would
// stay on a pooled connection), so a database or role that turns it off is refused.
async function assertCanRunWithoutTransaction(client: pg.ClientBase, scripts: MigrationScript[]): Promise<void> {
  const first = scripts.find((script) => !script.transactional);
  if (first === undefined) return;
  const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'SHOW standard_conforming_strings', () =>
    client.query<{ standard_conforming_strings: string }>('SHOW standard_conforming_strings'),
  );
  if (rows[0]?.standard_conforming_strings !== 'on') {
    throw new MigrationScriptError(
      first.file,
      1,
      'standard_conforming_strings is off for this database or role; a no-transaction file is only run with it on (the default)',
    );
  }
}

// Each statement commits on its own, so each waits for its locks (and retries) on its own: a
// session lock_timeout (SET, then set back to the run's once the file is done) on the migrator's own
// connection. A statement that only takes locks no query waits behind (CONCURRENTLY, VACUUM
// without FULL, ANALYZE) waits once, for the whole budget. The session has the server-side
// bounds for a silent host too (silentClientBoundsSession), as a transaction's: an index build
// for nobody would hold back vacuum and every other DDL on its table until it ended.
async function runWithoutTransaction(
  client: pg.ClientBase,
  script: MigrationScript,
  lock: MigrationLock,
  policy: LockWaitPolicy,
  waits: LockWaits,
  runLockTimeoutMs: number,
): Promise<void> {
  try {
    await answeredWithin(client, roundTripDeadlineMs, 'the bounds for a silent host', () => client.query(silentClientBoundsSession));
    for (const [index, statement] of script.statements.entries()) {
      // The lock must still be ours before each step, not only at the record.
      try {
        await lock.assertHeld();
      } catch (error) {
        if (!(error instanceof MigrationLockLostError)) throw error;
        throw new MigrationLockLostError({
          cause: error.cause,
          detail:
            `${script.file} runs without a transaction: ${index} of its ${script.statements.length} statement(s) ` +
            `took effect and stay, the rest did not run, and it is not recorded`,
        });
      }
      // CREATE INDEX CONCURRENTLY IF NOT EXISTS would skip the INVALID index an earlier build
      // left, and the file would be recorded as applied without a usable index.
      if (await standsInvalid(client, statement)) {
        throw new MigrationPartiallyAppliedError(
          script.file,
          statement.line,
          `the index ${statement.concurrentIndexRef} exists and is INVALID, left by a CREATE INDEX CONCURRENTLY that failed`,
          index,
          `Drop it with DROP INDEX CONCURRENTLY ${statement.concurrentIndexRef}; and run the migrations again.`,
        );
      }
      let sent = false;
      const statementPolicy = statement.concurrent ? { ...policy, firstAttemptMs: policy.totalMs, attemptMs: policy.totalMs } : policy;
      try {
        await withLockRetries(
          {
            policy: statementPolicy,
            monitor: waits.monitor,
            warn: waits.warn,
            what: `${script.file} line ${statement.line}`,
            undo: async () => undefined, // the statement failed whole
            silent: (error) => destroyConnection(client, error),
            exhausted: ({ attempts, waitedMs, blockers, error }) =>
              new MigrationBlockedError(script.file, statement.line, attempts, waitedMs, blockers, index, describeLockWait(statementPolicy), {
                cause: error,
              }),
          },
          async ({ lockTimeoutMs, watch }) => {
            sent = false;
            const results = (await answeredWithin(client, roundTripDeadlineMs, 'SET lock_timeout', () =>
              client.query(`SET lock_timeout = ${lockTimeoutMs}; SELECT pg_catalog.pg_backend_pid() AS pid`),
            )) as unknown as Array<pg.QueryResult<{ pid: number }>>;
            const pid = results[results.length - 1]!.rows[0]!.pid;
            watch(pid);
            const text = (await pendingDetach(client, statement)) ? statement.detach!.finalize : statement.text;
            sent = true;
            await whileRunningOn(client, pid, waits, leadingWords(text) ?? 'the statement', () => client.query(text));
          },
        );
      } catch (error) {
        if (error instanceof MigrationBlockedError) {
          // The build makes its index before it waits for older transactions: running out of
          // time there leaves the index behind.
          if (!(await standsInvalid(client, statement))) throw error;
          throw new MigrationBlockedError(script.file, statement.line, error.attempts, error.waitedMs, error.blockers, index, describeLockWait(statementPolicy), {
            cause: error.cause,
            // Quoted and, where the file names the table's schema, qualified: what DROP INDEX takes.
            invalidIndex: statement.concurrentIndexRef,
          });
        }
        const position = Number((error as { position?: string }).position);
        const line = statement.line + (position > 0 ? lineOfPosition(statement.text, position) - 1 : 0);
        // Its connection lost or given up on once it was sent and before its answer, the statement itself may have run.
        const unanswered = sent && mapDatabaseError(error) instanceof ConnectionError;
        throw new MigrationPartiallyAppliedError(
          script.file,
          line,
          `${databaseMessage(error)}${unanswered ? '; this statement itself may or may not have taken effect' : ''}`,
          index,
          cleanupAdvice(script, index),
          { cause: error },
        );
      }
    }
  } finally {
    // Back to the run's own lock_timeout (the record's BEGIN and INSERT wait under it), not the
    // server's default, which RESET would give (0: no bound).
    await answeredWithin(client, roundTripDeadlineMs, 'the reset of the settings', () =>
      client.query(`SET lock_timeout = ${Math.max(1, Math.round(runLockTimeoutMs))}; ${silentClientBoundsReset}`),
    ).catch(() => undefined);
  }
  // The record (the storage's INSERT or DELETE) and the lock check commit together.
  await answeredWithin(client, roundTripDeadlineMs, 'BEGIN', () => client.query('BEGIN'));
}

// Whether a DETACH PARTITION … CONCURRENTLY's partition is already pending detach: an attempt of
// this run, or a run before, committed the first transaction and ran out of lock time after it.
async function pendingDetach(client: pg.ClientBase, statement: MigrationStatement): Promise<boolean> {
  if (statement.detach === undefined) return false;
  const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look for a pending detach', () =>
    client.query('SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = pg_catalog.to_regclass($1) AND inhdetachpending', [statement.detach!.partitionRef]),
  );
  return rows.length > 0;
}

// Whether the index a CREATE INDEX CONCURRENTLY names exists and is INVALID.
async function standsInvalid(client: pg.ClientBase, statement: MigrationStatement): Promise<boolean> {
  if (statement.concurrentIndexRef === undefined) return false;
  const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look for an INVALID index', () =>
    client.query('SELECT 1 FROM pg_catalog.pg_index WHERE indexrelid = pg_catalog.to_regclass($1) AND NOT indisvalid', [statement.concurrentIndexRef]),
  );
  return rows.length > 0;
}

function cleanupAdvice(script: MigrationScript, failedIndex: number): string {
  const failed = script.statements[failedIndex]!;
  const advice = [
    'Undo or finish by hand what the earlier statements did, or make them idempotent (IF NOT EXISTS), before running it again.',
  ];
  if (failed.concurrentIndexRef !== undefined || script.statements.some((statement) => statement.concurrentIndexRef)) {
    // As DROP INDEX takes it, as the other messages about an INVALID index name it.
    const name = failed.concurrentIndexRef ?? script.statements.find((statement) => statement.concurrentIndexRef)!.concurrentIndexRef!;
    advice.push(
      `A failed CREATE INDEX CONCURRENTLY leaves its index behind, INVALID (unused, yet maintained on every write), ` +
        `and CREATE INDEX … IF NOT EXISTS would then skip it: find such indexes with ` +
        `SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid; and drop them with DROP INDEX CONCURRENTLY ` +
        `(here probably ${name}).`,
    );
  }
  return advice.join(' ');
}

function databaseMessage(error: unknown): string {
  return (error as { message?: string }).message ?? String(error);
}

function migrationError(file: string, line: number | undefined, error: unknown): MigrationError {
  let message = databaseMessage(error);
  // 25001: CREATE INDEX CONCURRENTLY, VACUUM and the like cannot run in a transaction.
  if ((error as { code?: string }).code === '25001') {
    message += `; put '${noTransactionHeader}' on the file's first line to run it outside a transaction`;
  }
  return new MigrationError(file, line, message, { cause: error });
}

// pg's Query, counting the statements of a multi-statement query that completed: each ends
// with a CommandComplete message before the next starts, so on an error the count is the
// index of the statement that failed.
class StatementCountingQuery extends pg.Query {
  completed = 0;

  handleCommandComplete(...args: unknown[]): void {
    this.completed += 1;
    (pg.Query.prototype as unknown as { handleCommandComplete: (...a: unknown[]) => void }).handleCommandComplete.apply(this, args);
  }

  run(client: pg.ClientBase): Promise<void> {
    return new Promise((resolve, reject) => {
      this.on('error', reject);
      this.on('end', () => resolve());
      client.query(this);
    });
  }
}

/**
 * Every error out of the migrator is a DbError: Umzug wraps what a migration throws in its own
 * error (ours already names file and line, and says what stays applied), and what the
 * storage, BEGIN or COMMIT raise comes from pg, mapped by SQLSTATE as everywhere else.
 */
function migratorError(error: unknown): DbError {
  if (error instanceof UmzugMigrationError && error.cause !== undefined) return mapDatabaseError(error.cause);
  return mapDatabaseError(error);
}
