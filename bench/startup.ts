import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { packageRoot } from '../src/package-root.js';

/**
 * One way of starting, over fresh processes: wall time from spawn to exit (median and
 * fastest), the process's own CPU time (user + system; less disturbed by a busy machine than
 * the wall time), and its RSS at the end. Medians.
 */
export interface StartupSide {
  medianMs: number;
  minMs: number;
  cpuMs: number;
  rssMiB: number;
}

export interface StartupResult {
  /** `import` of the package (the ES module build), `createDb()`, `users.findById`, `db.destroy()`. */
  library: StartupSide;
  /** The same query with Kysely and pg alone (`new Kysely({ dialect: new PostgresDialect({ pool }) })`). */
  kyselyPg: StartupSide;
  /** library / kyselyPg median wall time (goal ≤ 1.25). */
  ratio: number;
  /** library / kyselyPg median CPU time. */
  cpuRatio: number;
  /** The same two with `require()`: the CommonJS builds of the package and of Kysely. */
  commonJs: { library: StartupSide; kyselyPg: StartupSide; ratio: number; cpuRatio: number };
  runs: number;
}

const userColumns = "['id', 'email', 'display_name as displayName', 'slug', 'active', 'created_at as createdAt', 'updated_at as updatedAt']";
const someId = '01890000-0000-7000-8000-000000000001';
const report = "{ const cpu = process.cpuUsage(); process.stdout.write(JSON.stringify({ rss: process.memoryUsage().rss, cpuMs: (cpu.user + cpu.system) / 1000 })); }";

// Each script does what a service does at start: load, make the pool, answer one request, stop.
function scripts(dist: string): Record<string, { file: string; text: string }> {
  return {
    library: {
      file: 'library.mjs',
      text: `import { createDb, users } from ${JSON.stringify(path.join(dist, 'src', 'index.js'))};
const db = createDb();
await users.findById(db, '${someId}');
await db.destroy();
${report}\n`,
    },
    kyselyPg: {
      file: 'kysely-pg.mjs',
      text: `import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }) });
await db.selectFrom('users').select(${userColumns}).where('id', '=', '${someId}').executeTakeFirst();
await db.destroy();
${report}\n`,
    },
    commonJsLibrary: {
      file: 'library.cjs',
      text: `const { createDb, users } = require(${JSON.stringify(path.join(dist, 'cjs', 'src', 'index.js'))});
(async () => {
  const db = createDb();
  await users.findById(db, '${someId}');
  await db.destroy();
  ${report}
})();\n`,
    },
    commonJsKyselyPg: {
      file: 'kysely-pg.cjs',
      text: `const { Kysely, PostgresDialect } = require('kysely');
const pg = require('pg');
(async () => {
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }) });
  await db.selectFrom('users').select(${userColumns}).where('id', '=', '${someId}').executeTakeFirst();
  await db.destroy();
  ${report}
})();\n`,
    },
  };
}

interface Sample {
  ms: number;
  cpuMs: number;
  rss: number;
}

function runOnce(file: string, databaseUrl: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [file], { env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      if (code !== 0) reject(new Error(`${path.basename(file)} exited with ${code}`));
      else resolve({ ms, ...(JSON.parse(out) as { rss: number; cpuMs: number }) });
    });
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function side(samples: Sample[]): StartupSide {
  return {
    medianMs: Math.round(median(samples.map((s) => s.ms))),
    minMs: Math.round(Math.min(...samples.map((s) => s.ms))),
    cpuMs: Math.round(median(samples.map((s) => s.cpuMs))),
    rssMiB: Number((median(samples.map((s) => s.rss)) / 2 ** 20).toFixed(1)),
  };
}

/**
 * Start-up of a service: import, `createDb()` and one query in a fresh process, against the
 * same with Kysely and pg alone, in the same run, the sides alternating so that the machine's
 * noise falls on both. The package is built first (`npm run build`), since a service runs the
 * compiled package with plain node. The scripts sit under node_modules/.cache, so `kysely` and
 * `pg` resolve to this repository's copies, as they would to a service's.
 *
 * @example const startup = await measureStartup(url, console.log) // { ratio: 1.08, … }
 */
export async function measureStartup(databaseUrl: string, log: (line: string) => void, runs = Number(process.env.BENCH_STARTUP_RUNS ?? 11)): Promise<StartupResult> {
  const root = packageRoot();
  log('building the package (npm run build) to time a service’s start-up…');
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (build.status !== 0) throw new Error('npm run build failed');
  const dir = path.join(root, 'node_modules', '.cache', 'kw-bench-startup');
  await mkdir(dir, { recursive: true });
  const files = scripts(path.join(root, 'dist'));
  for (const { file, text } of Object.values(files)) await writeFile(path.join(dir, file), text);

  const samples = Object.fromEntries(Object.keys(files).map((name) => [name, [] as Sample[]]));
  log(`timing start-up: import, createDb and one query, ${runs} fresh processes per side, alternating…`);
  // One warm-up round: the first spawn pays for the file system cache.
  for (const { file } of Object.values(files)) await runOnce(path.join(dir, file), databaseUrl);
  for (let run = 0; run < runs; run++) {
    for (const [name, { file }] of Object.entries(files)) samples[name]!.push(await runOnce(path.join(dir, file), databaseUrl));
  }
  const ratio = (a: StartupSide, b: StartupSide) => Number((a.medianMs / b.medianMs).toFixed(3));
  const cpuRatio = (a: StartupSide, b: StartupSide) => Number((a.cpuMs / b.cpuMs).toFixed(3));
  const library = side(samples.library!);
  const kyselyPg = side(samples.kyselyPg!);
  const commonJs = { library: side(samples.commonJsLibrary!), kyselyPg: side(samples.commonJsKyselyPg!) };
  return {
    library,
    kyselyPg,
    ratio: ratio(library, kyselyPg),
    cpuRatio: cpuRatio(library, kyselyPg),
    commonJs: { ...commonJs, ratio: ratio(commonJs.library, commonJs.kyselyPg), cpuRatio: cpuRatio(commonJs.library, commonJs.kyselyPg) },
    runs,
  };
}
