import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/**
 * Opens a backup (or the `.sha256` beside it) for reading without waiting on what is no file (a FIFO with no writer would
 * hold the open for ever, whatever the signal: the open blocks a threadpool thread, which no
 * abort can free), and refuses anything but a regular file (an error whose `code` is
 * `ENOTFILE`): its handle, and what the file system says of it. Whoever reads a backup opens
 * it here, and reads through the handle, never the path again.
 *
 * @example
 * const { handle, info } = await openBackupFile('/var/backups/kw.dump')
 */
export async function openBackupFile(file: string): Promise<{ handle: FileHandle; info: Stats }> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw Object.assign(new Error(`${file} is not a file`), { code: 'ENOTFILE' });
    return { handle, info };
  } catch (error) {
    await handle.close();
    throw error;
  }
}
