import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { leftByEndedRun } from './left-by-ended-run.js';
import { onTheWayOut } from './on-the-way-out.js';
import { sleepSync } from './sleep-sync.js';

// A run's folder is named after the process that made it (vitest's own), so that the next run
// can tell one whose run is gone: `kw-run-<pid>-<random>`.
const runFolderPattern = /^kw-run-(\d+)-/;

// The programs a run starts on its folder, and how each is stopped: PostgreSQL by an immediate
// shutdown (SIGQUIT ends its backends and frees its shared memory); the rest are throwaway and
// killed. Anything else that names the folder (a developer's `tail -f` of a server log) is
// not the run's, and stays.
const stopSignals: Record<string, NodeJS.Signals> = {
  postgres: 'SIGQUIT',
  initdb: 'SIGKILL',
  pg_ctl: 'SIGKILL',
  pgbouncer: 'SIGKILL',
  sshd: 'SIGKILL',
  pg_dump: 'SIGKILL',
  pg_restore: 'SIGKILL',
  psql: 'SIGKILL',
  node: 'SIGKILL',
};

interface FolderProcess {
  pid: number;
  signal: NodeJS.Signals;
}

// The run's programs, other than this process, whose command line names a path inside
// `folder`: a test server's postmaster (`postgres -D <folder>/…/data`), a PgBouncer or sshd by
// its configuration file, a command given a backup there. PostgreSQL's backends rename
// themselves and go with their postmaster. A program is known by its executable's name
// (ucomm), not by the command line's first word, which a path with a space would split. `ps`
// rather than /proc, for macOS too; -ww, or a COLUMNS in the environment would cut the lines
// short of the folder.
function processesIn(folder: string): FolderProcess[] {
  const inside = `${folder}${path.sep}`;
  let listing: string;
  try {
    listing = execFileSync('ps', ['-A', '-ww', '-o', 'pid=,stat=,ucomm=,args='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (error) {
    // Without ps nothing is stopped here, as before run folders: each server's own stop remains.
    console.warn(`[test run] cannot list processes (ps: ${(error as Error).message}); servers of an interrupted run keep running`);
    return [];
  }
  return listing.split('\n').flatMap((line) => {
    const match = /^\s*(\d+)\s+(\S+)\s+(\S+)\s+(.*)$/.exec(line);
    // A zombie (stat Z) has ended; only its parent's wait is missing.
    if (!match || match[2]!.startsWith('Z') || !match[4]!.includes(inside)) return [];
    const pid = Number(match[1]);
    const signal = stopSignals[path.basename(match[3]!)];
    return signal && pid !== process.pid ? [{ pid, signal }] : [];
  });
}

/**
 * Stops the run's programs that work in `folder` (see stopSignals: a PostgreSQL by an
 * immediate shutdown, PgBouncer, sshd and the like by SIGKILL), waiting up to 5 s for them to
 * end, and removes the folder. Synchronous, so that an 'exit' listener can run it. Returns how
 * many processes it stopped.
 *
 * @example
 * process.once('exit', () => removeRunFolder(folder))
 */
export function removeRunFolder(folder: string): number {
  const stopped = new Set<number>();
  const deadline = Date.now() + 5_000;
  // Each pass signals what it finds, so that a server a worker was starting meanwhile goes too.
  for (let found = processesIn(folder); found.length > 0 && Date.now() < deadline; found = processesIn(folder)) {
    for (const { pid, signal } of found) {
      try {
        process.kill(pid, signal);
        stopped.add(pid);
      } catch {
        // Ended meanwhile.
      }
    }
    sleepSync(25);
  }
  // A server still ending may add a file while the tree goes: try again, as rm -rf would be.
  rmSync(folder, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  return stopped.size;
}

/**
 * Removes the run folders in `parent` that runs which have ended left (a run killed, or
 * stopped by Ctrl-C before its clean-up finished; see leftByEndedRun), stopping the servers
 * still running in them; the folders of runs still going, and other accounts', are left
 * alone. One that cannot be removed is reported and skipped.
 *
 * @example
 * const { folders, processes } = sweepAbandonedRuns(os.tmpdir())
 */
export function sweepAbandonedRuns(parent: string): { folders: string[]; processes: number } {
  const folders: string[] = [];
  let processes = 0;
  for (const entry of readdirSync(parent, { withFileTypes: true })) {
    const owner = runFolderPattern.exec(entry.name)?.[1];
    const folder = path.join(parent, entry.name);
    if (!entry.isDirectory() || owner === undefined || !leftByEndedRun(folder, Number(owner))) continue;
    try {
      processes += removeRunFolder(folder);
      folders.push(folder);
    } catch (error) {
      console.warn(`[test run] could not remove ${folder}, which an interrupted run left: ${(error as Error).message}`);
    }
  }
  return { folders, processes };
}

/** This run's scratch folder (see {@link openRunFolder}). */
export interface RunFolder {
  path: string;
  /** Removes it with whatever still runs there; safe to call twice. */
  close: () => void;
}

/**
 * Makes this run's scratch folder in os.tmpdir() and points TMPDIR at it, so that every
 * cluster, PgBouncer, sshd, backup and folder that the run, its workers (started after the
 * global set-up) and their commands make through os.tmpdir() lives inside it. Closing it, or
 * this process ending first (Ctrl-C, SIGTERM, SIGHUP, `process.exit`), removes it with what
 * still runs there; a run killed outright (SIGKILL) leaves it to the next, which sweeps it
 * first, saying so.
 *
 * @example
 * const folder = await openRunFolder(); try { … } finally { folder.close() }
 */
export async function openRunFolder(): Promise<RunFolder> {
  const parent = os.tmpdir();
  const swept = sweepAbandonedRuns(parent);
  if (swept.folders.length > 0) {
    const stopped = swept.processes > 0 ? `, stopping ${swept.processes} process(es) still running there` : '';
    console.warn(`[test run] removed ${swept.folders.length} folder(s) that interrupted runs left in ${parent}${stopped}`);
  }
  const folder = await mkdtemp(path.join(parent, `kw-run-${process.pid}-`));
  // The clusters' server runs as the 'postgres' account when this runs as root: let it through.
  await chmod(folder, 0o711);
  const previousTmpdir = process.env.TMPDIR;
  process.env.TMPDIR = folder;
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    stopListening();
    if (previousTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmpdir;
    removeRunFolder(folder);
  };
  const stopListening = onTheWayOut(close);
  return { path: folder, close };
}
