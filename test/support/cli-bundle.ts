import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { packageRoot } from '../../src/package-root.js';

/**
 * Bundles each command of `src/cli/` into one ES module (dependencies stay external), so a
 * test that runs a command as its own process starts plain `node` in about a tenth of a
 * second instead of compiling TypeScript through tsx on every spawn. The bundles live under
 * node_modules/.cache, inside the package, so `packageRoot()` still finds `migrations/`.
 */
export async function bundleCliCommands(): Promise<string> {
  const root = packageRoot();
  const outdir = path.join(root, 'node_modules', '.cache', 'kw-db-cli', String(process.pid));
  const entries = (await readdir(path.join(root, 'src', 'cli')))
    .filter((file) => file.endsWith('.ts'))
    .map((file) => path.join(root, 'src', 'cli', file));
  await build({
    entryPoints: entries,
    outdir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outExtension: { '.js': '.mjs' },
    logLevel: 'warning',
  });
  return outdir;
}
