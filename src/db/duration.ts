import { ConfigError } from '../errors.js';

// PostgreSQL's own time units for settings such as statement_timeout (less `us`, which no bound
// here needs), so a value reads the same in an environment variable and in postgresql.conf.
const unitMs: Record<string, number> = { ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

const durationPattern = /^(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?$/;

/**
 * Reads a duration as PostgreSQL reads `statement_timeout`: a bare number is milliseconds, or
 * a number with a unit (`ms`, `s`, `min`, `h`, `d`: `500ms`, `5s`, `1.5s`, `2min`). The result
 * is whole milliseconds, at least `minMs`. A bad value is a {@link ConfigError} naming
 * `variable` (the environment variable or option it came from).
 *
 * @example
 * parseDuration('DB_STATEMENT_TIMEOUT', '5s') // 5000
 * parseDuration('DB_LOCK_TIMEOUT', '750') // 750
 */
export function parseDuration(variable: string, raw: string | number, minMs = 1): number {
  const text = String(raw).trim();
  const match = durationPattern.exec(text);
  const ms = match ? Number(match[1]) * unitMs[match[2] ?? 'ms']! : Number.NaN;
  if (!Number.isSafeInteger(Math.round(ms)) || Math.round(ms) !== ms) {
    throw new ConfigError(
      variable,
      `${variable} must be a duration in whole milliseconds: a number (milliseconds) or a number with a unit ` +
        `(ms, s, min, h, d), e.g. 5000 or 5s; got '${text}'`,
    );
  }
  if (ms < minMs) throw new ConfigError(variable, `${variable} must be at least ${minMs} ms, got '${text}'`);
  return ms;
}

/** A duration as a person writes it back: `5s`, `1500ms`, `2min`, `1h`. */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}min`;
  if (ms >= 1_000 && ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
