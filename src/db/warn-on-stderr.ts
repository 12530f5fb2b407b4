/**
 * The library's default report of something a caller should know but that fails nothing (a
 * lost idle connection, a refill retried, a migration's lock wait): one line on stderr, with
 * the error's message only, not its stack.
 *
 * @example warnOnStderr('an idle database connection was lost', error) // [@kennwilliamson/db] an idle database connection was lost: read ETIMEDOUT
 */
export function warnOnStderr(message: string, error?: unknown): void {
  const reason = error === undefined ? '' : `: ${error instanceof Error ? error.message : String(error)}`;
  process.stderr.write(`[@kennwilliamson/db] ${message}${reason}\n`);
}
