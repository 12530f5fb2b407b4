import { open } from 'node:fs/promises';
import { spawnPgTool, toolErrorText } from './pg-tool-process.js';
import type { PgTool } from './pg-tools.js';

/** What {@link verifyArchive} read. */
export interface ArchiveContents {
  /** Entries in the archive's table of contents. */
  entries: number;
  /** Tables whose data it holds. */
  tables: number;
}

// Runs pg_restore with the archive on its stdin (so a pg_restore inside the compose
// container reads it too) and returns its stdout.
async function pgRestoreRead(pgRestore: PgTool, file: string, args: string[], signal?: AbortSignal): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { child, exited } = spawnPgTool(pgRestore, args, {
      stdio: [handle.fd, 'pipe'],
      ...(signal ? { signal } : {}),
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const exit = await exited;
    signal?.throwIfAborted();
    if (exit.spawnError) throw new Error(`could not run pg_restore at ${pgRestore.location}: ${exit.spawnError.message}`);
    if (exit.code !== 0) throw new Error(`pg_restore ${pgRestore.version} cannot read it:\n${toolErrorText(exit.stderr)}`);
    return stdout;
  } finally {
    await handle.close();
  }
}

/**
 * Checks that a custom-format archive reads back whole: `pg_restore --list` parses its table
 * of contents, then a restore into /dev/null reads and decompresses every data block (the
 * list alone never touches the data). Throws an Error carrying pg_restore's message
 * otherwise.
 *
 * @example
 * const { tables } = await verifyArchive(await findPgTool('pg_restore'), 'backups/x.dump') // 9
 */
export async function verifyArchive(pgRestore: PgTool, file: string, options: { signal?: AbortSignal } = {}): Promise<ArchiveContents> {
  const list = await pgRestoreRead(pgRestore, file, ['--list'], options.signal);
  const entries = list.split('\n').filter((line) => /^\d+;/.test(line));
  if (entries.length === 0) throw new Error('pg_restore --list found no entries in it');
  await pgRestoreRead(pgRestore, file, ['--file=/dev/null'], options.signal);
  return { entries: entries.length, tables: entries.filter((line) => / TABLE DATA /.test(line)).length };
}
