/**
 * An AbortSignal that fires on the first Ctrl-C (SIGINT) or SIGTERM, so a long command can
 * stop its child programs and remove its temporary files before it exits with an error; a
 * second signal exits at once.
 *
 * @example
 * await backupDatabase({ ...options, signal: interruptSignal() })
 */
export function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\n${name}: stopping and cleaning up (again to quit at once)\n`);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}
