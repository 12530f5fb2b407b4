// The three silent faults of issue 16, at full size and at the pool's defaults (10 max, 2 min,
// 30 s acquire), against a throwaway embedded PostgreSQL 17 on 127.0.0.1:
//   partition  every pooled connection stops receiving packets (iptables DROP on their ports,
//              both ways; needs root), new connections work; 16 closed-loop callers
//   hotrow     an admin transaction holds one user's row for 20 s; 300 reads/s of other users
//              and 1 updatePassword/s of the held one, open loop
//   hotburst   the same with 20 updatePassword/s of the held one (a client retrying in a loop)
//   migration  a 15 s reader holds ACCESS SHARE on users and refresh_tokens while migrate()
//              adds a nullable column to both; 300 reads/s and 50 rotations/s, open loop
// npm run bench:faults (FAULTS_ONLY=partition,hotrow,hotburst,migration). It prints a summary and writes
// bench/faults-results.json. It uses only what the library has long exported, so the same
// file measures an older checkout too (the figures in the README and the issue).
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createDb, migrate, refreshTokens, users } from '../src/index.js';
import { defaultMigrationsDir } from '../src/migrations/default-migrations-dir.js';
import { packageRoot } from '../src/package-root.js';
import { silenceConnections } from '../test/support/packet-filter.js';
import { startBenchDatabase } from './bench-database.js';

const only = new Set((process.env.FAULTS_ONLY ?? 'partition,hotrow,hotburst,migration').split(',').map((s) => s.trim()));
const log = (line: string) => console.log(line);

interface Call {
  /** When it was issued and settled, ms since the scenario's start. */
  start: number;
  end: number;
  error?: string;
  retryable?: boolean;
}

function describeError(error: unknown): { error: string; retryable: boolean } {
  const e = error as { name?: string; reason?: string; retryable?: boolean };
  return { error: `${e.name ?? 'Error'}${e.reason ? `(${e.reason})` : ''}`, retryable: e.retryable === true };
}

const maxOf = (values: number[]) => Math.round(values.reduce((a, b) => Math.max(a, b), 0));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
}

function tally(calls: Call[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const call of calls) if (call.error) counts[`${call.error}${call.retryable ? ' retryable' : ''}`] = (counts[`${call.error}${call.retryable ? ' retryable' : ''}`] ?? 0) + 1;
  return counts;
}

function summary(calls: Call[]) {
  const latencies = calls.map((call) => call.end - call.start);
  return {
    calls: calls.length,
    errors: calls.filter((call) => call.error).length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: maxOf(latencies),
    errorKinds: tally(calls),
  };
}

/** Issues `perSecond` calls a second (in 10 ms ticks) until stopped; never waits for one to end. */
function openLoop(perSecond: number, started: number, call: () => Promise<unknown>, calls: Call[]): { stop(): Promise<void> } {
  const inFlight = new Set<Promise<void>>();
  let owed = 0;
  const timer = setInterval(() => {
    owed += perSecond / 100;
    for (; owed >= 1; owed -= 1) {
      const entry: Call = { start: performance.now() - started, end: 0 };
      const p = call().then(
        () => {
          entry.end = performance.now() - started;
        },
        (error: unknown) => {
          entry.end = performance.now() - started;
          Object.assign(entry, describeError(error));
        },
      ).finally(() => {
        calls.push(entry);
        inFlight.delete(p);
      });
      inFlight.add(p);
    }
  }, 10);
  return {
    stop: async () => {
      clearInterval(timer);
      await Promise.race([Promise.all(inFlight), sleep(90_000)]);
    },
  };
}

async function seed(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`
      INSERT INTO users (email, password_hash, display_name, slug)
      SELECT 'fault-' || i || '@example.org', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'Fault ' || i, 'fault-' || i
        FROM generate_series(1, 2000) AS i
      ON CONFLICT DO NOTHING`);
    await client.query('ANALYZE users');
    const { rows } = await client.query<{ id: string }>("SELECT id FROM users WHERE slug LIKE 'fault-%' ORDER BY slug");
    return rows.map((row) => row.id);
  } finally {
    await client.end();
  }
}

const pick = <T>(items: readonly T[]) => items[Math.floor(Math.random() * items.length)]!;

async function partitionScenario(url: string, userIds: string[]) {
  const applicationName = 'fault-partition';
  const poolErrors: string[] = [];
  const db = createDb({ databaseUrl: url, applicationName }, { onPoolError: (message) => poolErrors.push(message) });
  const started = performance.now();
  const calls: Call[] = [];
  let stop = false;
  const pending = new Set<Call>();
  const worker = async () => {
    while (!stop) {
      const entry: Call = { start: performance.now() - started, end: 0 };
      pending.add(entry);
      try {
        await users.findById(db, pick(userIds.slice(1)));
      } catch (error) {
        Object.assign(entry, describeError(error));
      }
      entry.end = performance.now() - started;
      pending.delete(entry);
      calls.push(entry);
    }
  };
  const warmupMs = 8_000;
  const observeMs = Number(process.env.FAULTS_PARTITION_OBSERVE_MS ?? 40_000);
  const workers = Array.from({ length: 16 }, worker);
  await sleep(warmupMs);
  const observer = new pg.Client({ connectionString: url });
  await observer.connect();
  const { rows } = await observer.query<{ port: number; server_port: number }>(
    'SELECT client_port AS port, inet_server_port() AS server_port FROM pg_stat_activity WHERE application_name = $1',
    [applicationName],
  );
  await observer.end();
  const partitionAt = performance.now() - started;
  const partition = silenceConnections(rows[0]?.server_port ?? 0, rows.map((row) => row.port));
  log(`partition: ${rows.length} pooled connections silenced at ${(partitionAt / 1000).toFixed(1)} s`);
  try {
    await sleep(observeMs);
  } finally {
    stop = true;
    partition.heal();
  }
  const unsettledAtEnd = [...pending].map((entry) => Math.round(performance.now() - started - entry.start));
  await Promise.race([Promise.all(workers), sleep(60_000)]);
  void db.destroy().catch(() => undefined);

  const before = calls.filter((c) => c.end >= 3_000 && c.end < partitionAt && !c.error).length / ((partitionAt - 3_000) / 1000);
  const perSecond: number[] = [];
  for (let s = 0; s < observeMs / 1000; s++) {
    const from = partitionAt + s * 1000;
    perSecond.push(calls.filter((c) => !c.error && c.end >= from && c.end < from + 1000).length);
  }
  const recoveredAfter = perSecond.findIndex((n) => n >= before / 2);
  const afterPartition = calls.filter((c) => c.start >= partitionAt - 1_000);
  return {
    opsPerSecBefore: Math.round(before),
    opsPerSecEachSecondAfter: perSecond,
    secondsToHalfThroughput: recoveredAfter < 0 ? `not within ${observeMs / 1000} s` : recoveredAfter + 1,
    longestCallMs: maxOf([...afterPartition.map((c) => c.end - c.start), ...unsettledAtEnd]),
    callsInFlightWhenObservationEnded: unsettledAtEnd.length,
    errorKinds: tally(afterPartition),
    allFailuresRetryable: afterPartition.every((c) => !c.error || c.retryable),
    poolMessages: [...new Set(poolErrors)],
  };
}

async function hotRowScenario(url: string, userIds: string[], writesPerSecond: number) {
  const db = createDb({ databaseUrl: url, applicationName: 'fault-hotrow' }, { onPoolError: () => undefined });
  const held = userIds[0]!;
  const started = performance.now();
  const reads: Call[] = [];
  const blocked: Call[] = [];
  const readLoop = openLoop(300, started, () => users.findById(db, pick(userIds.slice(1))), reads);
  await sleep(5_000);
  const holder = new pg.Client({ connectionString: url, application_name: 'fault-admin' });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [held]);
  const holdFrom = performance.now() - started;
  const writeLoop = openLoop(writesPerSecond, started, () => users.updatePassword(db, held, '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$bmV3'), blocked);
  await sleep(20_000);
  const holdTo = performance.now() - started;
  await holder.query('COMMIT');
  await holder.end();
  await writeLoop.stop();
  await sleep(3_000);
  await readLoop.stop();
  await db.destroy();
  const during = reads.filter((c) => c.start >= holdFrom && c.start < holdTo);
  const baseline = reads.filter((c) => c.start >= 1_000 && c.start < holdFrom);
  return { readsBefore: summary(baseline), readsWhileHeld: summary(during), callsOnTheHeldRow: summary(blocked) };
}

async function migrationScenario(url: string, userIds: string[]) {
  const name = '20990101000000_fault_columns';
  const migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-fault-migrations-'));
  await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
  await writeFile(path.join(migrationsDir, `${name}.up.sql`), 'ALTER TABLE users ADD COLUMN fault_note text;\nALTER TABLE refresh_tokens ADD COLUMN fault_note text;\n');
  await writeFile(path.join(migrationsDir, `${name}.down.sql`), 'ALTER TABLE refresh_tokens DROP COLUMN fault_note;\nALTER TABLE users DROP COLUMN fault_note;\n');
  const db = createDb({ databaseUrl: url, applicationName: 'fault-migration' }, { onPoolError: () => undefined });
  const chains = await Promise.all(userIds.slice(1, 151).map(async (userId) => ({ token: (await refreshTokens.issue(db, { userId })).token, busy: false })));
  const started = performance.now();
  const traffic: Call[] = [];
  const reads = openLoop(300, started, () => users.findById(db, pick(userIds.slice(1))), traffic);
  const rotations = openLoop(
    50,
    started,
    async () => {
      const chain = chains.find((c) => !c.busy);
      if (!chain) return;
      chain.busy = true;
      try {
        chain.token = (await refreshTokens.rotate(db, chain.token)).token;
      } finally {
        chain.busy = false;
      }
    },
    traffic,
  );
  await sleep(3_000);
  const reader = new pg.Client({ connectionString: url, application_name: 'fault-long-reader' });
  await reader.connect();
  await reader.query('BEGIN');
  await reader.query('SELECT count(*) FROM users');
  await reader.query('SELECT count(*) FROM refresh_tokens');
  const readerEnds = sleep(15_000).then(async () => {
    await reader.query('COMMIT');
    await reader.end();
  });
  await sleep(1_000);
  const migrationFrom = performance.now() - started;
  const attempts: string[] = [];
  let migrationError: string | undefined;
  await migrate({ databaseUrl: url, migrationsDir, warn: (line: string) => attempts.push(line) } as Parameters<typeof migrate>[0]).catch(
    (error: unknown) => (migrationError = (error as Error).message),
  );
  const migrationTo = performance.now() - started;
  await readerEnds;
  await sleep(3_000);
  await reads.stop();
  await rotations.stop();
  const applied = new pg.Client({ connectionString: url });
  await applied.connect();
  const recorded = (await applied.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).rowCount;
  await applied.end();
  await db.destroy();
  await rm(migrationsDir, { recursive: true, force: true });
  return {
    trafficBefore: summary(traffic.filter((c) => c.start >= 1_000 && c.start < migrationFrom - 1_000)),
    trafficDuringAndAfterMigration: summary(traffic.filter((c) => c.start >= migrationFrom)),
    migrationSeconds: Number(((migrationTo - migrationFrom) / 1000).toFixed(1)),
    migrationAttemptsReported: attempts.length,
    migrationError,
    recordedTimes: recorded,
  };
}

const { url, stop } = await startBenchDatabase(log);
const results: Record<string, unknown> = { machine: `${os.cpus().length} cpu, load ${os.loadavg().map((n) => n.toFixed(1)).join(' ')}` };
try {
  const userIds = await seed(url);
  if (only.has('partition')) results.partition = await partitionScenario(url, userIds);
  if (only.has('hotrow')) results.hotRow = await hotRowScenario(url, userIds, 1);
  if (only.has('hotburst')) results.hotBurst = await hotRowScenario(url, userIds, 20);
  if (only.has('migration')) results.migration = await migrationScenario(url, userIds);
} finally {
  await stop();
}
console.log(JSON.stringify(results, null, 2));
await writeFile(path.join(packageRoot(), 'bench', 'faults-results.json'), JSON.stringify(results, null, 2));
process.exit(0);
