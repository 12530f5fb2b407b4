import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureDatabase } from '../src/provisioning/database-admin.js';
import { startEmbeddedServer, stopEmbeddedServer } from '../src/embedded/embedded-server.js';
import { freePort } from '../src/embedded/free-port.js';
import { migrate } from '../src/migrations/migrator.js';

/**
 * The database the benchmark runs against: `BENCH_DATABASE_URL` (an empty database you can
 * spare: the benchmark fills it), or a throwaway embedded PostgreSQL 17 that is removed
 * afterwards. Migrated to the latest schema.
 */
export async function startBenchDatabase(log: (line: string) => void): Promise<{ url: string; stop: () => Promise<void> }> {
  const existing = process.env.BENCH_DATABASE_URL?.trim();
  if (existing) {
    await ensureDatabase(existing);
    await migrate({ databaseUrl: existing });
    return { url: existing, stop: async () => undefined };
  }
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-bench-'));
  // The server runs as the 'postgres' account when this runs as root: let it into this folder.
  await chmod(root, 0o711);
  const dataDir = path.join(root, 'data');
  log(`starting a throwaway embedded PostgreSQL 17 in ${dataDir}`);
  const { url } = await startEmbeddedServer({
    dataDir,
    port: await freePort(),
    user: 'postgres',
    password: 'postgres',
    database: 'kennwilliamson_bench',
    // Production durability: the embedded defaults (fsync, synchronous_commit and
    // full_page_writes on), so that every commit waits for its WAL flush as a service's would.
    // Only memory and room for the benchmark's connections (four sides, pgbench, observers).
    settings: { shared_buffers: '512MB', max_connections: '150' },
  });
  await migrate({ databaseUrl: url });
  return {
    url,
    stop: async () => {
      await stopEmbeddedServer(dataDir);
      await rm(root, { recursive: true, force: true });
    },
  };
}
