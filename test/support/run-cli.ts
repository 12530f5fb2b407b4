import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { inject } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { descendantsOf } from '../../src/process-tree.js';
import { shellQuote } from '../../src/shell-quote.js';
import { withoutFetch } from './without-fetch.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

// V8's optimizing tier for WebAssembly is left out of the commands the tests start. A command
// parses SQL with libpg-query's parser, or dumps with pg_dump, compiled to WebAssembly; V8 then
// recompiles them on background threads with TurboFan, and a command that lives a second never
// earns that back: one restore took 0.6 s of CPU with it and 0.3 s without, one backup 1.1 s
// and 0.5 s, and the direct project's files that spawn commands used 20% less CPU (issue 19).
// The code and its results are the same; only the compiler that V8 uses for them differs.
// For the same reason V8 does its compiling and garbage collection on the command's own thread
// (`--single-threaded`) rather than also on helper threads, whose work a short process mostly
// wastes on a busy machine: `--help` took 0.20 s of CPU and 0.14 s with it, a migration with
// nothing to do 0.26 s and 0.21 s, a backup 0.54 s and 0.49 s. Worker threads still run.
// `--no-experimental-fetch` leaves out Node's fetch globals, which no command uses (`--help`
// took 0.16 s of CPU and 0.13 s with it, in three runs of 20; see without-fetch.ts).
// The first two cost something the figures above already include: any V8 flag off its default
// makes V8 reject the code cache of Node's own modules, so loading nine of them (net, crypto,
// child_process, …) took 29 ms instead of 11 ms. Set at run time instead (v8.setFlagsFromString),
// a flag does the same to every module loaded after it.
const nodeFlags = ['--liftoff-only', '--single-threaded', ...withoutFetch];

// Tests name commands after their npm scripts (db:backup is 'db-backup'); the entry takes
// the sub-command ('backup').
function subcommand(command: string): string {
  return command.replace(/^db-/, '');
}

// The arguments for `node` that run a command from the entry the global setup bundled.
function commandArgs(command: string, args: string[]): string[] {
  return [...nodeFlags, path.join(inject('cliDir'), 'dev.mjs'), subcommand(command), ...args];
}

/**
 * Starts one of the npm scripts' commands (`migrate`, `db-backup`, …) in its own process, as
 * `npm run` would, for a test that acts on it while it runs (kills it, watches it wait);
 * {@link cliOutcome} collects what it wrote and its exit code, as {@link runCli} does.
 *
 * @example
 * const child = startCli('migrate', ['--migrations-dir', dir], { MIGRATION_DATABASE_URL: url })
 */
export function startCli(
  command: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  account: { uid?: number; gid?: number } = {},
): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(process.execPath, commandArgs(command, args), {
    ...account,
    cwd: packageRoot(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A started command's exit code and everything it wrote, once it has closed. Call it right
 * after starting the command, so that no output is missed while the test acts on it.
 *
 * @example
 * const child = startCli('db-backup', [], env);
 * const finished = cliOutcome(child);
 * child.kill('SIGINT');
 * const { code, stderr } = await finished;
 */
export function cliOutcome(child: ChildProcessByStdio<Writable | null, Readable, Readable>): Promise<CliResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs one of the npm scripts' commands (`migrate`, `db-setup`, …) as `npm run` would, in its own process. */
export function runCli(
  command: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  account: { uid?: number; gid?: number } = {},
): Promise<CliResult> {
  return cliOutcome(startCli(command, args, env, account));
}

/**
 * Runs a command under a pseudo-terminal (util-linux `script`), typing `input`, for the
 * prompts a command shows only to a person. Output is the terminal's: stdout and stderr mixed.
 * With `typedAfter`, the input is typed once the output holds it (the question on the
 * screen), rather than at once, which the terminal keeps until the command reads it: a Ctrl-C
 * (`\x03`) typed at once reaches the command as SIGINT, typed at the question as a key.
 * `{ signal }` instead of input sends the command's process that signal there (a supervisor's
 * SIGTERM, a hang-up's SIGHUP), typing nothing.
 */
export function runCliInTerminal(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input: string | { signal: NodeJS.Signals },
  typedAfter?: string,
): Promise<CliResult> {
  const line = [process.execPath, ...commandArgs(command, args)].map(shellQuote).join(' ');
  const child = spawn('script', ['--quiet', '--return', '--command', line, '/dev/null'], {
    cwd: packageRoot(),
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const result = cliOutcome(child);
  const give = () => {
    if (typeof input === 'string') return void child.stdin.end(input);
    // The command's node, under script's shell: the one whose arguments name the command.
    const named = descendantsOf(child.pid!).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`dev.mjs\0${subcommand(command)}\0`);
      } catch {
        return false; // gone meanwhile
      }
    });
    // Sent to nobody, the test would wait for its bound with the command still asking.
    if (named.length === 0) {
      child.kill('SIGKILL');
      throw new Error(`runCliInTerminal: no process of ${command} to send ${input.signal} to`);
    }
    for (const pid of named) process.kill(pid, input.signal);
  };
  if (typedAfter === undefined) {
    give();
    return result;
  }
  let shown = '';
  const type = (chunk: Buffer) => {
    shown += chunk.toString();
    if (!shown.includes(typedAfter)) return;
    child.stdout.off('data', type);
    give();
  };
  child.stdout.on('data', type);
  return result;
}
