import { interruptSignals } from './interrupt-signal.js';
import { terminalText } from './terminal-text.js';

/**
 * For a command whose work the server rolls back when its connection closes (a migration run,
 * set-up), or that can say what each of its stages leaves (a reset): on Ctrl-C (SIGINT),
 * SIGTERM or SIGHUP, says what that leaves, then exits with 130 at once. Node's own exit said
 * nothing, and an operator could not tell whether a migration was half applied, or a database
 * dropped. `what` may be a function, asked as the command stops.
 *
 * @example exitOnInterrupt('the migration in progress is rolled back by the server and not recorded')
 */
export function exitOnInterrupt(what: string | (() => string)): void {
  const exit = (name: NodeJS.Signals) => {
    // After a hang-up the terminal is gone, and a write to it fails (EIO).
    process.stderr.on('error', () => undefined);
    process.stderr.write(`\n${name}: stopped; ${terminalText(typeof what === 'string' ? what : what())}\n`, () => process.exit(130));
    setTimeout(() => process.exit(130), 500).unref();
  };
  for (const signal of interruptSignals) process.once(signal, exit);
}
