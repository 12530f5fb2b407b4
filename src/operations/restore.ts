import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { RestoreError } from '../errors.js';
import { libpqConnection } from './libpq-connection.js';
import { type PgToolExit, spawnPgTool, toolErrorText } from './pg-tool-process.js';
import { findPgTool, type FindPgToolOptions } from './pg-tools.js';
import { byteProgress } from './progress-reporter.js';
import type { VerifiedBackup } from './verify-backup-file.js';

/** What {@link restoreDatabase} restores, and into which database. */
export interface RestoreOptions {
  /** The database whose `public` schema is replaced by the backup's. */
  databaseUrl: string;
  /** A backup checked by `verifyBackupFile`. */
  backup: VerifiedBackup;
  /** Receives progress lines (tables restored). */
  log?: (line: string) => void;
  /** Aborting stops the restore before its COMMIT: the database stays as it was. */
  signal?: AbortSignal;
  /** Where to look for psql (tests narrow it); see `findPgTool`. */
  toolSearch?: Omit<FindPgToolOptions, 'minMajor'>;
}

/** A finished restore. */
export interface RestoreResult {
  /** Tables whose data was loaded. */
  tables: number;
}

/**
 * Sent before the backup's SQL, in the same transaction. The backup replaces the whole
 * `public` schema, so objects a later migration added are gone too and `schema_migrations`
 * matches the tables again (a restore with `--clean` would drop and recreate only what the
 * backup holds). The schema is recreated as initdb makes it on PostgreSQL 15+; pg_dump
 * never creates `public` itself, but restores its grants (the application role's among them).
 * The lock timeout makes a restore fail clearly, rather than hang, while a session holds
 * locks on the old tables.
 */
export const restorePrelude = `BEGIN;
SET LOCAL lock_timeout = '30s';
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
`;

// Yields the prelude, the backup's SQL (noting each table's COPY for progress), and COMMIT
// only when the source ended cleanly: a source that fails halfway (pg_restore error, gzip
// damage, Ctrl-C) throws before COMMIT, psql's stdin closes, and PostgreSQL rolls the
// transaction back when psql disconnects.
async function* restoreScript(
  source: Readable,
  sourceDone: () => Promise<void>,
  onTable: (table: string) => void,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer | string> {
  yield restorePrelude;
  let tail = '';
  for await (const chunk of source as AsyncIterable<Buffer>) {
    const text = tail + chunk.toString('latin1');
    const lines = text.split('\n');
    tail = lines.pop() ?? '';
    for (const line of lines) {
      const table = /^COPY (\S+)/.exec(line)?.[1];
      if (table) onTable(table);
    }
    yield chunk;
  }
  await sourceDone();
  // psql is already being killed on abort; never hand it a COMMIT regardless.
  signal?.throwIfAborted();
  yield '\nCOMMIT;\n';
}

/**
 * Restores a verified backup into a database, all or nothing: the backup's SQL (from
 * `pg_restore --no-owner` for a custom archive, gunzipped for `.sql.gz`) runs through
 * `psql` with `ON_ERROR_STOP` inside one transaction that first recreates the `public`
 * schema, and COMMIT is sent only after the whole backup went through. On any failure
 * (a statement fails halfway, pg_restore or gzip fails, the server goes away) it throws
 * {@link RestoreError} with psql's or pg_restore's message and the old data is untouched.
 * Objects are owned by the user of `databaseUrl` (the owner who runs migrations); grants,
 * including the application role's, are restored and need that role to exist.
 *
 * @example
 * const backup = await verifyBackupFile(file)
 * await restoreDatabase({ databaseUrl, backup, log: console.error })
 */
export async function restoreDatabase(options: RestoreOptions): Promise<RestoreResult> {
  const log = options.log ?? (() => undefined);
  const { backup, signal } = options;
  const psql = await findPgTool('psql', options.toolSearch ?? {});
  const connection = libpqConnection(options.databaseUrl, { inContainer: psql.inContainer });
  log(`restoring ${backup.file} into ${connection.description} with psql ${psql.version} at ${psql.location}`);

  const target = spawnPgTool(
    psql,
    ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', '--file=-', ...connection.args],
    { env: connection.env, stdio: ['pipe', 'ignore'], ...(signal ? { signal } : {}) },
  );

  let source: Readable;
  let sourceDone: () => Promise<void>;
  let closeSource = async () => undefined as void;
  if (backup.format === 'custom') {
    const pgRestore = backup.pgRestore ?? (await findPgTool('pg_restore', options.toolSearch ?? {}));
    const handle = await open(backup.file, 'r');
    closeSource = () => handle.close();
    const reader = spawnPgTool(pgRestore, ['--file=-', '--no-owner'], {
      stdio: [handle.fd, 'pipe'],
      ...(signal ? { signal } : {}),
    });
    source = reader.child.stdout!;
    sourceDone = async () => {
      const exit: PgToolExit = await reader.exited;
      if (exit.code !== 0) throw new RestoreError(`pg_restore failed while reading the backup:\n${toolErrorText(exit.stderr)}`);
    };
  } else {
    const compressed = createReadStream(backup.file);
    const progress = byteProgress('read', backup.bytes, log);
    compressed.on('data', () => progress(compressed.bytesRead));
    source = compressed.pipe(createGunzip());
    compressed.on('error', (error) => source.destroy(error));
    sourceDone = async () => undefined;
  }

  let tables = 0;
  const onTable = (table: string) => log(`restoring table ${table} (${++tables}${backup.tables ? ` of ${backup.tables}` : ''})`);
  const fed = pipeline(restoreScript(source, sourceDone, onTable, signal), target.child.stdin!).then(
    () => undefined,
    (error: Error) => error,
  );
  const [feedError, exit] = await Promise.all([fed, target.exited]);
  await closeSource();

  // psql's own error comes first: when a statement fails, psql stops and the feed then
  // fails only because the pipe closed.
  // An aborted program reports itself as a spawn error too: the interruption comes first.
  if (signal?.aborted) throw new RestoreError('restore interrupted before its COMMIT; the database was not changed');
  if (exit.spawnError) throw new RestoreError(`could not run psql at ${psql.location}: ${exit.spawnError.message}`);
  if (exit.code !== 0) {
    throw new RestoreError(
      `restore failed and was rolled back; the database was not changed:\n${toolErrorText(exit.stderr) || `psql exited with ${exit.code ?? exit.signal}`}`,
    );
  }
  if (feedError) {
    const reason = feedError instanceof RestoreError ? feedError.message : `reading the backup failed: ${feedError.message}`;
    throw new RestoreError(`${reason}\nthe restore was rolled back; the database was not changed`, { cause: feedError });
  }
  log(`restored ${tables} tables from ${backup.file}`);
  return { tables };
}
