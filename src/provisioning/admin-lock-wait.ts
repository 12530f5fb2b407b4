import type * as pg from 'pg';
import { describeBlockingSessions } from '../blocking-session.js';
import { destroyConnection } from '../db/answer-deadline.js';
import { warnOnStderr } from '../db/warn-on-stderr.js';
import { ProvisioningError } from '../errors.js';
import type { BlockerMonitor } from '../migrations/lock-blockers.js';
import { defaultLockWait, type LockRetryOptions } from '../migrations/lock-retries.js';

/** How long an admin's statements wait for their locks, and who is told of each attempt. */
export interface AdminLockWait {
  /** Longest wait in all (default 60 s), in attempts that each wait at most a second, as a migration's do. */
  lockTimeoutMs?: number | undefined;
  /** Told of each attempt that ran out of lock time, with who blocked it (stderr by default). */
  warn?: ((line: string) => void) | undefined;
}

/**
 * The `withLockRetries` options of an admin's work on a database (provisioning it, dropping
 * it): a migration's attempts within `lockTimeoutMs` (60 s by default), each attempt undoing
 * itself, and once the budget is spent a {@link ProvisioningError} that names who held the
 * locks and says that nothing was done.
 *
 * @example
 * await withLockRetries(adminLockRetries(options, monitor, { verb: 'drop', doing: 'dropping', database, nothingWas: 'dropped' }, client), attempt)
 */
export function adminLockRetries(
  wait: AdminLockWait,
  monitor: BlockerMonitor,
  work: { verb: string; doing: string; database: string; nothingWas: string },
  client: pg.ClientBase,
): LockRetryOptions {
  return {
    // The monitor found the attempt's session silent: its answer may never come.
    silent: (error) => destroyConnection(client, error),
    policy: { ...defaultLockWait, totalMs: Math.max(1, Math.round(wait.lockTimeoutMs ?? 60_000)) },
    monitor,
    warn: wait.warn ?? warnOnStderr,
    what: `${work.doing} '${work.database}'`,
    // Each attempt leaves nothing behind: a transaction rolled back, or a statement that did nothing.
    undo: async () => undefined,
    exhausted: ({ attempts, waitedMs, blockers, error }) =>
      new ProvisioningError(
        `could not ${work.verb} the database '${work.database}': gave up waiting for its locks after ${attempts} attempt(s) over ${waitedMs} ms, ` +
          `${describeBlockingSessions(blockers)}; nothing was ${work.nothingWas}. Run it again when the blocking session is done`,
        undefined,
        { cause: error },
      ),
  };
}
