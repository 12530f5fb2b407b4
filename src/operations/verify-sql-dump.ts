import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

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
 * Checks that a gzip-compressed plain-SQL dump reads back whole before it is published: a
 * full decompression (gzip checks its CRC and length at the end) and pg_dump's header and
 * completion trailer, so a truncated, damaged or half-written dump is refused. Throws an
 * Error saying what is wrong.
 *
 * @example
 * const { sqlBytes } = await verifySqlDump('backups/.kennwilliamson_development_20250914T134643.512Z.sql.gz.123.tmp')
 */
export async function verifySqlDump(file: string, options: { signal?: AbortSignal } = {}): Promise<SqlDumpContents> {
  let head: Buffer = Buffer.alloc(0);
  let tail: Buffer = Buffer.alloc(0);
  let sqlBytes = 0;
  const inspect = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      sqlBytes += chunk.length;
      if (head.length < header.length) head = Buffer.concat([head, chunk.subarray(0, header.length - head.length)]);
      tail = chunk.length >= tailWindow ? chunk.subarray(chunk.length - tailWindow) : Buffer.concat([tail, chunk]).subarray(-tailWindow);
      callback();
    },
  });
  await pipeline(createReadStream(file), createGunzip(), inspect, options.signal ? { signal: options.signal } : {}).catch(
    (error: Error) => {
      throw new Error(`it is not a whole gzip file: ${error.message}`, { cause: error });
    },
  );
  if (head.toString('utf8') !== header) throw new Error('it does not start as a pg_dump plain-format dump');
  if (!tail.toString('utf8').includes(trailer)) throw new Error("it lacks pg_dump's completion trailer: the dump is cut short");
  return { sqlBytes };
}
