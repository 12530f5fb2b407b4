import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createByteRing } from '../../../src/operations/wasm-pg-dump/byte-ring.js';
import { startModuleWorker } from '../../../src/operations/wasm-pg-dump/module-worker.js';
import type { PgSocketEvent, PgSocketWorkerData } from '../../../src/operations/wasm-pg-dump/pg-socket-worker.js';

// Everywhere else in the tests the WebAssembly pg_dump's workers start from the commands'
// bundle (vitest.config.ts); `npm run db:backup` starts them from the TypeScript sources.
describe('startModuleWorker from the TypeScript sources', () => {
  it('runs the worker module in a thread of its own, tsx registered there', async () => {
    // A socket path nothing listens on: the worker says so with Node's own error code.
    const target = { path: path.join(os.tmpdir(), `kw-no-server-${process.pid}.sock`) };
    const workerData: PgSocketWorkerData = { target, connectTimeoutMs: 5_000, ring: createByteRing(1024) };
    const worker = startModuleWorker('pg-socket-worker', { workerData });
    try {
      const event = await new Promise<PgSocketEvent>((resolve, reject) => worker.once('message', resolve).once('error', reject));
      expect(event).toMatchObject({ type: 'connect-failed', code: 'ENOENT' });
    } finally {
      await worker.terminate();
    }
  });
});
