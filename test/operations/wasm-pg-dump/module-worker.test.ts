import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createByteRing } from '../../../src/operations/wasm-pg-dump/byte-ring.js';
import { startModuleWorker } from '../../../src/operations/wasm-pg-dump/module-worker.js';
import type { PgSocketEvent, PgSocketWorkerData } from '../../../src/operations/wasm-pg-dump/pg-socket-worker.js';

// Everywhere else in the tests the WebAssembly pg_dump's workers start from the commands'
// bundle (vitest.config.ts); `npm run db:backup` starts them from the TypeScript sources.
describe('startModuleWorker from the TypeScript sources', () => {
  it('runs the worker module in a thread of its own, tsx registered there', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const workerData: PgSocketWorkerData = { target: { host: '127.0.0.1', port: closedPort }, connectTimeoutMs: 5_000, ring: createByteRing(1024) };
    const worker = startModuleWorker('pg-socket-worker', { workerData });
    try {
      const event = await new Promise<PgSocketEvent>((resolve, reject) => worker.once('message', resolve).once('error', reject));
      expect(event).toMatchObject({ type: 'connect-failed', code: 'ECONNREFUSED' });
    } finally {
      await worker.terminate();
    }
  });
});
