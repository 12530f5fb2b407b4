import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { Umzug } from 'umzug';
import { withClient } from '../db/with-client.js';
import { MigrationChecksumError, MigrationError, MigrationMissingError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { migrationLockKey, withAdvisoryLock } from './advisory-lock.js';
import { listMigrationFiles, type MigrationFile } from './migration-files.js';
import {
  type AppliedMigration,
  type MigrationContext,
  migrationsTable,
  PostgresMigrationStorage,
} from './migration-storage.js';
import { lineOfPosition, splitSqlStatements } from './sql-statements.js';

export interface MigratorOptions {
  /** The database to migrate, as the owner role (migrations create and alter tables). */
  databaseUrl: string;
  /** Folder of `<name>.up.sql` / `<name>.down.sql` pairs; defaults to this package's `migrations/`. */
  migrationsDir?: string;
  /** Receives one line per event (applied, reverted, waiting for the lock). Silent by default. */
  log?: (line: string) => void;
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
 * const applied = await migrate({ databaseUrl: process.env.DATABASE_URL!, log: console.log })
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
  return withClient(options.databaseUrl, readStatus, migratorApplicationName);
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
  const files = await listMigrationFiles(options.migrationsDir ?? defaultMigrationsDir());
  const log = options.log ?? (() => undefined);
  const migrateWithLock = (client: pg.Client) =>
    withAdvisoryLock(
      client,
      migrationLockKey,
      async () => {
        await storage.ensureTable(client);
        assertHistoryIntact(files, await storage.applied(client));
        const context: MigrationContext = {
          client,
          checksums: new Map(files.map((file) => [file.name, file.checksum])),
        };
        const runs: MigrationRun[] = [];
        const umzug = createUmzug(files, context, storage, runs, log);
        try {
          return await command(umzug, runs);
        } catch (error) {
          if (context.startedAt !== undefined) await client.query('ROLLBACK').catch(() => undefined);
          throw unwrapUmzugError(error);
        }
      },
      () => log('waiting for another migration run to finish…'),
    );
  return withClient(options.databaseUrl, migrateWithLock, migratorApplicationName);
}

// Each migration and its record share one transaction: BEGIN when Umzug announces the
// migration, the SQL, the storage's INSERT (or DELETE), COMMIT when Umzug reports it done.
function createUmzug(
  files: MigrationFile[],
  context: MigrationContext,
  migrationStorage: PostgresMigrationStorage,
  runs: MigrationRun[],
  log: (line: string) => void,
): MigrationUmzug {
  const umzug = new Umzug<MigrationContext>({
    context,
    storage: migrationStorage,
    logger: undefined,
    migrations: files.map((file) => ({
      name: file.name,
      path: file.upPath,
      up: ({ context: ctx }) => runScript(ctx.client, file.upPath),
      down: ({ context: ctx }) => runScript(ctx.client, file.downPath),
    })),
  });
  const begin = async ({ context: ctx }: { context: MigrationContext }) => {
    await ctx.client.query('BEGIN');
    ctx.startedAt = Date.now();
  };
  const commit = (verb: string) => async ({ name, context: ctx }: { name: string; context: MigrationContext }) => {
    await ctx.client.query('COMMIT');
    const durationMs = Date.now() - (ctx.startedAt ?? Date.now());
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

async function runScript(client: pg.ClientBase, file: string): Promise<void> {
  const sql = await readFile(file, 'utf8');
  for (const statement of splitSqlStatements(sql)) {
    try {
      await client.query(statement.text);
    } catch (error) {
      const pgError = error as { message?: string; position?: string };
      const position = Number(pgError.position);
      const line = statement.line + (position > 0 ? lineOfPosition(statement.text, position) - 1 : 0);
      throw new MigrationError(path.basename(file), line, pgError.message ?? String(error), { cause: error });
    }
  }
}

// Umzug wraps whatever a migration throws in its own error; ours already names file and line.
function unwrapUmzugError(error: unknown): unknown {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause instanceof MigrationError ? cause : error;
}
