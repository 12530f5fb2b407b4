import { performance } from 'node:perf_hooks';

/** Throughput and latency of one side of an operation. */
export interface Measurement {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** One unit of work; `worker` is 0..concurrency-1, so a worker can keep its own state. */
export type Work = (worker: number) => Promise<unknown>;

interface Tally {
  count: number;
  elapsedMs: number;
  latencies: number[];
}

async function runSlice(work: Work, concurrency: number, durationMs: number, tally?: Tally): Promise<void> {
  const started = performance.now();
  const deadline = started + durationMs;
  let count = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await work(worker);
        tally?.latencies.push(performance.now() - t0);
        count++;
      }
    }),
  );
  if (tally) {
    tally.count += count;
    tally.elapsedMs += performance.now() - started;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summarise(tally: Tally): Measurement {
  const sorted = Float64Array.from(tally.latencies).sort();
  const values = Array.from(sorted);
  return {
    opsPerSec: Math.round((tally.count / tally.elapsedMs) * 1000),
    p50Ms: Number(percentile(values, 50).toFixed(3)),
    p99Ms: Number(percentile(values, 99).toFixed(3)),
  };
}

/**
 * Runs every side for the same total time with `concurrency` workers each, in short slices
 * whose order rotates from one round to the next (and reverses every other round), so that
 * noise on this shared machine falls on every side alike. A warm-up slice of each is not counted.
 */
export async function compareSides<S extends string>(
  sides: Record<S, Work>,
  options: { concurrency: number; sliceMs: number; slices: number },
): Promise<Record<S, Measurement>> {
  const names = Object.keys(sides) as S[];
  const tallies = Object.fromEntries(names.map((name) => [name, newTally()])) as Record<S, Tally>;
  for (const name of names) await runSlice(sides[name], options.concurrency, options.sliceMs / 2);
  for (let slice = 0; slice < options.slices; slice++) {
    const rotated = [...names.slice(slice % names.length), ...names.slice(0, slice % names.length)];
    const order = slice % 2 === 0 ? rotated : rotated.reverse();
    for (const name of order) await runSlice(sides[name], options.concurrency, options.sliceMs, tallies[name]);
  }
  return Object.fromEntries(names.map((name) => [name, summarise(tallies[name])])) as Record<S, Measurement>;
}

/** Measures one side alone, for baselines and growth checks. */
export async function measure(
  work: Work,
  options: { concurrency: number; durationMs: number; warmUpMs?: number },
): Promise<Measurement> {
  const tally = newTally();
  await runSlice(work, options.concurrency, options.warmUpMs ?? Math.min(500, options.durationMs / 4));
  await runSlice(work, options.concurrency, options.durationMs, tally);
  return summarise(tally);
}

function newTally(): Tally {
  return { count: 0, elapsedMs: 0, latencies: [] };
}
