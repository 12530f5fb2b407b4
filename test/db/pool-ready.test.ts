import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { startFakePostgres } from '../support/fake-postgres.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// ready() must keep Node running by itself: a service whose start-up is `await migrate();
// const db = createDb(); await poolOf(db).ready()` has nothing else holding the event loop.
// vitest keeps its own loop alive, so the start-up runs in a child process with plain node.
const service = `
import { createDb, migrate, poolOf } from './src/index.ts';
// The README's start-up: migrations first (here: nothing left to apply), then the pool, from
// a timer's callback (as after any other awaited start-up work): then nothing but the pool
// can hold the event loop, and before the fix Node exited with code 13 every time.
if (process.env.KW_MIGRATE === '1') await migrate({ databaseUrl: process.env.KW_URL });
await new Promise((resolve) => setTimeout(resolve, 10));
const db = createDb({
  databaseUrl: process.env.KW_URL,
  minConnections: 2,
  maxConnections: 2,
  connectTimeoutMs: Number(process.env.KW_CONNECT_TIMEOUT_MS),
});
try {
  await poolOf(db).ready({ timeoutMs: Number(process.env.KW_READY_TIMEOUT_MS) });
  console.log(JSON.stringify({ ready: true, open: poolOf(db).pool.totalCount }));
} catch (error) {
  console.log(JSON.stringify({ ready: false, name: error.name, message: error.message }));
} finally {
  await db.destroy();
}
`;

const outdir = path.join(packageRoot(), 'node_modules', '.cache', 'kw-db-ready', String(process.pid));
let entry: string;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
  await mkdir(outdir, { recursive: true });
  entry = path.join(outdir, 'service.mjs');
  await build({
    stdin: { contents: service, resolveDir: packageRoot(), sourcefile: 'service.ts', loader: 'ts' },
    outfile: entry,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
});
afterAll(async () => {
  await database?.drop();
  await rm(outdir, { recursive: true, force: true });
});

function runService(env: Record<string, string>): Promise<{ code: number | null; output: Record<string, unknown> | undefined; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      const line = stdout.trim().split('\n').pop();
      resolve({ code, output: line ? (JSON.parse(line) as Record<string, unknown>) : undefined, stderr });
    });
  });
}

it('keeps Node running until the pool is ready, so a start-up that awaits only ready() gets its connections', async () => {
  const result = await runService({ KW_URL: database.url, KW_MIGRATE: '1', KW_CONNECT_TIMEOUT_MS: '10000', KW_READY_TIMEOUT_MS: '20000' });
  // Before, the unref()'d refill timer let Node exit with code 13 (an unsettled top-level
  // await) and no connection at all.
  expect(result).toMatchObject({ code: 0, output: { ready: true, open: 2 } });
});

it('fails ready() with PoolNotReadyError after its own timeout when the server never answers the login', async () => {
  const silent = await startFakePostgres('nothing');
  try {
    const url = new URL(database.url);
    url.port = String(silent.port);
    // The connect timeout is longer than ready()'s: only ready()'s own bound can end the wait.
    const result = await runService({ KW_URL: url.toString(), KW_CONNECT_TIMEOUT_MS: '1500', KW_READY_TIMEOUT_MS: '300' });
    expect(result).toMatchObject({ code: 0, output: { ready: false, name: 'PoolNotReadyError' } });
    expect(String(result.output?.message)).toMatch(/not ready after \d+ ms: 0 of its minimum 2 connection/);
    expect(silent.accepted()).toBeGreaterThan(0);
  } finally {
    await silent.close();
  }
});
