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
 * Watches a plain-format dump's SQL go by, chunk after chunk, for pg_dump's header and
 * completion trailer; `problem()` says, once the SQL has ended, what the two say is wrong
 * (not a dump, or one cut short), or undefined.
 *
 * @example
 * const frame = dumpFrame(); for await (const chunk of sql) frame.inspect(chunk); frame.problem()
 */
export function dumpFrame(): { inspect: (chunk: Buffer) => void; problem: () => string | undefined } {
  let head: Buffer = Buffer.alloc(0);
  let tail: Buffer = Buffer.alloc(0);
  return {
    inspect: (chunk) => {
      if (head.length < header.length) head = Buffer.concat([head, chunk.subarray(0, header.length - head.length)]);
      tail = chunk.length >= tailWindow ? chunk.subarray(chunk.length - tailWindow) : Buffer.concat([tail, chunk]).subarray(-tailWindow);
    },
    problem: () => {
      if (head.toString('utf8') !== header) return 'it does not start as a pg_dump plain-format dump';
      const end = tail.toString('utf8');
      const at = end.lastIndexOf(trailer);
      if (at === -1) return "it lacks pg_dump's completion trailer: the dump is cut short";
      // The trailer ends the dump: what follows it (a second gzip member, say) would restore
      // as part of a dump that says it was complete without it.
      const after = end.slice(at + trailer.length).split('\n');
      if (!after.every((line) => line.trim() === '' || /^\\unrestrict [A-Za-z0-9]+\r?$/.test(line))) {
        return "it holds more after pg_dump's completion trailer than pg_dump writes there (a blank line, \\unrestrict)";
      }
      return undefined;
    },
  };
}

/**
 * Checks that a gzip-compressed plain-SQL dump reads back whole and would restore, before
 * it is published (and before a restore touches the database), in one pass: a full
 * decompression (gzip checks its CRC and length at the end), pg_dump's header and completion
 * trailer (a truncated or half-written dump lacks it), and the restore's vetting of its SQL
 * (`vetSqlScript`, with `\connect` only to `database` when given). Throws a
 * {@link RestoreError} when the vetting refuses it, an Error saying what is wrong otherwise.
 *
 * @example
 * const { sqlBytes } = await verifySqlDump('backups/.kennwilliamson_development_20250914T134643.512Z.sql.gz.123.tmp')
 */
export async function verifySqlDump(file: string, options: SqlScriptOptions & { signal?: AbortSignal } = {}): Promise<SqlDumpContents> {
  // Looks at the decompressed SQL on its way to the vetting (and past a refusal, to the end).
  const frame = dumpFrame();
  let sqlBytes: number;
  try {
    sqlBytes = await vetGzippedSql(file, { ...options, inspect: frame.inspect });
  } catch (error) {
    if (error instanceof GzipReadError) throw new Error(`it is not a whole gzip file: ${error.message}`, { cause: error.cause });
    // Say what is wrong with the file first: not a dump at all, or one cut off (which also
    // ends in the middle of its SQL).
    const problem = frame.problem();
    if (problem !== undefined && error instanceof RestoreError) throw new Error(problem, { cause: error });
    throw error;
  }
  const problem = frame.problem();
  if (problem !== undefined) throw new Error(problem);
  return { sqlBytes };
}
