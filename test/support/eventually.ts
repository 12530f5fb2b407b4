import { performance } from 'node:perf_hooks';

// The real setTimeout, taken when the module loads: a test that fakes timers (vi.useFakeTimers)
// still waits here in real time, rather than never, or moving its fake clock on.
const realSetTimeout = globalThis.setTimeout;

/**
 * Polls `check` until it holds, failing after `timeoutMs` with a message naming `what`: for
 * waiting on another connection's state (a lock wait, a refilled pool) without fixed sleeps.
 */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what = 'the condition holds',
  { timeoutMs = 10_000, intervalMs = 10 } = {},
): Promise<void> {
  // A monotonic deadline: a test that fakes or steps Date must not make the wait endless.
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => realSetTimeout(resolve, intervalMs));
  }
}
