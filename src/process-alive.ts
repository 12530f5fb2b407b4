/**
 * Whether a process with this id exists (one of another account's counts: signalling it is
 * refused, not unknown). A reused id reads as alive, so what is swept on a dead owner's behalf
 * is at worst left for a later run, never taken from a live one.
 *
 * @example
 * if (!isProcessAlive(pid)) await rm(partialFileOf(pid)) // its writer has ended
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
