import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../../src/operations/files/progress-reporter.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';
import { runCli } from '../../support/run-cli.js';
import { execute } from '../../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

const available = toolsAvailable(
  [path.join(debianPostgresBinDir, 'pg_dump')],
  'the WebAssembly backup memory test (pg_dump 15, too old for the PostgreSQL 17 server)',
);

// 400,000 rows (~120 MB of SQL) in `npm test`, where a million took 18 s of a busy suite; the
// figures for a million: WASM_BACKUP_TEST_ROWS=1000000 npm test -- --project direct test/operations/wasm-pg-dump/wasm-backup-memory.test.ts
const rows = Number(process.env.WASM_BACKUP_TEST_ROWS ?? 400_000);

// Loaded into the command's process: prints its peak resident memory (all threads) when it exits.
const peakMemoryReporter = `data:text/javascript;base64,${Buffer.from(
  `import { isMainThread } from 'node:worker_threads';
   if (isMainThread) process.on('exit', () => process.stderr.write('peak-rss-kb ' + process.resourceUsage().maxRSS + '\\n'));`,
).toString('base64')}`;

async function backupWithPeakMemory(databaseUrl: string, backupDir: string) {
  const started = Date.now();
  const result = await runCli('db-backup', [], {
    DATABASE_URL: databaseUrl,
    BACKUP_DIR: backupDir,
    PG_DUMP: '',
    NODE_OPTIONS: `--import=${peakMemoryReporter}`,
  });
  const seconds = (Date.now() - started) / 1000;
  expect(result.code, result.stderr).toBe(0);
  const peakKb = Number(/peak-rss-kb (\d+)/.exec(result.stderr)?.[1]);
  expect(peakKb).toBeGreaterThan(0);
  return { file: result.stdout.trim(), stderr: result.stderr, seconds, peakBytes: peakKb * 1024 };
}

describe.skipIf(!available)('db:backup with the WebAssembly pg_dump streams', () => {
  let database: TestDatabase;
  let emptyDatabase: TestDatabase;
  let backupDir: string;

  beforeAll(async () => {
    // The baseline holds the schema without rows: a dump of nothing at all (pg_dump's session
    // settings alone) is no backup, and refused as one.
    [database, emptyDatabase] = await Promise.all([createTestDatabase({ empty: true }), createTestDatabase()]);
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-wasm-memory-'));
  });
  afterAll(async () => {
    await Promise.all([database?.drop(), emptyDatabase?.drop()]);
    await rm(backupDir, { recursive: true, force: true });
  });

  it(`dumps ${rows.toLocaleString('en')} rows without holding the dump in memory`, { timeout: 180_000 }, async () => {
    // The same command on a database without rows (while the rows are made): what it needs whatever the data.
    const [empty] = await Promise.all([
      backupWithPeakMemory(emptyDatabase.url, backupDir),
      // About 300 bytes of SQL a row (the padding is 2 bytes in UTF-8). Unlogged: the rows are made without WAL, pg_dump dumps them all the same.
      execute(
        database.url,
        `CREATE UNLOGGED TABLE events AS
           SELECT i AS id, timestamptz '2025-01-01' + i * interval '1 second' AS at, rpad('event ' || i || ' ✓', 150, '·') AS note
           FROM generate_series(1, ${rows}) AS i`,
      ),
    ]);

    const full = await backupWithPeakMemory(database.url, backupDir);

    const sql = /read back ([\d.]+) MB of SQL/.exec(full.stderr);
    expect(sql, full.stderr).not.toBeNull();
    const sqlBytes = Number(sql![1]) * 1024 * 1024;
    const growth = full.peakBytes - empty.peakBytes;
    console.log(
      `WebAssembly pg_dump of ${rows.toLocaleString('en')} rows: ${formatBytes(sqlBytes)} of SQL, ` +
        `${formatBytes((await stat(full.file)).size)} gzip-compressed, ${full.seconds.toFixed(1)} s for the whole db:backup ` +
        `(dump, compression, verification); peak memory ${formatBytes(full.peakBytes)} ` +
        `(the schema without rows: ${formatBytes(empty.peakBytes)}, ${empty.seconds.toFixed(1)} s)`,
    );
    expect(full.stderr).toContain('dumping table public.events (1 of 1)');
    // Holding the dump (or a copy of it in pg_dump's in-memory filesystem, or an unbounded
    // queue on either side of pg_dump) would grow memory by about its size or more; streaming
    // keeps the growth to fixed buffers (two 1 MB rings) and garbage not yet collected.
    expect(growth).toBeLessThan(sqlBytes / 2);
  });
});
