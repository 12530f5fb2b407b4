import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createDb } from '../src/db/create-db.js';
import { packageRoot } from '../src/package-root.js';
import { type BenchContext, pick } from './bench-context.js';
import { startBenchDatabase } from './bench-database.js';
import { explainStatements, type PlanSummary } from './explain.js';
import { compare, measure, type Measurement } from './measure.js';
import { benchOperations, orderByRandomSql, tokenChains } from './operations.js';
import { phrases, refreshTokens } from '../src/index.js';
import { scale, seedBase, seedRefreshTokens, settle } from './seed.js';

const concurrency = 10;
const sliceMs = Number(process.env.BENCH_SLICE_MS ?? 500);
const slices = Number(process.env.BENCH_SLICES ?? 12);
const libraryApplicationName = 'kennwilliamson-db-bench';
const growthMs = Number(process.env.BENCH_GROWTH_MS ?? 3_000);

async function countTokens(client: pg.Client): Promise<number> {
  return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM refresh_tokens')).rows[0]!.n;
}

const log = (line: string) => console.log(line);

interface OperationResult {
  library: Measurement;
  raw: Measurement;
  ratio: number;
}

async function loadContext(db: BenchContext['db'], pool: pg.Pool): Promise<BenchContext> {
  const users = await pool.query<{ id: string; email: string; slug: string }>(
    "SELECT id, email, slug FROM users WHERE slug LIKE 'bench-%'",
  );
  const excluders = await pool.query<{ id: string }>(
    `SELECT id FROM users WHERE slug IN (SELECT 'bench-' || i FROM generate_series(1, ${scale.excluders}) i)`,
  );
  const admin = await pool.query<{ id: string }>("SELECT id FROM users WHERE slug = 'bench-1'");
  const pending = await pool.query<{ id: string }>(
    "SELECT id FROM phrase_suggestions WHERE status = 'pending' ORDER BY random()",
  );
  return {
    db,
    pool,
    emails: users.rows.map((u) => u.email),
    slugs: users.rows.map((u) => u.slug),
    userIds: users.rows.map((u) => u.id),
    excluderIds: excluders.rows.map((u) => u.id),
    adminId: admin.rows[0]!.id,
    pendingSuggestionIds: pending.rows.map((s) => s.id),
  };
}

/** Samples the library pool's server connections while `work` runs; returns the maximum seen. */
async function peakConnections<T>(observer: pg.Client, work: () => Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      const { rows } = await observer.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [libraryApplicationName],
      );
      peak = Math.max(peak, rows[0]!.n);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  try {
    return { result: await work(), peak };
  } finally {
    running = false;
    await sampler;
  }
}

function printTable(results: Record<string, OperationResult>, plans: Record<string, PlanSummary>): void {
  const header = ['operation', 'library ops/s', 'p50 ms', 'p99 ms', 'raw ops/s', 'p50 ms', 'p99 ms', 'ratio', 'index'];
  const rows = Object.entries(results).map(([name, r]) => [
    name,
    String(r.library.opsPerSec),
    r.library.p50Ms.toFixed(3),
    r.library.p99Ms.toFixed(3),
    String(r.raw.opsPerSec),
    r.raw.p50Ms.toFixed(3),
    r.raw.p99Ms.toFixed(3),
    `${r.ratio.toFixed(2)}x`,
    plans[name]?.usesIndex ? 'yes' : `NO (${plans[name]?.seqScans.join(', ') || 'no index used'})`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

async function main(): Promise<void> {
  const server = await startBenchDatabase(log);
  // The hand-written side gets the same pool settings as the library's: size and acquire timeout.
  const pool = new pg.Pool({ connectionString: server.url, max: concurrency, min: 2, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 30_000 });
  const db = createDb({ databaseUrl: server.url, maxConnections: concurrency, applicationName: libraryApplicationName });
  const observer = new pg.Client({ connectionString: server.url });
  await observer.connect();
  try {
    await seedBase(observer, log);
    const ctx = await loadContext(db, pool);
    const postgres = (await observer.query<{ v: string }>('SHOW server_version')).rows[0]!.v;
    const results: Record<string, OperationResult> = {};
    const plans: Record<string, PlanSummary> = {};
    let peak = 0;

    // Every worker of each side rotates its own token chain, started by a fresh login.
    const chains = tokenChains(concurrency);
    const startChains = async () => {
      for (let worker = 0; worker < concurrency; worker++) {
        chains.library[worker] = (await refreshTokens.issue(db, { userId: ctx.userIds[worker]! })).token;
        chains.raw[worker] = (await refreshTokens.issue(db, { userId: ctx.userIds[concurrency + worker]! })).token;
      }
    };
    await startChains();
    const rotateLibrary = benchOperations(chains, []).find((op) => op.name === 'refreshTokens.rotate')!.library;
    const small = await countTokens(observer);
    log(`measuring refreshTokens.rotate with ${small.toLocaleString('en-US')} refresh tokens…`);
    // Both sizes get the same long warm-up: the first of them would otherwise also pay for
    // opening the pool's connections and for the server's per-connection caches.
    const rotateSmall = await measure((worker) => rotateLibrary(ctx, worker), {
      concurrency,
      durationMs: growthMs,
      warmUpMs: 2_000,
    });

    await seedRefreshTokens(observer, scale.refreshTokensSmall + 1, scale.refreshTokens - scale.refreshTokensSmall, log);
    await settle(observer, log);
    await startChains();

    // BENCH_ONLY=name,name measures just those operations (the checks below the table still run).
    const only = process.env.BENCH_ONLY?.split(',').map((name) => name.trim()).filter(Boolean);
    const operations = benchOperations(chains, ctx.pendingSuggestionIds).filter(
      (op) => !only?.length || only.includes(op.name) || op.name === 'phrases.randomForUser',
    );
    for (const op of operations) {
      log(`measuring ${op.name}…`);
      const statements: Array<{ sql: string; parameters: readonly unknown[] }> = [];
      const capture = createDb(
        { databaseUrl: server.url, maxConnections: 1, minConnections: 0 },
        { log: (event) => void (event.level === 'query' && statements.push(event.query)) },
      );
      await op.library({ ...ctx, db: capture }, 0);
      await capture.destroy();
      plans[op.name] = await explainStatements(observer, statements);

      const measured = await peakConnections(observer, () =>
        compare(
          (worker) => op.library(ctx, worker),
          (worker) => op.raw(ctx, worker),
          { concurrency, sliceMs, slices },
        ),
      );
      results[op.name] = measured.result;
      peak = Math.max(peak, measured.peak);
    }

    log('measuring ORDER BY random() LIMIT 1 over the same rows as phrases.randomForUser…');
    const orderByRandom = await measure(
      async () => pool.query(orderByRandomSql, [pick(ctx.excluderIds)]),
      { concurrency, durationMs: growthMs },
    );
    const random = results['phrases.randomForUser']!;
    // With 10 workers on 2 cores, p50 is mostly time spent queueing; one caller at a time
    // shows what a single page view waits.
    log('measuring phrases.randomForUser with one caller at a time…');
    const randomAlone = await measure(() => phrases.randomForUser(db, pick(ctx.excluderIds)), {
      concurrency: 1,
      durationMs: growthMs,
    });
    const randomVsOrderBy = {
      randomForUserAlone: randomAlone,
      orderByRandom,
      speedup: Number((random.library.opsPerSec / orderByRandom.opsPerSec).toFixed(1)),
      p50Speedup: Number((orderByRandom.p50Ms / random.library.p50Ms).toFixed(1)),
    };

    const large = await countTokens(observer);
    log(`measuring refreshTokens.rotate with ${large.toLocaleString('en-US')} refresh tokens…`);
    const rotateLarge = await measure((worker) => rotateLibrary(ctx, worker), {
      concurrency,
      durationMs: growthMs,
      warmUpMs: 2_000,
    });
    const rotateGrowth = {
      small: { rows: small, ...rotateSmall },
      large: { rows: large, ...rotateLarge },
      ratio: Number((rotateLarge.opsPerSec / rotateSmall.opsPerSec).toFixed(3)),
    };

    console.log('');
    printTable(results, plans);
    console.log('');
    console.log(`server connections of the library pool during the run: at most ${peak} (pool max ${concurrency})`);
    console.log(
      `phrases.randomForUser: p50 ${randomAlone.p50Ms} ms one caller at a time, ${random.library.p50Ms} ms with ${concurrency} workers ` +
        `(target ≤ 1 ms); ORDER BY random() LIMIT 1: ` +
        `${orderByRandom.opsPerSec} ops/s, p50 ${orderByRandom.p50Ms} ms; ` +
        `${randomVsOrderBy.speedup}x the throughput, ${randomVsOrderBy.p50Speedup}x lower p50 (target ≥ 20x)`,
    );
    console.log(
      `refreshTokens.rotate as the table grows: ${rotateSmall.opsPerSec} ops/s at ${small.toLocaleString('en-US')} rows, ` +
        `${rotateLarge.opsPerSec} ops/s at ${large.toLocaleString('en-US')} rows (${rotateGrowth.ratio.toFixed(2)}x; target within 20%)`,
    );

    const report = {
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
      postgres,
      operations: results,
      plans,
      peakLibraryConnections: peak,
      rotateGrowth,
      randomVsOrderBy,
      settings: { concurrency, sliceMs, slices, scale },
    };
    const file = path.join(packageRoot(), 'bench', 'results.json');
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results written to ${path.relative(process.cwd(), file)}`);
  } finally {
    await observer.end();
    await db.destroy();
    await pool.end();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
