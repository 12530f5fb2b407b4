import { existsSync } from 'node:fs';
import { inCi } from './in-ci.js';

/**
 * Whether these programs exist, for `describe.skipIf(!…)`. A developer without them gets
 * skipped tests; CI (CI set) gets a failing test file instead, because a green run that
 * skipped the operations tests would prove nothing. .ci/run installs them.
 */
export function toolsAvailable(programs: string[], purpose: string): boolean {
  const missing = programs.filter((program) => !existsSync(program));
  if (missing.length === 0) return true;
  if (inCi()) {
    throw new Error(`${purpose} needs ${missing.join(', ')}, which CI must install (see .ci/run)`);
  }
  return false;
}
