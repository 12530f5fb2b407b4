import { ConfigError } from '../errors.js';

// PostgreSQL's own time units for settings such as statement_timeout (less `us`, which no bound
// here needs), so a value reads the same in an environment variable and in postgresql.conf.
const unitMs: Record<string, number> = { ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

const durationPattern = /^(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?$/;

/**
 * The longest duration any bound of the library accepts: 2^31 − 1 ms (about 24.8 days). It is
 * both PostgreSQL's largest `statement_timeout`, `lock_timeout` and
 * `idle_in_transaction_session_timeout` (INT_MAX milliseconds; a larger one fails the login)
 * and the longest delay Node's `setTimeout` honours (a longer one fires after 1 ms, which
 * would retire every connection at once or time a connect out at once).
 */
export const maxDurationMs = 2 ** 31 - 1;

/** Timers and clocks disagree by a millisecond or so: a failure this close to a bound is that bound. */
export const timerSlackMs = 5;

/** How a duration is read, beyond its syntax. */
export interface DurationRule {
  /**
   * What a number without a unit means: milliseconds (`ms`, as PostgreSQL reads
   * `statement_timeout`, the default) or seconds (`s`, the older `DB_ACQUIRE_TIMEOUT` and
   * `MIGRATION_LOCK_TIMEOUT`).
   */
  bare?: 'ms' | 's';
  /**
   * Bare numbers (in the `bare` unit) this bound plausibly means, `[lowest, highest]`. A bare
   * number outside is refused as ambiguous, asking for a unit: `DB_CONNECT_TIMEOUT=30` would be
   * 30 ms, which breaks every login, and was most likely meant as `30s`.
   */
  plausibleBare?: readonly [number, number];
  /** Shortest accepted, in milliseconds (default 1). */
  minMs?: number;
  /** Longest accepted, in milliseconds (default {@link maxDurationMs}). */
  maxMs?: number;
}

/**
 * Reads a duration as PostgreSQL reads `statement_timeout`: a number with a unit (`ms`, `s`,
 * `min`, `h`, `d`: `500ms`, `5s`, `1.5s`, `2min`), or a bare number in the rule's bare unit
 * (milliseconds unless told). The result is whole milliseconds from `minMs` to `maxMs`
 * (at most {@link maxDurationMs}). A bad value is a {@link ConfigError} naming `variable`
 * (the environment variable or option it came from).
 *
 * @example
 * parseDuration('DB_STATEMENT_TIMEOUT', '5s') // 5000
 * parseDuration('DB_LOCK_TIMEOUT', '1500') // 1500
 * parseDuration('DB_ACQUIRE_TIMEOUT', '30', { bare: 's' }) // 30000
 * parseDuration('DB_CONNECT_TIMEOUT', '30', { plausibleBare: [1000, Infinity] }) // ConfigError: … write '30s' …
 */
export function parseDuration(variable: string, raw: string | number, rule: DurationRule = {}): number {
  const text = String(raw).trim();
  const bare = rule.bare ?? 'ms';
  const match = durationPattern.exec(text);
  const ms = match ? Number(match[1]) * unitMs[match[2] ?? bare]! : Number.NaN;
  if (!Number.isSafeInteger(Math.round(ms)) || Math.round(ms) !== ms) {
    throw new ConfigError(
      variable,
      `${variable} must be a duration in whole milliseconds: a number with a unit (ms, s, min, h, d), e.g. 5s or 500ms, ` +
        `or a bare number of ${bare === 's' ? 'seconds' : 'milliseconds'}; got '${text}'`,
    );
  }
  const minMs = rule.minMs ?? 1;
  // Below the least bound whatever its unit (0 is PostgreSQL's "no bound"): say so, rather
  // than ask for a unit that would be refused all the same.
  if (ms < minMs) throw new ConfigError(variable, `${variable} must be at least ${formatDuration(minMs)}, got '${text}'`);
  if (match![2] === undefined && rule.plausibleBare !== undefined) {
    const value = Number(match![1]);
    const [lowest, highest] = rule.plausibleBare;
    if (value < lowest || value > highest) {
      const other = bare === 's' ? 'ms' : 's';
      throw new ConfigError(
        variable,
        `${variable}=${text} is ambiguous: a bare number here is ${bare === 's' ? 'seconds' : 'milliseconds'}, and ` +
          `${formatDuration(ms)} is unlikely to be meant. Write the unit: '${text}${other}' or '${text}${bare}'`,
      );
    }
  }
  const maxMs = Math.min(rule.maxMs ?? maxDurationMs, maxDurationMs);
  if (ms > maxMs) throw new ConfigError(variable, tooLong(variable, text, maxMs));
  return ms;
}

/** The refusal of a duration over `maxMs` (for a value given in milliseconds, outside parseDuration). */
export function tooLong(variable: string, given: string, maxMs = maxDurationMs): string {
  return (
    `${variable} must be at most ${formatDuration(maxMs)}` +
    (maxMs === maxDurationMs ? ` (${maxDurationMs} ms, the longest PostgreSQL's timeouts and Node's timers accept)` : '') +
    `, got '${given}'`
  );
}

/** A duration as a person writes it back: `5s`, `1500ms`, `2min`, `1h`, `2d`. */
export function formatDuration(ms: number): string {
  if (ms >= 86_400_000 && ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}min`;
  if (ms >= 1_000 && ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
