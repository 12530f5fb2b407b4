import { spawn } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';
import { packageRoot } from '../../src/package-root.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

// The npm scripts' entry, bundled once per test run by the global setup.
function entryPath(): string {
  return path.join(inject('cliDir'), 'dev.mjs');
}

// Tests name commands after their npm scripts (db:backup is 'db-backup'); the entry takes
// the sub-command ('backup').
function subcommand(command: string): string {
  return command.replace(/^db-/, '');
}

/** Runs one of the npm scripts' commands (`migrate`, `db-setup`, …) as `npm run` would, in its own process. */
export function runCli(
  command: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = {},
  account: { uid?: number; gid?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entryPath(), subcommand(command), ...args], {
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
  const line = [process.execPath, entryPath(), subcommand(command), ...args].map(quote).join(' ');
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
