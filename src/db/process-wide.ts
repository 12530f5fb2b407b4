/**
 * One value per process, shared by every copy of this package loaded in it. A service can
 * load two: the ES module build (through `import`) and the CommonJS build (through
 * `require()`), say its own code requires the package while an ES module dependency of it
 * imports it. Module-level state would then split in two (settings one copy changed, the
 * other never saw), so what must be process-wide lives under a registered symbol on
 * `globalThis`, which both copies reach by the same name.
 *
 * @example const names = processWide('statement-names', () => new Map<string, string>())
 */
export function processWide<T>(name: string, create: () => T): T {
  const store = globalThis as unknown as Record<symbol, T | undefined>;
  return (store[Symbol.for(`@kennwilliamson/db/${name}`)] ??= create());
}
