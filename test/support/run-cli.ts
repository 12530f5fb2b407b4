import { spawn } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';
import { packageRoot } from '../../src/package-root.js';

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
const v8Flags = ['--liftoff-only'];

// Tests name commands after their npm scripts (db:backup is 'db-backup'); the entry takes
// the sub-command ('backup').
function subcommand(command: string): string {
  return command.replace(/^db-/, '');
}

/**
 * The arguments for `node` that run one of the npm scripts' commands from the entry the
 * global setup bundled, for a test that spawns it itself (to kill it, or to watch it wait).
 *
 * @example
 * spawn(process.execPath, commandArgs('migrate', ['--migrations-dir', dir]), { cwd: packageRoot() })
 */
export function commandArgs(command: string, args: string[] = []): string[] {
  return [...v8Flags, path.join(inject('cliDir'), 'dev.mjs'), subcommand(command), ...args];
}

/** Runs one of the npm scripts' commands (`migrate`, `db-setup`, …) as `npm run` would, in its own process. */
export function runCli(
  command: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  account: { uid?: number; gid?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, commandArgs(command, args), {
      ...account,
      cwd: packageRoot(),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs a command under a pseudo-terminal (util-linux `script`), typing `input`, for the
 * prompts a command shows only to a person. Output is the terminal's: stdout and stderr mixed.
 */
export function runCliInTerminal(command: string, args: string[], env: NodeJS.ProcessEnv, input: string): Promise<CliResult> {
  const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  const line = [process.execPath, ...commandArgs(command, args)].map(quote).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['--quiet', '--return', '--command', line, '/dev/null'], {
      cwd: packageRoot(),
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
