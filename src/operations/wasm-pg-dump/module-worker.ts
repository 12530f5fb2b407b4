import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { packageRoot } from '../../package-root.js';

/**
 * Starts a worker thread running one of the modules of `src/operations/wasm-pg-dump/` (by name, without
 * extension), wherever this code runs from: compiled beside this file (`dist/`, plain
 * node, and the tests' bundles of the commands), or from the TypeScript sources, as `npm run`
 * scripts (tsx) do. A worker does not inherit tsx's loader, so for sources it registers tsx
 * itself before importing the module. (The tests' own processes start the bundled copies
 * instead: see vitest.config.ts.)
 *
 * @example
 * const worker = startModuleWorker('pg-socket-worker', { workerData })
 */
export function startModuleWorker(name: string, options: WorkerOptions = {}): Worker {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const extension of ['.js', '.mjs']) {
    const compiled = path.join(here, `${name}${extension}`);
    if (existsSync(compiled)) return new Worker(compiled, options);
  }
  const source = [path.join(here, `${name}.ts`), path.join(packageRoot(), 'src', 'operations', 'wasm-pg-dump', `${name}.ts`)].find((file) =>
    existsSync(file),
  );
  if (!source) throw new Error(`cannot find the worker module ${name} beside ${here}`);
  // tsx's ES-module API (its CommonJS twin, which require.resolve finds, cannot register in a worker).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const code = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(pathToFileURL(source).href)}); });`;
  return new Worker(code, { ...options, eval: true });
}
