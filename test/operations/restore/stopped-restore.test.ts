import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withClient } from '../../../src/db/with-client.js';
import { eventually } from '../../support/eventually.js';
import { migrationsDefining } from '../../support/migration-sandbox.js';
import { tableContents } from '../../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// Ctrl-Z on a restore (SIGSTOP) in the middle of a table: the server waited for the rest of its
// rows with every table of public locked, for as long as the restore stayed stopped (no idle
// limit or statement_timeout acts on a COPY waiting for its client, and the stopped host's
// kernel answers keepalive). Its watchdog, a process outside its group, ends it once it has
// been stopped for its idle limit (stallTimeoutMs and a round trip: 11 s here). A file of its
// own, beside the others: it waits that long at no CPU.
describe('a restore stopped in the middle of a table', () => {
  let workDir: string;
  let target: TestDatabase;
  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-stopped-restore-'));
    target = await createTestDatabase();
  });
  afterAll(async () => {
    await target?.drop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('is ended once stopped for its idle limit, and the database is as it was', { timeout: 90_000 }, async () => {
    // Rows the server checks slowly (50 ms each, in a function of the service's migrations), so
    // that the restore is stopped while it sends them; large ones, so that few sit in the
    // sockets, which the server goes on storing while the restore is stopped.
    const slowRow = 'CREATE FUNCTION public.slow_row(n integer) RETURNS boolean LANGUAGE sql AS $$ SELECT pg_catalog.pg_sleep(0.05) IS NOT NULL AND n > 0 $$;\n';
    const rows = Array.from({ length: 400 }, (_, index) => `${index + 1}\t${'x'.repeat(64_000)}\n`).join('');
    const dump =
      `--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n` +
      `SELECT pg_catalog.set_config('search_path', '', false);\n\n${slowRow}\n` +
      'CREATE TABLE public.loaded_slowly (n integer, filler text, CONSTRAINT slow CHECK (public.slow_row(n)));\n\n' +
      `COPY public.loaded_slowly (n, filler) FROM stdin;\n${rows}\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n`;
    const file = path.join(workDir, 'loaded-slowly.sql.gz');
    await writeFile(file, gzipSync(Buffer.from(dump)));
    const migrationsDir = await migrationsDefining(slowRow, workDir);
    const before = await tableContents(target.url);

    const restore = JSON.stringify(fileURLToPath(new URL('../../../src/operations/restore/restore.ts', import.meta.url)));
    const script =
      `import { restoreDatabase } from ${restore};\n` +
      `await restoreDatabase({ databaseUrl: ${JSON.stringify(target.ownerUrl)}, backup: { file: ${JSON.stringify(file)}, bytes: 0, format: 'sql-gzip', checksum: 'absent' }, ` +
      `migrationsDir: ${JSON.stringify(migrationsDir)}, stallTimeoutMs: 1000 });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const restoring = async () =>
      (
        await withClient(target.url, (client) =>
          client.query<{ rows: number }>(
            `SELECT coalesce(p.tuples_processed, 0)::int AS rows FROM pg_stat_activity a LEFT JOIN pg_stat_progress_copy p USING (pid)
              WHERE a.datname = current_database() AND a.application_name = 'kennwilliamson-restore' AND a.backend_xid IS NOT NULL`,
          ),
        )
      ).rows;
    try {
      await eventually(async () => ((await restoring())[0]?.rows ?? 0) >= 5, 'the restore stores rows of the slow table', { timeoutMs: 60_000 });
      child.kill('SIGSTOP');
      await eventually(async () => (await restoring()).length === 0, "the stopped restore's transaction ends", { timeoutMs: 30_000, intervalMs: 200 });
      expect(await tableContents(target.url)).toEqual(before);
    } finally {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    // Ended by its watchdog's SIGTERM (this process has no handler of its own for it).
    expect(await exited).toBe('SIGTERM');
  });
});
