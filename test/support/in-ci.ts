/**
 * Whether this run is CI's (`CI` set, and not to `false` or `0`): there a missing tool or
 * machine setting that .ci/run provides fails the run instead of being left out.
 *
 * @example
 * if (!existsSync(program) && inCi()) throw new Error(`${program} is missing (see .ci/run)`)
 */
export function inCi(): boolean {
  const ci = process.env.CI?.trim().toLowerCase();
  return Boolean(ci) && ci !== 'false' && ci !== '0';
}
