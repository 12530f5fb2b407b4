import { ConfigError } from '../errors.js';
import { maxDurationMs } from './duration.js';

/**
 * A duration a caller passes as an option (`serverStallTimeoutMs`, …), in whole milliseconds,
 * or a `ConfigError` naming the option: a value a timer cannot hold (NaN, Infinity, more than
 * about 24.8 days) would make Node fire it after 1 ms, and what it bounds would be given up on
 * (or looked at) at once, again and again.
 *
 * @example optionMs('serverStallTimeoutMs', options.serverStallTimeoutMs ?? 60_000) // 60000
 */
export function optionMs(name: string, value: number): number {
  // Node fires a timer longer than maxDurationMs (or Infinity, or NaN) after 1 ms.
  if (!Number.isFinite(value) || value < 1 || value > maxDurationMs) {
    throw new ConfigError(name, `${name} must be a number of milliseconds from 1 to ${maxDurationMs}, got ${value}`);
  }
  return Math.round(value);
}
