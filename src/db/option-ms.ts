import { ConfigError } from '../errors.js';

// Node's timers take at most 2^31 - 1 ms; a longer one (or Infinity, or NaN) fires after 1 ms.
const longestTimerMs = 2_147_483_647;

/**
 * A duration a caller passes as an option (`serverStallTimeoutMs`, …), in whole milliseconds,
 * or a `ConfigError` naming the option: a value a timer cannot hold (NaN, Infinity, more than
 * about 24.8 days) would make Node fire it after 1 ms, and what it bounds would be given up on
 * (or looked at) at once, again and again.
 *
 * @example optionMs('serverStallTimeoutMs', options.serverStallTimeoutMs ?? 60_000) // 60000
 */
export function optionMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 1 || value > longestTimerMs) {
    throw new ConfigError(name, `${name} must be a number of milliseconds from 1 to ${longestTimerMs}, got ${value}`);
  }
  return Math.round(value);
}
