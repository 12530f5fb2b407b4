import { createGunzip } from 'node:zlib';
import { openBackupFile } from '../files/open-backup-file.js';
import { type SqlScriptOptions, vetSqlScript } from './sql-script.js';

/** The file is not a whole, readable gzip stream (truncated, corrupted, CRC or length wrong). */
export class GzipReadError extends Error {}

/**
 * Decompresses a `.sql.gz` and runs its SQL through the restore's vetting in one pass, so the
 * file is read once. When the vetting refuses part-way, the rest is still decompressed: a
 * damaged file is reported as such ({@link GzipReadError}) whatever its SQL held, and
 * `inspect` sees every chunk either way (for a dump's trailer). Otherwise it throws the
 * vetting's `RestoreError`. Returns the size of the SQL, decompressed.
 *
 * @example
 * const sqlBytes = await vetGzippedSql('backups/old-server.sql.gz', { database: 'kennwilliamson' })
 */
export async function vetGzippedSql(
  file: string,
  options: SqlScriptOptions & { signal?: AbortSignal; inspect?: (chunk: Buffer) => void } = {},
): Promise<number> {
  const { signal, inspect, ...vetting } = options;
  // Without waiting on a FIFO put in the file's place (the open held for ever, whatever the
  // signal), and only a regular file, read through its handle.
  const { handle } = await openBackupFile(file);
  const compressed = handle.createReadStream({ start: 0, autoClose: false, ...(signal ? { signal } : {}) });
  const sql = compressed.pipe(createGunzip());
  compressed.once('error', (error) => sql.destroy(error));
  const iterator = (sql as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let gzipError: Error | undefined;
  const next = async (): Promise<Buffer | undefined> => {
    try {
      const step = await iterator.next();
      if (step.done) return undefined;
      inspect?.(step.value);
      return step.value;
    } catch (error) {
      gzipError = error as Error;
      throw error;
    }
  };
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let chunk = await next(); chunk !== undefined; chunk = await next()) yield chunk;
  }
  try {
    return await vetSqlScript(chunks(), vetting);
  } catch (error) {
    if (gzipError === undefined) {
      // The vetting stopped early: read the rest only to learn whether the file is whole.
      try {
        while ((await next()) !== undefined);
      } catch {
        // gzipError is set
      }
    }
    if (gzipError !== undefined) throw new GzipReadError(gzipError.message, { cause: gzipError });
    throw error;
  } finally {
    sql.destroy();
    compressed.destroy();
    await handle.close();
  }
}
