import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

// A CommonJS service's start-up: `await poolOf(db).ready()` with nothing else pending. The
// pool's refill timer is unref'd so that an idle pool never keeps a process alive; while a
// caller awaits ready() it must, or the process exits with code 0 before the first connection
// is even tried, and the service never starts (issue 18's CommonJS service found it). Run as
// plain node on a bundle of the sources: tsx's loader would keep the process alive itself.
it('keeps the process alive while a caller awaits ready(), then lets it end', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kw-ready-'));
  try {
    const script = path.join(dir, 'start.cjs');
    const src = path.join(packageRoot(), 'src', 'db');
    await build({
      stdin: {
        contents: `import { createTunedPool } from ${JSON.stringify(path.join(src, 'tuned-pool.ts'))};
import { resolveDbConfig } from ${JSON.stringify(path.join(src, 'db-config.ts'))};
const tuned = createTunedPool(resolveDbConfig({ databaseUrl: process.env.DATABASE_URL }));
tuned.ready().then(() => { process.stdout.write('ready'); return tuned.end(); });`,
        resolveDir: src,
        loader: 'ts',
      },
      outfile: script,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      // As the CommonJS build does (scripts/build-commonjs.mjs): import.meta.url is the file's URL.
      define: { 'import.meta.url': 'importMetaUrl' },
      banner: { js: "const importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
      packages: 'external',
      logLevel: 'warning',
    });
    const { stdout } = await promisify(execFile)(process.execPath, [script], {
      env: { ...process.env, DATABASE_URL: testDb.url, NODE_PATH: path.join(packageRoot(), 'node_modules') },
      timeout: 20_000,
    });
    expect(stdout).toBe('ready');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
