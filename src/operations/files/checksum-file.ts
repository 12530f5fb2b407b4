import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ChecksumMismatchError } from '../../errors.js';
import { openBackupFile } from './open-backup-file.js';

/** What a `.sha256` file beside a backup records. */
export interface ChecksumRecord {
  sha256: string;
  /** The file name the checksum was made for, as written in the `.sha256` file. */
  fileName: string;
}

/**
 * The `.sha256` file that belongs beside `file`.
 *
 * @example
 * checksumPathOf('backups/x.dump') // 'backups/x.dump.sha256'
 */
export function checksumPathOf(file: string): string {
  return `${file}.sha256`;
}

/**
 * The SHA-256 of a file's content, in hex, read as a stream (backups can be large). Only a
 * regular file is read, opened without waiting (see {@link openBackupFile}): a FIFO put in its
 * place held the open for ever, and the signal could not end it.
 *
 * @example
 * await sha256OfFile('backups/kennwilliamson_production_20250914T134643.512Z.dump') // '9f86d0…'
 */
export async function sha256OfFile(file: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const { handle } = await openBackupFile(file);
  try {
    const hash = createHash('sha256');
    await pipeline(handle.createReadStream({ start: 0, autoClose: false }), hash, options.signal ? { signal: options.signal } : {});
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/**
 * Reads the `.sha256` file beside `file`, in `sha256sum` format (`<hex>  <name>`); returns
 * undefined when there is none. A malformed one is an error, not "no checksum".
 *
 * @example
 * await readChecksumFile('backups/x.dump') // { sha256: '9f86d0…', fileName: 'x.dump' }
 */
export async function readChecksumFile(file: string): Promise<ChecksumRecord | undefined> {
  const text = await readChecksumText(file);
  if (text === undefined) return undefined;
  return parseChecksumText(text, checksumPathOf(file));
}

// One sha256sum line: 64 hex digits, two characters and a path (at most 4096 bytes on Linux).
const checksumTextLimit = 8192;
// Twice the limit, a power of two: a file of /proc such as /proc/self/pagemap answers only
// reads in whole 8-byte entries, and a read of limit + 1 bytes got EINVAL there, not a refusal
// that says why.
const checksumReadSize = 2 * checksumTextLimit;

/**
 * The text of the `.sha256` file beside `file`, or undefined where there is none, read only
 * from a small regular file, and never more of it than a sha256sum line may hold: a FIFO there
 * blocked the read for ever, and the process's exit with it (Ctrl-C did not end a restore or a
 * download then), a device such as /dev/zero read without end, and so did a link to
 * /proc/self/pagemap, a regular file whose size says 0. Anything else is refused, saying which it is.
 *
 * @example
 * await readChecksumText('backups/x.dump') // '9f86d0…  x.dump\n'
 */
export async function readChecksumText(file: string): Promise<string | undefined> {
  // As the backup beside it is opened: without waiting on a FIFO, and only a regular file. A
  // symlink is followed (a folder of links to where backups are kept is an ordinary setup):
  // whatever it leads to is read within the bound below, so a link to /proc costs a refusal.
  const opened = await openBackupFile(checksumPathOf(file)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    // Said after the file's name by the callers: `cannot read x.dump.sha256 (not a regular file)`.
    if (error.code === 'ENOTFILE') throw new Error('not a regular file');
    throw error;
  });
  if (opened === undefined) return undefined;
  const { handle, info } = opened;
  try {
    if (info.size > checksumTextLimit) throw new Error(`${info.size} bytes, more than a sha256sum line`);
    // The size is not the bound: a file of /proc says 0 and may read without end
    // (/proc/self/pagemap: half a gigabyte in memory before a RangeError), and a file may grow.
    const buffer = Buffer.alloc(checksumReadSize);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) return buffer.toString('utf8', 0, length);
      length += bytesRead;
      if (length > checksumTextLimit) {
        throw new Error(`more than ${checksumTextLimit} bytes though its size says ${info.size}, more than a sha256sum line`);
      }
    }
  } finally {
    await handle.close();
  }
}

/**
 * Parses `sha256sum` output for one file: `<64 hex>  <name>` (or ` *<name>` in binary mode);
 * `source` names the file in the error for anything else.
 *
 * @example
 * parseChecksumText('9f86d0…  x.dump\n', 'x.dump.sha256') // { sha256: '9f86d0…', fileName: 'x.dump' }
 */
export function parseChecksumText(text: string, source: string): ChecksumRecord {
  const match = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(text.trim());
  if (!match) throw new ChecksumMismatchError(source, 'a sha256sum line', 'an unreadable .sha256 file');
  return { sha256: match[1]!.toLowerCase(), fileName: match[2]! };
}

/**
 * The `sha256sum` line for a file, so `sha256sum -c` can check it too.
 *
 * @example
 * checksumLine('9f86d0…', '/srv/backups/x.dump') // '9f86d0…  x.dump\n'
 */
export function checksumLine(sha256: string, file: string): string {
  return `${sha256}  ${path.basename(file)}\n`;
}

/**
 * Writes the `.sha256` file beside `file` in `sha256sum` format, through a temporary name,
 * fsync and rename, so a crash never leaves a half-written checksum.
 *
 * @example
 * await writeChecksumFile('backups/x.dump', '9f86d0…') // backups/x.dump.sha256: "9f86d0…  x.dump"
 */
export async function writeChecksumFile(file: string, sha256: string): Promise<string> {
  const target = checksumPathOf(file);
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(checksumLine(sha256, file));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return target;
}

/**
 * Checks `file` against the `.sha256` beside it. Returns the checksum record, or undefined
 * when there is no `.sha256`; throws {@link ChecksumMismatchError} when the content or the
 * recorded file name differs.
 *
 * @example
 * await verifyChecksumFile('backups/x.dump') // throws ChecksumMismatchError on a damaged copy
 */
export async function verifyChecksumFile(
  file: string,
  options: { actualSha256?: string; expectedName?: string; signal?: AbortSignal } = {},
): Promise<ChecksumRecord | undefined> {
  const record = await readChecksumFile(file);
  if (!record) return undefined;
  const actual = options.actualSha256 ?? (await sha256OfFile(file, options));
  const expectedName = options.expectedName ?? path.basename(file);
  if (record.sha256 !== actual || path.basename(record.fileName) !== expectedName) {
    throw new ChecksumMismatchError(expectedName, record.sha256, actual);
  }
  return record;
}
