/**
 * Human-readable size, in binary units.
 *
 * @example
 * formatBytes(3_565_158) // '3.4 MB'
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Returns a function to call with the bytes done so far; it logs at most every
 * `intervalMs` (default 2 s), so a long copy shows it is moving without flooding the log.
 *
 * @example
 * const report = byteProgress('downloading', 52_428_800, console.error)
 * report(10_485_760) // "downloading: 10 MB of 50 MB (20%)"
 */
export function byteProgress(
  what: string,
  total: number | undefined,
  log: (line: string) => void,
  intervalMs = 2_000,
): (bytes: number) => void {
  let last = Date.now();
  return (bytes) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
    const share = total ? ` of ${formatBytes(total)} (${Math.floor((bytes / total) * 100)}%)` : '';
    log(`${what}: ${formatBytes(bytes)}${share}`);
  };
}
