/*
 * Worker thread that runs the WebAssembly pg_dump. pg_dump's `main` blocks this thread
 * until it ends (its libpq reads synchronously, waiting in Atomics.wait), which is why it
 * has a thread of its own: the command's event loop, progress and Ctrl-C stay free.
 *
 * workerData: WasmPgDumpWorkerData. Messages to the parent: WasmPgDumpEvent.
 */
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { ByteRingReader, ByteRingWriter, type ByteRingMemory } from './byte-ring.js';
import { createPgDumpModule, pgDumpStdout, runPgDumpMain } from './pglite-pg-dump-module.js';

/** What the pg_dump worker runs. */
export interface WasmPgDumpWorkerData {
  /** pg_dump's arguments (the connection's among them; never the password). */
  args: string[];
  /** libpq's environment: PGPASSWORD and the like. */
  env: Record<string, string>;
  /** Bytes from the server (filled by the socket worker); absent for `--version`. */
  ring?: ByteRingMemory;
  /** Where pg_dump's bytes to the server go (to the socket worker). */
  sendPort?: MessagePort;
  /**
   * Where the dump goes, for the parent to read; ended after pg_dump's last byte. pg_dump
   * waits while it is full, so a slow disk slows pg_dump down instead of filling memory.
   */
  output?: ByteRingMemory;
  /**
   * When given: first report the version (`--version` in a throwaway instance), then wait
   * until Int32 slot 0 turns 1 (the socket is connected: run `args`) or 2 (give up).
   */
  startGate?: SharedArrayBuffer;
}

/** What the pg_dump worker tells its parent. */
export type WasmPgDumpEvent =
  | { type: 'stderr'; line: string }
  | { type: 'version'; stdout: string }
  | { type: 'exit'; code: number; stdout: string }
  | { type: 'failed'; message: string };

// Emscripten's stdio hands the device small writes; batching them keeps ring operations few.
const batchSize = 64 * 1024;

async function main(): Promise<void> {
  const data = workerData as WasmPgDumpWorkerData;
  const parent = parentPort!;
  const post = (event: WasmPgDumpEvent) => parent.postMessage(event);
  const reader = data.ring ? new ByteRingReader(data.ring) : undefined;
  const output = data.output ? new ByteRingWriter(data.output) : undefined;
  const batch = new Uint8Array(batchSize);
  let used = 0;
  const flush = () => {
    output?.writeAll(batch.subarray(0, used));
    used = 0;
  };

  try {
    if (data.startGate) {
      const gate = new Int32Array(data.startGate);
      const probe = await createPgDumpModule({
        receive: () => 0,
        send: (bytes) => bytes.length,
        output: () => undefined,
        stderrLine: () => undefined,
        env: {},
      });
      runPgDumpMain(probe, ['--version']);
      post({ type: 'version', stdout: pgDumpStdout(probe) });
      Atomics.wait(gate, 0, 0);
      if (Atomics.load(gate, 0) !== 1) return;
    }
    const module = await createPgDumpModule({
      receive: (target) => (reader ? reader.read(target) : 0),
      send: (bytes) => {
        data.sendPort?.postMessage(bytes.slice());
        return bytes.length;
      },
      output: (bytes) => {
        let offset = 0;
        while (offset < bytes.length) {
          const count = Math.min(bytes.length - offset, batchSize - used);
          batch.set(bytes.subarray(offset, offset + count), used);
          used += count;
          offset += count;
          if (used === batchSize) flush();
        }
      },
      stderrLine: (line) => post({ type: 'stderr', line }),
      env: data.env,
    });
    const code = runPgDumpMain(module, data.args);
    flush();
    output?.end();
    post({ type: 'exit', code, stdout: pgDumpStdout(module) });
  } catch (error) {
    post({ type: 'failed', message: error instanceof Error ? error.message : JSON.stringify(error) ?? String(error) });
  } finally {
    data.sendPort?.postMessage('end');
  }
}

// Only as a worker thread: the types above are imported elsewhere, never this module's code.
if (!isMainThread) void main();
