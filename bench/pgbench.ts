import { execFile as execFileCallback } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFile = promisify(execFileCallback);

/** Debian's pgbench (PostgreSQL 15's client works against the 17 server). */
export const pgbenchBinary = process.env.BENCH_PGBENCH ?? '/usr/lib/postgresql/15/bin/pgbench';

/**
 * Runs a pgbench script with `-M prepared` (every statement parsed and planned once per
 * connection: the server's ceiling for these statements) and returns its transactions per
 * second, without the connection time.
 */
export async function runPgbench(
  url: string,
  script: string,
  options: { clients: number; seconds: number },
): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kw-pgbench-'));
  const file = path.join(dir, 'script.sql');
  try {
    await writeFile(file, `${script}\n`);
    const { stdout } = await execFile(
      pgbenchBinary,
      ['-n', '-M', 'prepared', '-c', String(options.clients), '-j', '2', '-T', String(options.seconds), '-D', 'n=0', '-f', file, url],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
    const failed = /number of failed transactions: (\d+)/.exec(stdout);
    if (!tps) throw new Error(`pgbench printed no tps:\n${stdout}`);
    if (failed && Number(failed[1]) > 0) throw new Error(`pgbench: ${failed[1]} failed transactions:\n${stdout}`);
    return Math.round(Number(tps[1]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
