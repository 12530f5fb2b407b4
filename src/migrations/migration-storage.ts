import { performance } from 'node:perf_hooks';
import type * as pg from 'pg';
import type { UmzugStorage } from 'umzug';
import { answeredWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { librarySchema } from '../db/library-schema.js';
import { type BlockingSession, describeBlockingSessions } from '../blocking-session.js';
import { MigrationRecordLockedError } from '../errors.js';

/** Who holds the record's table while a statement on it waits: told once on `warn`, and named when it gives up. */
export interface RecordWatch {
  /** Looks, on a connection of its own, at who holds the record's table. */
  holders: () => Promise<BlockingSession[]>;
  warn: (line: string) => void;
}

/** The table in which applied migrations are recorded (excluded from generated types). */
export const migrationsTable = 'schema_migrations';

/**
 * {@link migrationsTable} with its schema, as every statement names it: a `search_path`
 * changed on the connection cannot redirect the bookkeeping (see inLibrarySchema).
 */
export const qualifiedMigrationsTable = `"${librarySchema}"."${migrationsTable}"`;

/** What the migrator shares with each step of a run: the one locked connection. */
export interface MigrationContext {
  client: pg.ClientBase;
  /** Checksums of the migration files by name, recorded with each applied migration. */
  checksums: ReadonlyMap<string, string>;
  /**
   * When the current migration's transaction began (`performance.now()`, a monotonic clock:
   * a wall clock stepped backwards would record a negative duration, which the CHECK refuses).
   */
  startedAt?: number;
  /**
   * Set by a dry run: the applied migrations, read without creating the table, so that
   * Umzug's list of pending migrations needs no `schema_migrations` on a new database.
   */
  applied?: readonly string[];
  /**
   * How long a statement on the record may wait for the table's lock (which a restore holds for
   * its whole run, and an operator's `LOCK TABLE` may): the run's wait for another run's lock.
   */
  lockTimeoutMs: number;
  /** Watches who holds the record's table while a statement on it waits. */
  recordWatch?: RecordWatch | undefined;
}

// How long a statement on the record waits before it says so, naming who holds the table.
const recordNoteAfterMs = 1_000;

// Each statement on the record gets an answer within its lock wait and a round trip's deadline:
// the session's lock_timeout (set by the migrator) ends the wait on the server, and a server
// that stopped answering (frozen, or a path that stalls while its kernel acknowledges) is
// given up on, its connection closed, rather than waited for without end. A wait is said, with
// who holds the table (a restore, an operator's LOCK TABLE), and a wait that runs out names
// them: `migrate status` said nothing for its 5 minutes, then PostgreSQL's bare "lock not
// available", neither what waited nor for whom. Who holds it is asked of the table's locks, not
// of the waiting backend: through a pooler (`migrate status` works through one) that backend's
// pid is the pooler's own.
async function onTheRecord<T>(client: pg.ClientBase, lockTimeoutMs: number, what: string, call: () => Promise<T>, watch?: RecordWatch): Promise<T> {
  const started = performance.now();
  let settled = false;
  const note =
    watch === undefined || lockTimeoutMs <= recordNoteAfterMs
      ? undefined
      : setTimeout(() => {
          void watch.holders().then(
            (holders) => {
              if (settled || holders.length === 0) return;
              watch.warn(`${what} waits for the migrations record's table, ${describeBlockingSessions(holders)}; it waits up to ${lockTimeoutMs} ms (MIGRATION_LOCK_TIMEOUT)`);
            },
            () => undefined,
          );
        }, recordNoteAfterMs);
  note?.unref();
  try {
    return await answeredWithin(client, lockTimeoutMs + roundTripDeadlineMs, what, call);
  } catch (error) {
    if ((error as { code?: string }).code !== '55P03') throw error;
    const waitedMs = Math.round(performance.now() - started);
    // A look that fails leaves them unnamed; it never hides the lock wait.
    const holders = await watch?.holders().catch(() => undefined);
    throw new MigrationRecordLockedError(what, waitedMs, holders, { cause: error, lockTimeoutMs });
  } finally {
    settled = true;
    clearTimeout(note);
  }
}

/** A row of {@link migrationsTable}. */
export interface AppliedMigration {
  name: string;
  checksum: string;
  appliedAt: Date;
  durationMs: number;
}

/** The record's table, as the migrator creates it on a database's first run. */
export const migrationRecordTableSql = `
      CREATE TABLE IF NOT EXISTS ${qualifiedMigrationsTable} (
        name text PRIMARY KEY,
        checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
        applied_at timestamptz NOT NULL DEFAULT now(),
        duration_ms integer NOT NULL CHECK (duration_ms >= 0)
      )`;

/**
 * The record's own CHECKs and column defaults, as PostgreSQL gives them back
 * (`pg_get_constraintdef`, `pg_get_expr`) for the table {@link PostgresMigrationStorage} creates,
 * alike on 15 to 18 (test/schema checks them on each): the only ones a restored record may have,
 * since the owner runs them at every migration (see unsafeInRestoredPublic).
 */
export const migrationRecordChecks: readonly string[] = ["CHECK ((checksum ~ '^[0-9a-f]{64}$'::text))", 'CHECK ((duration_ms >= 0))'];
export const migrationRecordDefaults: Readonly<Record<string, string>> = { applied_at: 'now()' };

/**
 * Umzug storage that records migrations in PostgreSQL, on the migrator's own connection, so
 * that a record is written inside the transaction of the migration it records.
 */
export class PostgresMigrationStorage implements UmzugStorage<MigrationContext> {
  /** Creates the table if this is the database's first run. Call while holding the lock. */
  async ensureTable(client: pg.ClientBase, lockTimeoutMs: number, watch?: RecordWatch): Promise<void> {
    await onTheRecord(client, lockTimeoutMs, 'the creation of the migrations table', () => client.query(migrationRecordTableSql), watch);
  }

  /** Every recorded migration, oldest first. */
  async applied(client: pg.ClientBase, lockTimeoutMs: number, watch?: RecordWatch): Promise<AppliedMigration[]> {
    const { rows } = await onTheRecord(
      client,
      lockTimeoutMs,
      'the read of the applied migrations',
      () =>
        client.query<AppliedMigration>(
          `SELECT name, checksum, applied_at AS "appliedAt", duration_ms AS "durationMs"
         FROM ${qualifiedMigrationsTable} ORDER BY name`,
        ),
      watch,
    );
    return rows;
  }

  async executed({ context }: { context: MigrationContext }): Promise<string[]> {
    if (context.applied !== undefined) return [...context.applied];
    return (await this.applied(context.client, context.lockTimeoutMs, context.recordWatch)).map((row) => row.name);
  }

  async logMigration({ name, context }: { name: string; context: MigrationContext }): Promise<void> {
    const durationMs = context.startedAt === undefined ? 0 : Math.round(performance.now() - context.startedAt);
    await onTheRecord(
      context.client,
      context.lockTimeoutMs,
      'the record of the migration',
      () =>
        context.client.query(`INSERT INTO ${qualifiedMigrationsTable} (name, checksum, duration_ms) VALUES ($1, $2, $3)`, [
          name,
          context.checksums.get(name),
          durationMs,
        ]),
      context.recordWatch,
    );
  }

  async unlogMigration({ name, context }: { name: string; context: MigrationContext }): Promise<void> {
    await onTheRecord(
      context.client,
      context.lockTimeoutMs,
      'the removal of the migration from the record',
      () => context.client.query(`DELETE FROM ${qualifiedMigrationsTable} WHERE name = $1`, [name]),
      context.recordWatch,
    );
  }
}
