import { openBackupFile } from '../files/open-backup-file.js';
import { defaultPgRestoreStallTimeoutMs, watchedOutput } from '../files/watched-output.js';
import { spawnPgTool, toolErrorText } from '../pg-tools/pg-tool-process.js';
import type { PgTool } from '../pg-tools/pg-tools.js';
import { type SqlScriptOptions, vetSqlScript } from './sql-script.js';
import { optionMs } from '../../db/option-ms.js';

/** What {@link verifyArchive} read. */
export interface ArchiveContents {
  /** Entries in the archive's table of contents. */
  entries: number;
  /** Tables whose data it holds. */
  tables: number;
  /** Size of the SQL pg_restore makes of it: what a restore runs. */
  sqlBytes: number;
}

const stalledRead = (pgRestore: PgTool, stallTimeoutMs: number) => () =>
  new Error(`pg_restore ${pgRestore.version} wrote nothing for ${stallTimeoutMs / 1000} s while reading the archive (stopped, or stuck reading it); it was stopped`);

// Runs pg_restore with the archive on its stdin (so a pg_restore inside the compose
// container reads it too) and hands its stdout to `read`.
async function pgRestoreRead<T>(
  pgRestore: PgTool,
  file: string,
  args: string[],
  read: (stdout: NodeJS.ReadableStream) => Promise<T>,
  signal: AbortSignal | undefined,
  stallTimeoutMs: number,
): Promise<T> {
  // Without waiting on a FIFO put in the file's place (the open held for ever, whatever the
  // signal), and only a regular file: its descriptor is pg_restore's stdin.
  const { handle } = await openBackupFile(file);
  try {
    const { child, exited, stop } = spawnPgTool(pgRestore, args, {
      stdio: [handle.fd, 'pipe'],
      ...(signal ? { signal } : {}),
    });
    let outputEnded = false;
    child.stdout!.once('end', () => (outputEnded = true));
    const output = watchedOutput(child, stallTimeoutMs, stalledRead(pgRestore, stallTimeoutMs));
    const result = read(output).then(
      (value) => ({ value }),
      (error: unknown) => {
        // Unread output would keep the program (and its 'close') waiting.
        output.destroy();
        child.stdout!.destroy();
        stop();
        return { error };
      },
    );
    const [outcome, exit] = await Promise.all([result, exited]);
    signal?.throwIfAborted();
    if (exit.spawnError) throw new Error(`could not run pg_restore at ${pgRestore.location}: ${exit.spawnError.message}`);
    // pg_restore's own failure first (a cut-off archive also cuts off its SQL), unless its SQL
    // was refused while it was still writing: then its failure (a write to the pipe closed on
    // it, the signal) is the refusal's doing.
    const stoppedHere = 'error' in outcome && !outputEnded;
    if (exit.code !== 0 && exit.code !== null && !stoppedHere) {
      throw new Error(`pg_restore ${pgRestore.version} cannot read it:\n${toolErrorText(exit.stderr)}`);
    }
    if ('error' in outcome) throw outcome.error;
    if (exit.code !== 0) throw new Error(`pg_restore ${pgRestore.version} ended by ${exit.signal}`);
    return outcome.value;
  } finally {
    await handle.close();
  }
}

async function text(stdout: NodeJS.ReadableStream): Promise<string> {
  let all = '';
  for await (const chunk of stdout) all += chunk.toString();
  return all;
}

/**
 * Checks that a custom-format archive reads back whole and would restore: `pg_restore
 * --list` parses its table of contents, then its SQL (`pg_restore --file=-`, which reads and
 * decompresses every data block, which the list alone never touches) goes through the
 * restore's vetting (`vetSqlScript`: PostgreSQL's parse tree of each statement against the
 * allow-list of what pg_dump writes, and `\connect` only to `database`, the one it will be
 * restored into, when given). Throws a {@link RestoreError} when the vetting refuses it, an
 * Error carrying pg_restore's message when it cannot read it.
 *
 * @example
 * const { tables } = await verifyArchive(await findPgTool('pg_restore'), 'backups/x.dump') // 9
 */
export async function verifyArchive(
  pgRestore: PgTool,
  file: string,
  options: SqlScriptOptions & { signal?: AbortSignal | undefined; stallTimeoutMs?: number | undefined } = {},
): Promise<ArchiveContents> {
  const { signal, ...vetting } = options;
  const stallTimeoutMs = optionMs('stallTimeoutMs', options.stallTimeoutMs ?? defaultPgRestoreStallTimeoutMs);
  const list = await pgRestoreRead(pgRestore, file, ['--list'], text, signal, stallTimeoutMs);
  const entries = list.split('\n').filter((line) => /^\d+;/.test(line));
  if (entries.length === 0) throw new Error('pg_restore --list found no entries in it');
  const sqlBytes = await pgRestoreRead(pgRestore, file, ['--file=-', '--no-owner'], (stdout) => vetSqlScript(stdout as AsyncIterable<Buffer>, vetting), signal, stallTimeoutMs);
  return { entries: entries.length, tables: entries.filter((line) => / TABLE DATA /.test(line)).length, sqlBytes };
}
