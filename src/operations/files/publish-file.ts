import { link, open, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Gives a finished, fsynced temporary file its final name without ever replacing an
 * existing file (a hard link fails when the name is taken, where rename would overwrite),
 * then fsyncs the folder so the new name survives a crash. Throws `EEXIST` when the final
 * name is taken; the temporary file is then left for the caller to remove.
 *
 * @example
 * await publishFile('backups/.x.dump.1234.tmp', 'backups/x.dump')
 */
export async function publishFile(temporary: string, final: string): Promise<void> {
  await link(temporary, final);
  await unlink(temporary);
  await fsyncFolder(path.dirname(final));
}

/**
 * Flushes a folder's entries (new, renamed or removed names) to disk.
 *
 * @example
 * await fsyncFolder('backups') // after deleting old backups
 */
export async function fsyncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
