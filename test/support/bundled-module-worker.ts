import path from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { inject } from 'vitest';

// Who is told of each worker started (observeModuleWorkers).
const observers = new Set<(name: string, worker: Worker, options: WorkerOptions) => void>();

/**
 * What `startModuleWorker` (src/operations/wasm-pg-dump/module-worker.ts) is, in the tests, to
 * the WebAssembly pg_dump: the worker module from the bundle the global setup made for the
 * commands, rather than from the TypeScript sources through tsx (see vitest.config.ts).
 *
 * @example
 * const worker = startModuleWorker('pg-socket-worker', { workerData })
 */
export function startModuleWorker(name: string, options: WorkerOptions = {}): Worker {
  const worker = new Worker(path.join(inject('cliDir'), `${name}.mjs`), options);
  for (const observer of observers) observer(name, worker, options);
  return worker;
}

/**
 * Tells `observer` of every worker thread the WebAssembly pg_dump starts in this process
 * (its name, as `pg-socket-worker`, the real Worker and what it was given) until the
 * returned function is called: for a test that acts on a thread from outside, as a crash
 * would (terminating the socket thread in the middle of a dump), with no hook for it in the
 * library.
 *
 * @example
 * const stopObserving = observeModuleWorkers((name, worker) => name === 'pg-socket-worker' && sockets.push(worker))
 */
export function observeModuleWorkers(observer: (name: string, worker: Worker, options: WorkerOptions) => void): () => void {
  observers.add(observer);
  return () => void observers.delete(observer);
}
