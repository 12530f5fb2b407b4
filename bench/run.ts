import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { createDb, poolOf } from '../src/db/create-db.js';
import type { StatementNamingReport } from '../src/db/statement-naming.js';
import { pgBouncer124Path, startPgBouncer } from '../test/support/pgbouncer.js';
import { packageRoot } from '../src/package-root.js';
import { type BenchContext, pick } from './bench-context.js';
import { startBenchDatabase } from './bench-database.js';
import { explainStatements, type PlanSummary } from './explain.js';
import { compareSides, measure, type Measurement, type Work } from './measure.js';
import { benchOperations, orderByRandomSql, pgbenchKeys, rawListSql, type rawSides, type Side, searchTerms, tokenChains } from './operations.js';
import { runPgbench } from './pgbench.js';
import { pgNamed, pgUnnamed, postgresJs, type SqlRunner } from './sql-runners.js';
import postgres from 'postgres';
import { sql } from 'kysely';
import { phrases, refreshTokens } from '../src/index.js';
import { scale, seedBase, seedRealisticPhrases, seedRefreshTokens, settle } from './seed.js';
import { measureStartup } from './startup.js';

const concurrency = 10;
const sliceMs = Number(process.env.BENCH_SLICE_MS ?? 500);
const slices = Number(process.env.BENCH_SLICES ?? 12);
const libraryApplicationName = 'kennwilliamson-db-bench';
// BENCH_POOLED=0 leaves the pooled columns out; without PgBouncer 1.24 they are left out anyway.
const pooledWanted = process.env.BENCH_POOLED !== '0';
const growthMs = Number(process.env.BENCH_GROWTH_MS ?? 3_000);

async function countTokens(client: pg.Client): Promise<number> {
  return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM refresh_tokens')).rows[0]!.n;
}

const log = (line: string) => console.log(line);
const pgbenchSeconds = Number(process.env.BENCH_PGBENCH_SECONDS ?? 4);

interface OperationResult {
  library: Measurement;
  /** Hand-written SQL on `pg`, unnamed statements (`pool.query(text, values)`). */
  raw: Measurement;
  /** The same on `pg` with named statements (`{ name, text, values }`). */
  rawNamed: Measurement;
  /** The same on postgres.js with its defaults (prepared statements). */
  postgresJs: Measurement;
  /** library / raw throughput. */
  ratio: number;
  ratioVsRawNamed: number;
  /** library / postgres.js throughput. */
  ratioVsPostgresJs: number;
  /** pgbench -M prepared with the same statements and clients: the server's ceiling. */
  pgbenchPrepared: { tps: number; libraryShare: number };
  /**
   * Through PgBouncer 1.24 in transaction mode (when built): the library at its defaults, and
   * the same SQL on raw `pg` with unnamed statements, in the same rotating slices as the rest.
   */
  pooled?: { library: Measurement; raw: Measurement; ratio: number };
}

const ratioOf = (a: Measurement, b: Measurement) => Number((a.opsPerSec / b.opsPerSec).toFixed(3));

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
  // The first ones go to pgbench's approvals, numbered per client; the Node sides take the rest.
  await pool.query(`
    CREATE TABLE IF NOT EXISTS bench_keys (kind "char", n int, id uuid NOT NULL, PRIMARY KEY (kind, n));
    TRUNCATE bench_keys;
    INSERT INTO bench_keys SELECT 'u', substr(slug, 7)::int, id FROM users WHERE slug LIKE 'bench-%';
    ANALYZE bench_keys`);
  await pool.query("INSERT INTO bench_keys SELECT 's', n, id FROM unnest($1::uuid[]) WITH ORDINALITY AS k (id, n)", [
    pending.rows.slice(0, pgbenchKeys.approvalsPerClient * concurrency).map((s) => s.id),
  ]);
  await pool.query('ANALYZE bench_keys');
  return {
    db,
    pool,
    emails: users.rows.map((u) => u.email),
    slugs: users.rows.map((u) => u.slug),
    userIds: users.rows.map((u) => u.id),
    excluderIds: excluders.rows.map((u) => u.id),
    adminId: admin.rows[0]!.id,
    pendingSuggestionIds: pending.rows.map((s) => s.id).slice(pgbenchKeys.approvalsPerClient * concurrency),
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
  const header = [
    'operation',
    'library ops/s',
    'p50 ms',
    'p99 ms',
    'raw ops/s',
    'named ops/s',
    'pg.js ops/s',
    'vs raw',
    'vs named',
    'vs pg.js',
    'pgbench tps',
    'share',
    'pooled lib',
    'pooled raw',
    'pooled vs raw',
    'index',
  ];
  const planCell = (plan: PlanSummary | undefined) => {
    if (plan?.usesIndex) return 'yes';
    const seq = [...new Set([...(plan?.seqScans ?? []), ...(plan?.generic.seqScans ?? [])])];
    return `NO (${seq.join(', ') || 'no index used'})`;
  };
  const rows = Object.entries(results).map(([name, r]) => [
    name,
    String(r.library.opsPerSec),
    r.library.p50Ms.toFixed(3),
    r.library.p99Ms.toFixed(3),
    String(r.raw.opsPerSec),
    String(r.rawNamed.opsPerSec),
    String(r.postgresJs.opsPerSec),
    `${r.ratio.toFixed(2)}x`,
    `${r.ratioVsRawNamed.toFixed(2)}x`,
    `${r.ratioVsPostgresJs.toFixed(2)}x`,
    String(r.pgbenchPrepared.tps),
    `${Math.round(r.pgbenchPrepared.libraryShare * 100)}%`,
    r.pooled ? String(r.pooled.library.opsPerSec) : '–',
    r.pooled ? String(r.pooled.raw.opsPerSec) : '–',
    r.pooled ? `${r.pooled.ratio.toFixed(2)}x` : '–',
    planCell(plans[name]),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

/** The server settings that decide what a commit costs, as the run had them. */
async function serverSettings(client: pg.Client): Promise<Record<string, string>> {
  const { rows } = await client.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings
     WHERE name IN ('synchronous_commit', 'fsync', 'full_page_writes', 'wal_sync_method', 'shared_buffers', 'max_connections', 'plan_cache_mode')
     ORDER BY name`,
  );
  return Object.fromEntries(rows.map((row) => [row.name, row.unit ? `${row.setting} ${row.unit}` : row.setting]));
}

/** Seeds live refresh tokens for pgbench's rotations: `pgbench-rotate-<client>-<n>`. */
async function seedPgbenchTokens(client: pg.Client): Promise<void> {
  await client.query(`
    INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at, device_info)
    SELECT k.id, sha256(('pgbench-rotate-' || c || '-' || j)::bytea), uuid_generate_v7(),
           now() + interval '7 days', now() + interval '30 days', '{"userAgent": "pgbench"}'::jsonb
    FROM generate_series(0, ${concurrency - 1}) c CROSS JOIN generate_series(1, ${pgbenchKeys.rotationsPerClient}) j
    JOIN bench_keys k ON k.kind = 'u' AND k.n = 1 + (j * ${concurrency} + c) % ${scale.users}`);
}

interface StatementMemory {
  namedStatements: number;
  /** Bytes in the backend's CachedPlanSource, CachedPlanQuery and CachedPlan contexts. */
  cachedPlanBytes: number;
  /** Bytes in all of the backend's memory contexts. */
  backendBytes: number;
}

/** Runs every operation once on one connection and reads what its server process holds. */
async function statementMemory(
  url: string,
  mode: 'auto' | 'off',
  ctx: BenchContext,
  operations: ReturnType<typeof benchOperations>,
  chains: ReturnType<typeof tokenChains>,
): Promise<StatementMemory> {
  const db = createDb({ databaseUrl: url, maxConnections: 1, minConnections: 0, preparedStatements: mode });
  try {
    chains.library[0] = (await refreshTokens.issue(db, { userId: ctx.userIds[0]! })).token;
    for (const op of operations) await op.library({ ...ctx, db }, 0);
    const { rows } = await sql<StatementMemory>`
      SELECT (SELECT count(*) FROM pg_prepared_statements)::int AS "namedStatements",
             (SELECT coalesce(sum(total_bytes), 0) FROM pg_backend_memory_contexts
              WHERE name IN ('CachedPlanSource', 'CachedPlanQuery', 'CachedPlan'))::int AS "cachedPlanBytes",
             (SELECT sum(total_bytes) FROM pg_backend_memory_contexts)::int AS "backendBytes"`.execute(db);
    return rows[0]!;
  } finally {
    await db.destroy();
  }
}

async function main(): Promise<void> {
  const server = await startBenchDatabase(log);
  // The hand-written sides get the same pool settings as the library's: size and acquire timeout.
  const pgPool = (url = server.url) =>
    new pg.Pool({ connectionString: url, max: concurrency, min: 2, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 30_000 });
  const pool = pgPool();
  const namedPool = pgPool();
  const postgresSql = postgres(server.url, { max: concurrency, onnotice: () => undefined });
  // PgBouncer 1.24 in transaction mode, its defaults (max_prepared_statements 200), in front of
  // the same server: the library at its defaults through it, and raw pg through it.
  if (pooledWanted && !existsSync(pgBouncer124Path)) log(`${pgBouncer124Path} not found (.ci/build-pgbouncer builds it): no pooled columns`);
  const pooler = pooledWanted && existsSync(pgBouncer124Path) ? await startPgBouncer({ serverUrl: server.url, version: '1.24' }) : undefined;
  const pooledPool = pooler ? pgPool(pooler.url(server.url)) : undefined;
  const pooledDb = pooler
    ? createDb({ databaseUrl: pooler.url(server.url), maxConnections: concurrency, applicationName: `${libraryApplicationName}-pooled` })
    : undefined;
  const runners: Record<(typeof rawSides)[number], SqlRunner> = {
    raw: pgUnnamed(pool),
    rawNamed: pgNamed(namedPool),
    postgresJs: postgresJs(postgresSql),
    rawPooled: pgUnnamed(pooledPool ?? pool),
  };
  const db = createDb({ databaseUrl: server.url, maxConnections: concurrency, applicationName: libraryApplicationName });
  const observer = new pg.Client({ connectionString: server.url });
  await observer.connect();
  try {
    // First, while the machine is quiet (before seeding): a service's start-up, against
    // Kysely and pg alone.
    const startup = await measureStartup(server.url, log);
    await seedBase(observer, log);
    const ctx = await loadContext(db, pool);
    const postgresVersion = (await observer.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    const settingsServer = await serverSettings(observer);
    log(`server settings: ${JSON.stringify(settingsServer)}`);
    let pooledNaming: StatementNamingReport | undefined;
    if (pooledDb) {
      pooledNaming = await poolOf(pooledDb).statementNaming();
      log(`through PgBouncer 1.24 the library's default (auto) chose: ${JSON.stringify(pooledNaming)}`);
    }
    const results: Record<string, OperationResult> = {};
    const plans: Record<string, PlanSummary> = {};
    let peak = 0;

    // Every worker of each side rotates its own token chain, started by a fresh login.
    const chains = tokenChains(concurrency);
    const sides = (Object.keys(chains) as Side[]).filter((side) => pooler || (side !== 'libraryPooled' && side !== 'rawPooled'));
    const startChains = async () => {
      for (let worker = 0; worker < concurrency; worker++) {
        for (const [i, side] of sides.entries()) {
          chains[side][worker] = (await refreshTokens.issue(db, { userId: ctx.userIds[i * concurrency + worker]! })).token;
        }
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
    await seedPgbenchTokens(observer);
    await settle(observer, log);
    await startChains();

    // BENCH_ONLY=name,name measures just those operations (the checks below the table still run).
    const only = process.env.BENCH_ONLY?.split(',').map((name) => name.trim()).filter(Boolean);
    const operations = benchOperations(chains, ctx.pendingSuggestionIds);
    const measured = operations.filter(
      (op) => !only?.length || only.includes(op.name) || op.name === 'phrases.randomForUser',
    );
    for (const op of measured) {
      log(`measuring ${op.name}…`);
      const statements: Array<{ sql: string; parameters: readonly unknown[] }> = [];
      const capture = createDb(
        { databaseUrl: server.url, maxConnections: 1, minConnections: 0 },
        { log: (event) => void (event.level === 'query' && statements.push(event.query)) },
      );
      await op.library({ ...ctx, db: capture }, 0);
      await capture.destroy();
      plans[op.name] = await explainStatements(observer, statements);

      const pooledCtx = pooledDb && pooledPool ? { ...ctx, db: pooledDb, pool: pooledPool } : undefined;
      const run = await peakConnections(observer, () =>
        compareSides<Side>(
          {
            library: (worker) => op.library(ctx, worker),
            raw: (worker) => op.raw(runners.raw, ctx, worker, 'raw'),
            rawNamed: (worker) => op.raw(runners.rawNamed, ctx, worker, 'rawNamed'),
            postgresJs: (worker) => op.raw(runners.postgresJs, ctx, worker, 'postgresJs'),
            ...(pooledCtx
              ? {
                  libraryPooled: (worker: number) => op.library(pooledCtx, worker, 'libraryPooled'),
                  rawPooled: (worker: number) => op.raw(runners.rawPooled, pooledCtx, worker, 'rawPooled'),
                }
              : {}),
          } as Record<Side, Work>,
          { concurrency, sliceMs, slices },
        ),
      );
      const { libraryPooled, rawPooled, ...m } = run.result as Record<Exclude<Side, 'libraryPooled' | 'rawPooled'>, Measurement> &
        Partial<Record<'libraryPooled' | 'rawPooled', Measurement>>;
      log(`  pgbench -M prepared, ${concurrency} clients, ${pgbenchSeconds} s…`);
      const tps = await runPgbench(server.url, op.pgbench, { clients: concurrency, seconds: pgbenchSeconds });
      results[op.name] = {
        ...m,
        ratio: ratioOf(m.library, m.raw),
        ratioVsRawNamed: ratioOf(m.library, m.rawNamed),
        ratioVsPostgresJs: ratioOf(m.library, m.postgresJs),
        pgbenchPrepared: { tps, libraryShare: Number((m.library.opsPerSec / tps).toFixed(3)) },
        ...(libraryPooled && rawPooled ? { pooled: { library: libraryPooled, raw: rawPooled, ratio: ratioOf(libraryPooled, rawPooled) } } : {}),
      };
      peak = Math.max(peak, run.peak);
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

    log('measuring phrases.listForUser (search) with one caller at a time, and a term that matches nothing…');
    const searchAlone = await measure(
      () => phrases.listForUser(db, pick(ctx.excluderIds), { search: pick(searchTerms), limit: 20 }),
      { concurrency: 1, durationMs: growthMs },
    );
    const searchNoMatchAlone = await measure(
      () => phrases.listForUser(db, pick(ctx.excluderIds), { search: 'quokka zebra', limit: 20 }),
      { concurrency: 1, durationMs: growthMs },
    );

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

    log('reading what named statements cost a server connection…');
    const memory = {
      named: await statementMemory(server.url, 'auto', ctx, operations, chains),
      unnamed: await statementMemory(server.url, 'off', ctx, operations, chains),
    };

    // Last, as it rewrites the phrases: the same search on varied texts.
    log('rewriting the phrases as varied texts, and measuring the search on them…');
    const realisticTerms = await seedRealisticPhrases(observer, log);
    const searchVaried = () => phrases.listForUser(db, pick(ctx.excluderIds), { search: pick(realisticTerms), limit: 20 });
    // The SQL of before, unnamed on raw pg, over the same varied texts: what "today" does there.
    const searchVariedRaw = () =>
      ctx.pool.query(rawListSql, [pick(ctx.excluderIds), `%${pick(realisticTerms).replace(/[\\%_]/g, '\\$&')}%`, 20, 0]);
    const searchRealistic = {
      sampleTerms: realisticTerms.slice(0, 5),
      alone: await measure(searchVaried, { concurrency: 1, durationMs: growthMs }),
      workers: await measure(searchVaried, { concurrency, durationMs: growthMs }),
      rawAlone: await measure(searchVariedRaw, { concurrency: 1, durationMs: growthMs }),
      rawWorkers: await measure(searchVariedRaw, { concurrency, durationMs: growthMs }),
    };

    console.log('');
    printTable(results, plans);
    console.log('');
    console.log(
      'vs raw: library / pg unnamed; vs named: library / pg named statements; vs pg.js: library / postgres.js (prepared); ' +
        `pgbench tps: pgbench -M prepared, same statements, ${concurrency} clients, ${pgbenchSeconds} s (the server's ceiling); ` +
        'share: library / pgbench; pooled lib / pooled raw: the library at its defaults and raw pg (unnamed) through PgBouncer 1.24 ' +
        '(transaction mode, its defaults), in the same slices; index: custom and generic plans use indexes, no sequential scan of a big table',
    );
    if (pooledNaming) console.log(`through PgBouncer 1.24, the library's statements: ${pooledNaming.named ? 'named' : 'unnamed'} (${pooledNaming.reason})`);
    console.log(`server: PostgreSQL ${postgresVersion}, ${JSON.stringify(settingsServer)}`);
    console.log(`server connections of the library pool during the run: at most ${peak} (pool max ${concurrency})`);
    console.log(
      `phrases.randomForUser: p50 ${randomAlone.p50Ms} ms one caller at a time, ${random.library.p50Ms} ms with ${concurrency} workers ` +
        `(target ≤ 1 ms); ORDER BY random() LIMIT 1: ` +
        `${orderByRandom.opsPerSec} ops/s, p50 ${orderByRandom.p50Ms} ms; ` +
        `${randomVsOrderBy.speedup}x the throughput, ${randomVsOrderBy.p50Speedup}x lower p50 (target ≥ 20x)`,
    );
    console.log(
      `phrases.listForUser (search) one caller at a time: ${searchAlone.opsPerSec} ops/s, p50 ${searchAlone.p50Ms} ms, p99 ${searchAlone.p99Ms} ms ` +
        `(target p50 ≤ 5 ms); a term that matches nothing: p50 ${searchNoMatchAlone.p50Ms} ms`,
    );
    console.log(
      `phrases.listForUser (search) on varied texts (terms like '${searchRealistic.sampleTerms.slice(0, 2).join("', '")}'): ` +
        `one caller p50 ${searchRealistic.alone.p50Ms} ms, p99 ${searchRealistic.alone.p99Ms} ms; ` +
        `${concurrency} workers ${searchRealistic.workers.opsPerSec} ops/s, p50 ${searchRealistic.workers.p50Ms} ms; ` +
        `the SQL of before on raw pg: one caller p50 ${searchRealistic.rawAlone.p50Ms} ms, ${concurrency} workers ` +
        `${searchRealistic.rawWorkers.opsPerSec} ops/s (${(searchRealistic.workers.opsPerSec / searchRealistic.rawWorkers.opsPerSec).toFixed(2)}x; target ≥ 3x)`,
    );
    console.log(
      `refreshTokens.rotate as the table grows: ${rotateSmall.opsPerSec} ops/s at ${small.toLocaleString('en-US')} rows, ` +
        `${rotateLarge.opsPerSec} ops/s at ${large.toLocaleString('en-US')} rows (${rotateGrowth.ratio.toFixed(2)}x; target within 20%)`,
    );
    console.log(
      `start-up (import, createDb, one query, fresh process, median of ${startup.runs}): ${startup.library.medianMs} ms, ` +
        `${startup.library.rssMiB} MiB; Kysely and pg alone ${startup.kyselyPg.medianMs} ms, ${startup.kyselyPg.rssMiB} MiB ` +
        `(${startup.ratio.toFixed(2)}x; target ≤ 1.25x; CPU time ${startup.cpuRatio.toFixed(2)}x); CommonJS ${startup.commonJs.library.medianMs} ms against ` +
        `${startup.commonJs.kyselyPg.medianMs} ms (${startup.commonJs.ratio.toFixed(2)}x)`,
    );
    console.log(
      `one server connection after every operation once: ${memory.named.namedStatements} named statements, ` +
        `${(memory.named.cachedPlanBytes / 1024).toFixed(0)} KiB in cached-plan contexts, backend ${(memory.named.backendBytes / 1024).toFixed(0)} KiB; ` +
        `unnamed: ${(memory.unnamed.cachedPlanBytes / 1024).toFixed(0)} KiB, backend ${(memory.unnamed.backendBytes / 1024).toFixed(0)} KiB`,
    );

    const report = {
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadAverage: os.loadavg() },
      postgres: postgresVersion,
      operations: results,
      plans,
      peakLibraryConnections: peak,
      rotateGrowth,
      randomVsOrderBy,
      searchAlone,
      searchNoMatchAlone,
      searchRealistic,
      statementMemory: memory,
      startup,
      pooledNaming: pooledNaming ?? null,
      settings: { concurrency, sliceMs, slices, pgbenchSeconds, scale, server: settingsServer },
    };
    const file = path.join(packageRoot(), 'bench', 'results.json');
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results written to ${path.relative(process.cwd(), file)}`);
  } finally {
    await observer.end();
    await db.destroy();
    await pooledDb?.destroy();
    await pooledPool?.end();
    await pooler?.stop();
    await pool.end();
    await namedPool.end();
    await postgresSql.end();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
