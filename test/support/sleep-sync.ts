/**
 * Blocks the thread for `ms` milliseconds, for clean-up that must finish inside a synchronous
 * 'exit' listener, where no timer fires.
 *
 * @example
 * while (isProcessAlive(pid) && Date.now() < deadline) sleepSync(20)
 */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
