import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { Umzug } from 'umzug';
import { withClient } from '../db/with-client.js';
import { MigrationChecksumError, MigrationError, MigrationMissingError, MigrationPermissionError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { type MigrationLock, withMigrationLock } from './migration-lock.js';
import { migrationDatabaseUrl, migrationLockTimeoutMs } from './migration-settings.js';
import { listMigrationFiles, type MigrationFile } from './migration-files.js';
import {
  type AppliedMigration,
  type MigrationContext,
  migrationsTable,
  PostgresMigrationStorage,
} from './migration-storage.js';
import { lineOfPosition, splitSqlStatements } from './sql-statements.js';

export interface MigratorOptions {
  /**
   * The database to migrate, as its owner (migrations create and alter tables). Default:
   * `MIGRATION_DATABASE_URL`, else `DATABASE_URL`. Through a transaction-mode pooler works too.
   */
  databaseUrl?: string;
  /**
   * Folder of `<name>.up.sql` / `<name>.down.sql` pairs; defaults to this package's own
   * `migrations/`. A service that bundles this library (esbuild, webpack) must copy that
   * folder and pass its path here, since the bundle no longer sits inside the package.
   */
  migrationsDir?: string;
  /** Receives one line per event (applied, reverted, waiting for the lock). Silent by default. */
  log?: (line: string) => void;
  /** Longest wait for another run's lock (default: `MIGRATION_LOCK_TIMEOUT` seconds, else 5 minutes). */
  lockTimeoutMs?: number;
}

/** A migration applied or reverted by one run, with how long its transaction took. */
export interface MigrationRun {
  name: string;
  durationMs: number;
}

/** One migration in {@link migrationStatus}. */
export interface MigrationState {
  name: string;
  /** `changed`: the file differs from what was applied; `missing`: recorded, but the file is gone. */
  state: 'applied' | 'pending' | 'changed' | 'missing';
  appliedAt?: Date;
  durationMs?: number;
}

const storage = new PostgresMigrationStorage();
const migratorApplicationName = 'kennwilliamson-migrate';

/** The migrations folder shipped with this package. */
export function defaultMigrationsDir(): string {
  return path.join(packageRoot(), 'migrations');
}

/**
 * Applies every pending migration (or those up to and including `to`), oldest first, each in its own transaction together with
 * its record, while holding the migration lock; concurrent callers wait and then find
 * nothing left to do. Refuses to start if an applied migration's file was changed or removed.
 * Services may call it at start-up.
 *
 * @example
 * const applied = await migrate({ log: console.log }) // MIGRATION_DATABASE_URL, else DATABASE_URL
 * // applied 20250914134643_initial_schema (41 ms) …
 */
export async function migrate(options: MigratorOptions & { to?: string }): Promise<MigrationRun[]> {
  return withMigrator(options, async (umzug, runs) => {
    await umzug.up(options.to === undefined ? {} : { to: options.to });
    return runs;
  });
}

/**
 * Reverts the last applied migration, or with `to` every migration back to and including
 * that one (`to: 0` reverts all), each in its own transaction.
 *
 * @example
 * await migrateDown({ databaseUrl, to: '20250914134654_add_refresh_tokens_and_user_active' })
 */
export async function migrateDown(options: MigratorOptions & { to?: string | 0 }): Promise<MigrationRun[]> {
  return withMigrator(options, async (umzug, runs) => {
    await umzug.down(options.to === undefined ? {} : { to: options.to });
    return runs;
  });
}

/**
 * Lists every migration with its state: applied, pending, changed since it was applied, or
 * recorded but missing from the folder. Reads only; takes no lock.
 *
 * @example
 * const states = await migrationStatus({ databaseUrl })
 * states.filter((m) => m.state === 'pending')
 */
export async function migrationStatus(options: MigratorOptions): Promise<MigrationState[]> {
  const files = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir());
  const readStatus = async (client: pg.Client) => {
    const { rows } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
      migrationsTable,
    ]);
    const applied = rows[0]?.exists ? await storage.applied(client) : [];
    return compareWithFiles(files, applied);
  };
  return withClient(options.databaseUrl ?? migrationDatabaseUrl(), readStatus, migratorApplicationName);
}

function compareWithFiles(files: MigrationFile[], applied: AppliedMigration[]): MigrationState[] {
  const byName = new Map(files.map((file) => [file.name, file]));
  const recorded = new Set(applied.map((row) => row.name));
  const states: MigrationState[] = applied.map((row) => {
    const file = byName.get(row.name);
    const state = file === undefined ? 'missing' : file.checksum === row.checksum ? 'applied' : 'changed';
    return { name: row.name, state, appliedAt: row.appliedAt, durationMs: row.durationMs };
  });
  for (const file of files) if (!recorded.has(file.name)) states.push({ name: file.name, state: 'pending' });
  return states.sort((a, b) => a.name.localeCompare(b.name));
}

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

async function withMigrator<T>(
  options: MigratorOptions,
  command: (umzug: MigrationUmzug, runs: MigrationRun[]) => Promise<T>,
): Promise<T> {
  const databaseUrl = options.databaseUrl ?? migrationDatabaseUrl();
  const timeoutMs = options.lockTimeoutMs ?? migrationLockTimeoutMs();
  const files = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir());
  const log = options.log ?? (() => undefined);
  const onWait = (holder: { pid: number; applicationName: string } | undefined) =>
    log(`waiting for another migration run to finish${holder ? ` (pid ${holder.pid}, ${holder.applicationName})` : ''}…`);

  return withMigrationLock({ databaseUrl, timeoutMs, onWait }, (lock) =>
    withClient(
      databaseUrl,
      async (client) => {
        await assertCanMigrate(client);
        await storage.ensureTable(client);
        assertHistoryIntact(files, await storage.applied(client));
        const context: MigrationContext = {
          client,
          checksums: new Map(files.map((file) => [file.name, file.checksum])),
        };
        const runs: MigrationRun[] = [];
        const umzug = createUmzug(files, context, storage, runs, log, lock);
        try {
          return await command(umzug, runs);
        } catch (error) {
          if (context.startedAt !== undefined) await client.query('ROLLBACK').catch(() => undefined);
          throw unwrapUmzugError(error);
        }
      },
      migratorApplicationName,
    ),
  );
}

// The application role (least privilege, what services query with) cannot create anything;
// say which URL is needed instead of failing later on the first CREATE.
async function assertCanMigrate(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ role: string; can_create: boolean }>(
    "SELECT current_user AS role, has_schema_privilege(current_schema(), 'CREATE') AS can_create",
  );
  const row = rows[0]!;
  if (!row.can_create) throw new MigrationPermissionError(row.role);
}

// Each migration and its record share one transaction: BEGIN when Umzug announces the
// migration, the SQL, the storage's INSERT (or DELETE), COMMIT when Umzug reports it done.
function createUmzug(
  files: MigrationFile[],
  context: MigrationContext,
  migrationStorage: PostgresMigrationStorage,
  runs: MigrationRun[],
  log: (line: string) => void,
  lock: MigrationLock,
): MigrationUmzug {
  const umzug = new Umzug<MigrationContext>({
    context,
    storage: migrationStorage,
    logger: undefined,
    migrations: files.map((file) => ({
      name: file.name,
      path: file.upPath,
      up: ({ context: ctx }) => runScript(ctx.client, path.basename(file.upPath), file.upSql),
      down: async ({ context: ctx }) => runScript(ctx.client, path.basename(file.downPath), await readFile(file.downPath, 'utf8')),
    })),
  });
  const begin = async ({ context: ctx }: { context: MigrationContext }) => {
    ctx.startedAt = performance.now();
    // SET LOCAL, not SET: it ends with the transaction, so nothing stays on a pooled session.
    // If this process dies mid-statement, the server notices within a second and rolls back,
    // instead of finishing a long statement for nobody.
    await ctx.client.query("BEGIN; SET LOCAL client_connection_check_interval = '1s'");
  };
  const commit = (verb: string) => async ({ name, context: ctx }: { name: string; context: MigrationContext }) => {
    // Never commit a migration whose lock is gone: another run may have started it too.
    await lock.assertHeld();
    await ctx.client.query('COMMIT');
    const durationMs = Math.round(performance.now() - (ctx.startedAt ?? performance.now()));
    ctx.startedAt = undefined;
    runs.push({ name, durationMs });
    log(`${verb} ${name} (${durationMs} ms)`);
  };
  umzug.on('migrating', begin);
  umzug.on('reverting', begin);
  umzug.on('migrated', commit('applied'));
  umzug.on('reverted', commit('reverted'));
  return umzug;
}

async function runScript(client: pg.ClientBase, file: string, sql: string): Promise<void> {
  for (const statement of splitSqlStatements(sql)) {
    try {
      await client.query(statement.text);
    } catch (error) {
      const pgError = error as { message?: string; position?: string };
      const position = Number(pgError.position);
      const line = statement.line + (position > 0 ? lineOfPosition(statement.text, position) - 1 : 0);
      throw new MigrationError(file, line, pgError.message ?? String(error), { cause: error });
    }
  }
}

// Umzug wraps whatever a migration throws in its own error; ours already names file and line.
function unwrapUmzugError(error: unknown): unknown {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause instanceof MigrationError ? cause : error;
}
