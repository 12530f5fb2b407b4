import { lstatSync } from 'node:fs';
import { isProcessAlive } from '../../src/process-alive.js';

/**
 * Whether `path`, named after the process `pid` that made it, was left by a run that has
 * ended and is this account's to clear away: the next run's test for a killed run's folders
 * and bundles. Another account's (root's, say) is never this run's to remove.
 *
 * @example
 * if (leftByEndedRun(folder, Number(match[1]))) removeRunFolder(folder)
 */
export function leftByEndedRun(path: string, pid: number): boolean {
  if (isProcessAlive(pid)) return false;
  try {
    return !process.getuid || lstatSync(path).uid === process.getuid();
  } catch {
    return false; // Gone meanwhile.
  }
}
