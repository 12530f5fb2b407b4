import path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { inject } from 'vitest';

/**
 * What `startModuleWorker` (src/operations/wasm-pg-dump/module-worker.ts) is, in the tests, to
 * the WebAssembly pg_dump: the worker module from the bundle the global setup made for the
 * commands, rather than from the TypeScript sources through tsx (see vitest.config.ts).
 *
 * @example
 * const worker = startModuleWorker('pg-socket-worker', { workerData })
 */
export function startModuleWorker(name: string, options: WorkerOptions = {}): Worker {
  return new Worker(path.join(inject('cliDir'), `${name}.mjs`), options);
}
