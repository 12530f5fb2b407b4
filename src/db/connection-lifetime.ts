/**
 * How long one connection lives before the pool retires it: a random time between 80 % and
 * 100 % of `maxLifetimeMs`, drawn for each connection, so connections opened together (the
 * pool's minimum at start-up, a refill after a failover) are retired a few at a time rather
 * than all at once, and the pool never has to reopen all of them in the same moment.
 *
 * @example connectionLifetimeMs(30 * 60_000) // between 1,440,000 and 1,800,000
 */
export function connectionLifetimeMs(maxLifetimeMs: number, random: () => number = Math.random): number {
  return Math.max(1, Math.round(maxLifetimeMs * (0.8 + 0.2 * random())));
}
