// Ctrl-C, a stop asked for, and a hang-up (left alone, it ended a command at once, with no
// clean-up at all).
export const interruptSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * An AbortSignal that fires on the first Ctrl-C (SIGINT), SIGTERM or SIGHUP (the terminal or
 * SSH session that ran it went away), so a long command can stop its child programs, end its
 * server session and remove its temporary files before it exits with an error; a second
 * signal exits at once.
 *
 * @example
 * await backupDatabase({ ...options, signal: interruptSignal() })
 */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    // After a hang-up the terminal is gone, and a write to it fails (EIO): the clean-up must
    // not end there, with the restore's server session left holding the tables.
    if (name === 'SIGHUP') {
      for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
    }
    process.stderr.write(`\n${name}: stopping and cleaning up (again to quit at once)\n`);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  for (const signal of interruptSignals) process.on(signal, onSignal);
  return controller.signal;
}
