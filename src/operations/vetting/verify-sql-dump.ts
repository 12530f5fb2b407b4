import { RestoreError } from '../../errors.js';
import type { SqlScriptOptions } from './sql-script.js';
import { GzipReadError, vetGzippedSql } from './vet-gzipped-sql.js';

/** What {@link verifySqlDump} read. */
export interface SqlDumpContents {
  /** Size of the SQL once decompressed. */
  sqlBytes: number;
}

// pg_dump opens every plain-format dump with this header and writes the trailer only after
// the last object, right before it exits successfully; a dump cut short lacks it.
const header = '--\n-- PostgreSQL database dump\n--\n';
const trailer = '\n--\n-- PostgreSQL database dump complete\n--\n';
// After the trailer pg_dump 17.6+/18 writes only `\unrestrict <key>` and blank lines.
const tailWindow = 4096;

/**
 * Checks that a gzip-compressed plain-SQL dump reads back whole and would restore, before
 * it is published, in one pass: a full decompression (gzip checks its CRC and length at the
 * end), pg_dump's header and completion trailer (a truncated or half-written dump lacks
 * it), and the restore's vetting of its SQL (`vetSqlScript`, with `\connect` only to
 * `database` when given). Throws a
 * {@link RestoreError} when the vetting refuses it, an Error saying what is wrong otherwise.
 *
 * @example
 * const { sqlBytes } = await verifySqlDump('backups/.kennwilliamson_development_20250914T134643.512Z.sql.gz.123.tmp')
 */
export async function verifySqlDump(file: string, options: SqlScriptOptions & { signal?: AbortSignal } = {}): Promise<SqlDumpContents> {
  let head: Buffer = Buffer.alloc(0);
  let tail: Buffer = Buffer.alloc(0);
  let sqlBytes = 0;
  // Looks at the decompressed SQL on its way to the vetting (and past a refusal, to the end).
  const inspect = (chunk: Buffer) => {
    sqlBytes += chunk.length;
    if (head.length < header.length) head = Buffer.concat([head, chunk.subarray(0, header.length - head.length)]);
    tail = chunk.length >= tailWindow ? chunk.subarray(chunk.length - tailWindow) : Buffer.concat([tail, chunk]).subarray(-tailWindow);
  };
  try {
    await vetGzippedSql(file, { ...options, inspect });
  } catch (error) {
    if (error instanceof GzipReadError) throw new Error(`it is not a whole gzip file: ${error.message}`, { cause: error.cause });
    // Say what is wrong with the file first: not a dump at all, or one cut off (which also
    // ends in the middle of its SQL).
    if (head.toString('utf8') !== header && error instanceof RestoreError) {
      throw new Error('it does not start as a pg_dump plain-format dump', { cause: error });
    }
    if (!tail.toString('utf8').includes(trailer) && error instanceof RestoreError) {
      throw new Error("it lacks pg_dump's completion trailer: the dump is cut short", { cause: error });
    }
    throw error;
  }
  if (head.toString('utf8') !== header) throw new Error('it does not start as a pg_dump plain-format dump');
  if (!tail.toString('utf8').includes(trailer)) throw new Error("it lacks pg_dump's completion trailer: the dump is cut short");
  return { sqlBytes };
}
