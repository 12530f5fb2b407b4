import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** What {@link writeStreamToFile} wrote. */
export interface WrittenFile {
  bytes: number;
  /** SHA-256 of what was written, in hex. */
  sha256: string;
}

/**
 * Writes a stream into a new file (created exclusively, readable by the owner only: backups
 * hold password hashes), hashing and counting the bytes on the way, then fsyncs it so the
 * content is on disk before anyone renames it to a final name. With `limit`, the write fails
 * with `limit.error()` before it writes a byte past `limit.bytes`. On failure the caller
 * removes the file.
 *
 * @example
 * const { bytes, sha256 } = await writeStreamToFile(pgDump.stdout, 'backups/.x.dump.tmp', { onBytes: (n) => progress(n) })
 */
export async function writeStreamToFile(
  source: Readable,
  file: string,
  options: { onBytes?: (bytes: number) => void; signal?: AbortSignal; limit?: { bytes: number; error: () => Error } } = {},
): Promise<WrittenFile> {
  const limit = options.limit;
  const hash = createHash('sha256');
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      // Checked before the chunk is written: a source that says how much it sends and then
      // sends without end must not fill the disk.
      if (limit && bytes + chunk.length > limit.bytes) {
        callback(limit.error());
        return;
      }
      hash.update(chunk);
      bytes += chunk.length;
      options.onBytes?.(bytes);
      callback(null, chunk);
    },
  });
  await pipeline(
    source,
    counter,
    createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    options.signal ? { signal: options.signal } : {},
  );
  // fsync works on the file, not the descriptor: a second one flushes what the stream wrote.
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}
