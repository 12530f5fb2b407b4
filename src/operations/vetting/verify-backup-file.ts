import { type FileHandle, stat } from 'node:fs/promises';
import path from 'node:path';
import { ChecksumMismatchError, RestoreError } from '../../errors.js';
import type { BackupGrantees } from './backup-statement-allow-list.js';
import { verifyChecksumFile } from '../files/checksum-file.js';
import { openBackupFile } from '../files/open-backup-file.js';
import { findPgTool, type FindPgToolOptions, type PgTool } from '../pg-tools/pg-tools.js';
import { verifyArchive } from './verify-archive.js';
import { verifySqlDump } from './verify-sql-dump.js';
import { optionMs } from '../../db/option-ms.js';

/** A backup file that passed every check a restore makes before touching the database. */
export interface VerifiedBackup {
  /** Absolute path. */
  file: string;
  bytes: number;
  /** `custom`: a pg_dump custom archive (`.dump`); `sql-gzip`: a gzip'd plain SQL dump (`.sql.gz`). */
  format: 'custom' | 'sql-gzip';
  /** Whether a `.sha256` beside it was checked (`absent`: there was none). */
  checksum: 'verified' | 'absent';
  /** Tables with data in a custom archive; unknown for plain SQL. */
  tables?: number | undefined;
  /**
   * Size of the SQL it holds, decompressed (pg_restore's script of a custom archive): what a
   * restore runs, and roughly what it writes. A compressed file can hold a thousand times its
   * size (a "gzip bomb" fills the server's disk); the check reads it all without keeping it.
   * Unknown in a `VerifiedBackup` made by hand.
   */
  sqlBytes?: number | undefined;
  /** The pg_restore that read a custom archive, to restore it with. */
  pgRestore?: PgTool | undefined;
  /**
   * Which file was checked, as it was: a restore refuses another put in its place since, or
   * this one changed (left out, as in a VerifiedBackup made by hand, it checks only that the
   * path still names a regular file).
   */
  identity?: BackupFileIdentity | undefined;
}

/** A file as the file system knows it: replaced (a rename over it) or rewritten, one of these differs. */
export interface BackupFileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  /** The inode's change time, which no one can set back (`touch` sets mtime, not this). */
  ctimeMs: number;
}

const identityOf = (info: BackupFileIdentity): BackupFileIdentity => ({
  dev: info.dev,
  ino: info.ino,
  size: info.size,
  mtimeMs: info.mtimeMs,
  ctimeMs: info.ctimeMs,
});

/** Whether `identity` is the file's now, said as what differs (`undefined`: the same). */
export function identityChange(identity: BackupFileIdentity, now: BackupFileIdentity): string | undefined {
  if (identity.dev !== now.dev || identity.ino !== now.ino) return 'another file is in its place';
  if (identity.size !== now.size || identity.mtimeMs !== now.mtimeMs || identity.ctimeMs !== now.ctimeMs) return 'it was written to';
  return undefined;
}

async function formatOf(handle: FileHandle): Promise<VerifiedBackup['format'] | undefined> {
  const { buffer, bytesRead } = await handle.read(Buffer.alloc(5), 0, 5, 0);
  const head = buffer.subarray(0, bytesRead);
  if (head.toString('latin1') === 'PGDMP') return 'custom';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'sql-gzip';
  return undefined;
}

/** What {@link verifyBackupFile} is given besides the file. */
export interface VerifyBackupFileOptions {
  /** Where to look for pg_restore, for a custom archive. */
  toolSearch?: Omit<FindPgToolOptions, 'minMajor' | 'target'> | undefined;
  signal?: AbortSignal | undefined;
  /** The database the backup is for: a backup that connects to another is refused. */
  database?: string | undefined;
  /** `restoreSession`'s: the roles a backup may grant to. */
  grantees?: BackupGrantees | undefined;
  /**
   * How long pg_restore, reading a custom archive, may write nothing (default 60 s): then it is
   * taken for stuck (stopped, or reading from a hung disk) and stopped, and the backup refused.
   */
  stallTimeoutMs?: number | undefined;
  /**
   * Accepts a custom archive (`.dump`) with no `.sha256` beside it, which is refused otherwise:
   * the format has no checksum of its own, and one damaged bit in its table of contents can drop
   * a table's data, an index or a constraint while pg_restore reads the rest without a word. A
   * `.sql.gz` needs none: gzip's CRC and pg_dump's trailer check it whole.
   */
  withoutChecksum?: boolean | undefined;
}

/**
 * Checks a backup before a restore may touch the database: it exists and is readable; its
 * `.sha256`, when there is one, matches (a custom archive without one is refused, unless
 * `withoutChecksum`); and it reads back whole (a custom archive through
 * `pg_restore --list` and a full read, a `.sql.gz` through a full decompression, which
 * checks gzip's CRC, and pg_dump's header and completion trailer). Throws {@link RestoreError} (with a {@link ChecksumMismatchError} as
 * cause on a checksum mismatch) saying why it refuses. Given `grantees` (`restoreSession`'s),
 * a backup granting privileges to anyone else (PUBLIC, another role of the server) is
 * refused now, before anything of it runs: a custom archive's ACL entries as well, which
 * pg_restore writes out as the GRANTs the vetting reads.
 *
 * @example
 * const backup = await verifyBackupFile('backups/kennwilliamson_production_20250914T134643.512Z.dump')
 * // { format: 'custom', checksum: 'verified', tables: 9, … }
 */
export async function verifyBackupFile(
  file: string,
  options: VerifyBackupFileOptions = {},
): Promise<VerifiedBackup> {
  // A bound no timer can hold is the caller's mistake, said before the file is read.
  if (options.stallTimeoutMs !== undefined) optionMs('stallTimeoutMs', options.stallTimeoutMs);
  const absolute = path.resolve(file);
  const name = path.basename(absolute);
  const database = {
    ...(options.database === undefined ? {} : { database: options.database }),
    ...(options.grantees === undefined ? {} : { grantees: options.grantees }),
  };
  const refuse = (reason: string, cause?: unknown): never => {
    throw new RestoreError(`refusing to restore ${name}: ${reason}; the database was not touched`, { cause });
  };

  const opened = await openBackupFile(absolute).catch((error: NodeJS.ErrnoException) =>
    refuse(error.code === 'ENOTFILE' ? `${absolute} is not a file` : `cannot read ${absolute} (${error.code ?? error.message})`, error),
  );
  const { handle, info } = opened;
  const identity = identityOf(info);
  const format = await formatOf(handle)
    .catch((error: NodeJS.ErrnoException) => refuse(`cannot read ${absolute} (${error.code ?? error.message})`, error))
    .finally(() => handle.close());
  if (!format) refuse('it is neither a pg_dump custom archive (.dump) nor a gzip-compressed SQL dump (.sql.gz)');
  // The checks below each open the path again: the file they read must be the one above, as it was.
  const unchanged = async <T>(result: T): Promise<T> => {
    const now = await stat(absolute).catch((error: NodeJS.ErrnoException) => refuse(`cannot read ${absolute} (${error.code ?? error.message})`, error));
    const change = identityChange(identity, identityOf(now));
    return change === undefined ? result : refuse(`it changed while it was checked (${change}): check it again`);
  };

  const checksum = await verifyChecksumFile(absolute, options.signal ? { signal: options.signal } : {}).catch((error: unknown) =>
    refuse(error instanceof ChecksumMismatchError ? error.message : `its .sha256 cannot be read (${String(error)})`, error),
  );

  if (format === 'custom' && !checksum && options.withoutChecksum !== true) {
    refuse(
      `it is a custom archive (.dump) with no ${name}.sha256 beside it, and the format has no checksum of its own: one damaged bit ` +
        "can drop a table's data, an index or a constraint while pg_restore reads the rest without a word. Put its .sha256 beside it " +
        "(backup writes one, download-backup copies the host's), or pass --without-checksum (withoutChecksum: true) to restore it unchecked",
    );
  }
  const verified: VerifiedBackup = { file: absolute, bytes: info.size, format: format!, checksum: checksum ? 'verified' : 'absent', identity };
  if (format === 'custom') {
    const pgRestore = await findPgTool('pg_restore', options.toolSearch ?? {});
    const contents = await verifyArchive(pgRestore, absolute, { ...database, signal: options.signal, stallTimeoutMs: options.stallTimeoutMs }).catch((error: Error) =>
      refuse(error instanceof RestoreError ? `it holds what a restore refuses: ${error.message}` : `it is not a readable backup: ${error.message}`, error),
    );
    return unchanged({ ...verified, tables: contents.tables, sqlBytes: contents.sqlBytes, pgRestore });
  }
  // One pass, as a new backup is checked: gzip's CRC and length, pg_dump's header and
  // completion trailer, and the SQL through the restore's vetting, so a file it would refuse
  // halfway is refused now. A dump cut short between two statements vets clean (the older
  // pg_dumps write no \restrict to miss) and would restore without what came last: the
  // indexes, constraints, triggers and sequence values.
  const { sqlBytes } = await verifySqlDump(absolute, { ...database, ...(options.signal ? { signal: options.signal } : {}) }).catch((error: Error) =>
    refuse(error instanceof RestoreError ? `it holds what a restore refuses: ${error.message}` : error.message, error),
  );
  return unchanged({ ...verified, sqlBytes });
}
