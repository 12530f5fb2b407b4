import { type ChildProcess, spawn } from 'node:child_process';
import { packageRoot } from '../../package-root.js';
import { killProcessTree, signalProcessTree } from '../../process-tree.js';
import { keptOutput } from '../files/kept-output.js';
import type { PgTool } from './pg-tools.js';

/** A running PostgreSQL client program and how it ended. */
export interface PgToolProcess {
  child: ChildProcess;
  /** Resolves when the program has exited and its stderr is read; never rejects. */
  exited: Promise<PgToolExit>;
  /**
   * Ends the program: SIGTERM, with SIGCONT so that a stopped one (Ctrl-Z, a debugger) acts on
   * it, and SIGKILL if it has not exited {@link stopGraceMs} later. What aborting `signal` does.
   */
  stop(): void;
}

/** How long a program told to stop has before it is killed. */
export const stopGraceMs = 2_000;

// What of a program's stderr is kept: its first lines (what went wrong first) and its last.
const stderrBounds = { head: 32_768, tail: 32_768 };

/** How a program ended, with what it wrote to stderr (its first and last 32 KiB, where it wrote more). */
export interface PgToolExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Set when the program could not be started at all (ENOENT, EACCES). */
  spawnError?: Error;
}

/** Options of {@link spawnPgTool}. */
export interface SpawnPgToolOptions {
  /** Variables for the program only (the password among them); added to `process.env`. */
  env?: Record<string, string>;
  /**
   * stdin (a file descriptor hands the program a file directly, also through
   * `docker compose exec -T`), stdout; stderr is always piped and collected. Default: both ignored.
   */
  stdio?: ['ignore' | 'pipe' | number, 'ignore' | 'pipe'];
  /** Receives each stderr line as it arrives (for progress). */
  onStderrLine?: (line: string) => void;
  /** Aborting stops the program (Ctrl-C in the CLI), as {@link PgToolProcess.stop} does. */
  signal?: AbortSignal;
}

// libpq variables that choose the server. The arguments (`libpqConnection`) name host,
// port, user and database explicitly, as pg resolves them; these would still redirect a
// program (`PGHOSTADDR` and a service's hostaddr win over --host) where pg, which ignores
// them, would not go: the backup's version probe and pg_dump would see different servers.
const routingVariables = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGSERVICE', 'PGSERVICEFILE'];

/**
 * Starts a PostgreSQL client program found by `findPgTool`. For a program inside the
 * docker-compose container the variables are handed over by name (`-e PGPASSWORD`), so
 * their values stay out of every command line there too.
 *
 * @example
 * const { child, exited } = spawnPgTool(pgDump, ['--format=custom', ...connection.args], { env: connection.env, stdio: ['ignore', 'pipe'] })
 */
export function spawnPgTool(tool: PgTool, args: string[], options: SpawnPgToolOptions = {}): PgToolProcess {
  const variables = options.env ?? {};
  const [file, ...leading] = tool.command;
  const commandArgs = tool.inContainer
    ? [...leading.slice(0, 3), ...Object.keys(variables).flatMap((name) => ['-e', name]), ...leading.slice(3), ...args]
    : [...leading, ...args];
  const inherited = { ...process.env };
  for (const name of routingVariables) delete inherited[name];
  const child = spawn(file!, commandArgs, {
    env: { ...inherited, ...variables, LC_MESSAGES: 'C' },
    stdio: [...(options.stdio ?? ['ignore', 'ignore']), 'pipe'],
    ...(tool.inContainer ? { cwd: packageRoot() } : {}),
  });
  // A stopped program never acts on SIGTERM (spawn's own `signal` sends that alone): Ctrl-C on a
  // backup whose pg_dump was stopped printed that it was cleaning up, and then waited for ever.
  // The program's own children too: PG_DUMP may name a wrapper that runs the program without
  // `exec` (a shell script, `sudo -u`), and a program that outlived its wrapper's end held the
  // pipes open, so 'close' never came (an audit's stalled backup still waited at 90 s, its
  // server session holding 167 locks). Past the grace, the pipes are let go of as well.
  let running = true;
  let killing: NodeJS.Timeout | undefined;
  const stop = () => {
    if (!running) return;
    signalProcessTree(child, 'SIGTERM');
    signalProcessTree(child, 'SIGCONT');
    killing ??= setTimeout(() => running && killProcessTree(child), stopGraceMs).unref();
  };
  const { signal } = options;
  if (signal?.aborted) queueMicrotask(stop);
  else signal?.addEventListener('abort', stop, { once: true });
  const exited = new Promise<PgToolExit>((resolve) => {
    // pg_restore reports on a backup, which is untrusted input, and any program's stderr is as
    // long as it likes: kept within bounds, and so is the line it is still writing.
    const stderr = keptOutput(stderrBounds);
    let pending = '';
    // The line being written went past the bound: its start is kept, the rest up to its end dropped.
    let cut = false;
    let spawnError: Error | undefined;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr.add(chunk);
      const lines = chunk.split('\n');
      const last = lines.pop() ?? '';
      for (const line of lines) {
        options.onStderrLine?.(cut ? `${pending} [cut]` : pending + line);
        pending = '';
        cut = false;
      }
      if (!cut) pending += last;
      if (pending.length > stderrBounds.tail) {
        pending = pending.slice(0, stderrBounds.tail);
        cut = true;
      }
    });
    child.on('error', (error) => {
      spawnError = error;
    });
    child.on('close', (code, endedBy) => {
      running = false;
      clearTimeout(killing);
      signal?.removeEventListener('abort', stop);
      if (pending) options.onStderrLine?.(cut ? `${pending} [cut]` : pending);
      resolve({ code, signal: endedBy, stderr: stderr.text(), ...(spawnError ? { spawnError } : {}) });
    });
  });
  return { child, exited, stop };
}

/**
 * The lines of a program's stderr worth showing a person: its errors and hints
 * (`pg_dump: error: …`, `psql:<stdin>:12: ERROR: …`) with libpq's indented continuation
 * lines, without the `--verbose` chatter; the last lines when it printed none of those.
 *
 * @example
 * toolErrorText('pg_dump: dumping contents of table "public.users"\npg_dump: error: query failed: …')
 * // 'pg_dump: error: query failed: …'
 */
export function toolErrorText(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trimEnd()).filter(Boolean);
  const kept: string[] = [];
  let keeping = false;
  for (const line of lines) {
    // DETAIL ("Failing row contains (…)"), LINE n (the statement's text) and CONTEXT can
    // repeat row values, password hashes among them: never shown, continuation lines neither.
    if (/(^|: )(detail|DETAIL|LINE \d+|CONTEXT)(:|\s)/.test(line)) keeping = false;
    else if (/(^|: )(error|fatal|hint|ERROR|FATAL|HINT)(:|\s)/.test(line)) keeping = true;
    else if (!/^\s/.test(line)) keeping = false;
    if (keeping) kept.push(line);
  }
  return (kept.length > 0 ? kept : lines.slice(-5)).join('\n');
}
