import { ConfigError } from '../errors.js';

/**
 * Refuses a migration to revert back to that is not in the record: Umzug would find that out
 * only once the revert was confirmed and under way, and say it could not find a migration to
 * "apply". The error names the applied ones, newest first (ten at most), and that nothing was
 * reverted.
 *
 * @example requireAppliedTarget('20250101000000_init', ['20250301000000_b', '20250101000000_init'], '--to') // passes
 */
export function requireAppliedTarget(to: string, appliedNewestFirst: readonly string[], option: string): void {
  if (appliedNewestFirst.includes(to)) return;
  const listed =
    appliedNewestFirst.length === 0
      ? 'none is applied'
      : `applied, newest first: ${appliedNewestFirst.slice(0, 10).join(', ')}${appliedNewestFirst.length > 10 ? ', …' : ''}`;
  throw new ConfigError(option, `${option} ${to} names no applied migration (${listed}); nothing was reverted`);
}
