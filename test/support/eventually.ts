import { performance } from 'node:perf_hooks';

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
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
