import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatDuration } from '../db/duration.js';
import { type BlockingSession, describeBlockingSessions } from '../blocking-session.js';
import type { ConnectionError } from '../errors.js';
import type { BlockerMonitor } from './lock-blockers.js';
import type { LockWaitHeader } from './migration-script.js';

/**
 * How a migration waits for its locks. An `ALTER TABLE` queued for its ACCESS EXCLUSIVE lock
 * behind a long reader makes every later query of that table queue behind it, so each
 * attempt waits at most a short `lock_timeout` and then rolls back, letting the traffic
 * through, pauses, and tries again with a longer one (as GitLab's lock retries do), until the
 * total budget is spent. No attempt ever waits without a `lock_timeout`.
 */
export interface LockWaitPolicy {
  /** `lock_timeout` of the first attempt (default 100 ms); doubled each attempt up to `attemptMs`. */
  firstAttemptMs: number;
  /**
   * The longest `lock_timeout` of one attempt (default 1 s): the longest that queries of the
   * tables a migration alters may queue behind it. Keep it below the services'
   * `DB_LOCK_TIMEOUT` (2 s), or their queued calls fail first.
   */
  attemptMs: number;
  /** The whole budget, attempts and pauses together (default 10 min); then `MigrationBlockedError`. */
  totalMs: number;
  /** Pause after the first failed attempt (default 200 ms); doubled each time up to `maxPauseMs`. */
  firstPauseMs: number;
  /** The longest pause between two attempts (default 5 s). */
  maxPauseMs: number;
}

/** The defaults of {@link LockWaitPolicy}. */
export const defaultLockWait: LockWaitPolicy = {
  firstAttemptMs: 100,
  attemptMs: 1_000,
  totalMs: 10 * 60_000,
  firstPauseMs: 200,
  maxPauseMs: 5_000,
};

/**
 * The policy of one file: the run's, with what its `-- migrate:lock-wait` header sets.
 *
 * @example lockWaitOf(defaultLockWait, { attemptMs: 30_000 }) // attempts up to 30 s, 10 min in total
 */
export function lockWaitOf(run: LockWaitPolicy, header: LockWaitHeader | undefined): LockWaitPolicy {
  const attemptMs = header?.attemptMs ?? run.attemptMs;
  const totalMs = header?.totalMs ?? Math.max(run.totalMs, attemptMs);
  return { ...run, attemptMs: Math.min(attemptMs, totalMs), firstAttemptMs: Math.min(run.firstAttemptMs, attemptMs), totalMs };
}

/** `attempt=1s total=10min`, as a header writes it. */
export function describeLockWait(policy: LockWaitPolicy): string {
  return `attempt=${formatDuration(policy.attemptMs)} total=${formatDuration(policy.totalMs)}`;
}

/** What {@link withLockRetries} hands each attempt. */
export interface LockAttempt {
  /** 1, 2, … */
  number: number;
  /** The attempt's `lock_timeout`, in milliseconds. */
  lockTimeoutMs: number;
  /** Call with the attempt's server process once known, to have its blockers watched. */
  watch(pid: number): void;
}

/** What the last attempt saw when the budget ran out. */
export interface LockWaitExhausted {
  attempts: number;
  waitedMs: number;
  blockers: BlockingSession[];
  /** The attempt's error (SQLSTATE 55P03, or the migration error that carries it). */
  error: unknown;
}

export interface LockRetryOptions {
  policy: LockWaitPolicy;
  monitor: BlockerMonitor;
  /** Told of every failed attempt (stderr by default). */
  warn: (line: string) => void;
  /** What is waiting, for the report: `20990101_x.up.sql` or `20990101_x.up.sql line 3`. */
  what: string;
  /** Undoes a failed attempt before the next (ROLLBACK for a transactional file). */
  undo: () => Promise<void>;
  /** The error to throw when the budget is spent. */
  exhausted: (outcome: LockWaitExhausted) => Error;
  /**
   * Also tries again after a deadlock (40P01) that ended the attempt: for work that takes many
   * locks in one go (a restore's tables) while other transactions take them one by one.
   */
  retryDeadlocks?: boolean | undefined;
  /**
   * Ends a pause between two attempts at once when aborted, rejecting with the signal's
   * reason: a restore interrupted by Ctrl-C while it waits for its tables.
   */
  signal?: AbortSignal | undefined;
  /**
   * Told when the monitor finds the attempt's session can no longer be heard (see
   * `BlockerMonitor.watch`): close the attempt's connection with the error, which fails the
   * attempt, rather than wait for an answer that a silent network never brings.
   */
  silent?: ((error: ConnectionError) => void) | undefined;
}

// 55P03 from lock_timeout (or a NOWAIT in the migration), raw or as the cause of a migration
// error; and 40P01 where the work asks for it.
function isLockWait(error: unknown, retryDeadlocks: boolean): boolean {
  const code = (value: unknown) => (value as { code?: unknown } | null)?.code;
  const codes = [code(error), code((error as { cause?: unknown } | null)?.cause)];
  return codes.includes('55P03') || (retryDeadlocks && codes.includes('40P01'));
}

// The first attempt opens no watching connection: most lock waits end within it.
function describeBlockers(blockers: readonly BlockingSession[], watched: boolean): string {
  return watched ? describeBlockingSessions(blockers) : 'blocking sessions are watched from the next attempt on';
}

/**
 * Runs `attempt` until it gets its locks: each try under a `lock_timeout` that starts short
 * and grows, a failed one undone, reported (with the sessions that blocked it) and followed
 * by a pause, until the policy's total budget is spent; then `exhausted`'s error. Any other
 * failure ends the retries at once.
 *
 * @example
 * await withLockRetries({ policy, monitor, warn, what: file, undo: rollback, exhausted: (o) => new MigrationBlockedError(…) },
 *   async ({ lockTimeoutMs, watch }) => { watch(await begin(lockTimeoutMs)); await runScript() })
 */
export async function withLockRetries<T>(options: LockRetryOptions, attempt: (lock: LockAttempt) => Promise<T>): Promise<T> {
  const { policy } = options;
  const started = performance.now();
  // Watching takes a connection of its own, opened only once there is contention: when the
  // first attempt runs out of lock time (ready for the second), or at once for a statement
  // that waits in one attempt. An attempt is sampled four times, so that even a short one is
  // seen waiting.
  const singleAttempt = policy.firstAttemptMs >= policy.totalMs;
  // A short attempt can end before a sample lands; the blockers last seen are still the best guess.
  let lastSeen: BlockingSession[] = [];
  for (let number = 1; ; number++) {
    const elapsed = performance.now() - started;
    const step = Math.min(policy.attemptMs, policy.firstAttemptMs * 2 ** (number - 1));
    const lockTimeoutMs = Math.max(1, Math.round(Math.min(step, policy.totalMs - elapsed)));
    let watching: ReturnType<BlockerMonitor['watch']> | undefined;
    const watched = number > 1 || singleAttempt;
    const watch = (pid: number) => {
      if (watched) watching ??= options.monitor.watch(pid, Math.min(1_000, Math.max(20, Math.floor(lockTimeoutMs / 4))), options.silent);
    };
    try {
      const result = await attempt({ number, lockTimeoutMs, watch });
      await watching?.stop(false);
      return result;
    } catch (error) {
      const lockWait = isLockWait(error, options.retryDeadlocks === true);
      const sampled = (await watching?.stop(lockWait)) ?? [];
      if (!lockWait) throw error;
      const blockers = sampled.length > 0 ? sampled : lastSeen;
      lastSeen = blockers;
      await options.undo();
      const waitedMs = Math.round(performance.now() - started);
      const pauseMs = Math.min(policy.maxPauseMs, policy.firstPauseMs * 2 ** (number - 1));
      if (waitedMs + pauseMs >= policy.totalMs) {
        options.warn(
          `${options.what}: attempt ${number} waited ${formatDuration(lockTimeoutMs)} for its locks, ${describeBlockers(blockers, watched)}; ` +
            `rolled back, and the lock budget (${describeLockWait(policy)}) is spent`,
        );
        throw options.exhausted({ attempts: number, waitedMs, blockers, error });
      }
      options.warn(
        `${options.what}: attempt ${number} waited ${formatDuration(lockTimeoutMs)} for its locks, ${describeBlockers(blockers, watched)}; ` +
          `rolled back so that queries queued behind it go on, trying again in ${formatDuration(pauseMs)} ` +
          `(${(waitedMs / 1000).toFixed(1)} s of ${formatDuration(policy.totalMs)} spent)`,
      );
      options.monitor.connect();
      await sleep(pauseMs, undefined, options.signal ? { signal: options.signal } : {}).catch((error: unknown) => {
        options.signal?.throwIfAborted();
        throw error;
      });
    }
  }
}
