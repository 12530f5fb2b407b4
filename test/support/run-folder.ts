import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isProcessAlive } from './process-alive.js';
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

function ps(args: string[]): string {
  return execFileSync('ps', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

// The run's programs, other than this process, whose command line names a path inside
// `folder`: a test server's postmaster (`postgres -D <folder>/…/data`), a PgBouncer or sshd by
// its configuration file, a command given a backup there. PostgreSQL's backends rename
// themselves and go with their postmaster. `ps` rather than /proc, for macOS too; -ww, or a
// COLUMNS in the environment would cut the lines short of the folder.
function processesIn(folder: string): FolderProcess[] {
  const inside = `${folder}${path.sep}`;
  let listing: string;
  try {
    listing = ps(['-A', '-ww', '-o', 'pid=,stat=,args=']);
  } catch (error) {
    // Without ps nothing is stopped here, as before run folders: each server's own stop remains.
    console.warn(`[test run] cannot list processes (ps: ${(error as Error).message}); servers of an interrupted run keep running`);
    return [];
  }
  return listing.split('\n').flatMap((line) => {
    const match = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line);
    // A zombie (stat Z) has ended; only its parent's wait is missing.
    if (!match || match[2]!.startsWith('Z') || !match[3]!.includes(inside)) return [];
    const pid = Number(match[1]);
    if (pid === process.pid) return [];
    // The program by its executable's name, not by the command line's first word: a path
    // with a space in it would split there.
    let program = '';
    try {
      program = path.basename(ps(['-o', 'comm=', '-p', String(pid)]).trim());
    } catch {
      return []; // Ended meanwhile.
    }
    const signal = stopSignals[program];
    return signal ? [{ pid, signal }] : [];
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
 * Removes the run folders in `parent` that this account made and whose run's process has
 * ended (a run killed, or stopped by Ctrl-C before its clean-up finished), stopping the
 * servers still running in them; the folders of runs still going, and other accounts', are
 * left alone. One that cannot be removed is reported and skipped.
 *
 * @example
 * const { folders, processes } = sweepAbandonedRuns(os.tmpdir())
 */
export function sweepAbandonedRuns(parent: string): { folders: string[]; processes: number } {
  const folders: string[] = [];
  let processes = 0;
  for (const entry of readdirSync(parent, { withFileTypes: true })) {
    const owner = runFolderPattern.exec(entry.name)?.[1];
    if (!entry.isDirectory() || owner === undefined || isProcessAlive(Number(owner))) continue;
    const folder = path.join(parent, entry.name);
    try {
      // Another account's (root's, say) is not this run's to stop or remove.
      if (process.getuid && lstatSync(folder).uid !== process.getuid()) continue;
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
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  // A signal may end the process without 'exit' (a SIGINT did, in a vitest run writing to a
  // file): clean up, then let the signal do what it would have, unless someone else listens
  // for it too, who then decides.
  const onSignal = (signal: NodeJS.Signals) => {
    close();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const close = () => {
    if (!open) return;
    open = false;
    process.off('exit', close);
    for (const signal of signals) process.off(signal, onSignal);
    if (previousTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmpdir;
    removeRunFolder(folder);
  };
  process.once('exit', close);
  for (const signal of signals) process.once(signal, onSignal);
  return { path: folder, close };
}
