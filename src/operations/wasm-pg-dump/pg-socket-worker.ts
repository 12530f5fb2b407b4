/*
 * Worker thread that owns the WebAssembly pg_dump's connection to the server: a plain TCP
 * (or Unix-domain) socket. Bytes from the server go into a shared ByteRing that pg_dump's
 * thread reads synchronously; bytes pg_dump sends arrive as messages on a MessagePort. Its
 * own thread, so the socket keeps flowing while pg_dump's thread is blocked inside wasm and
 * whatever the main thread does.
 *
 * workerData: PgSocketWorkerData. Messages to the parent: PgSocketEvent.
 */
import net from 'node:net';
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { ByteRingWriter, type ByteRingMemory } from './byte-ring.js';

/** Where the socket worker connects, and the ring it fills. */
export interface PgSocketWorkerData {
  /** `{ host, port }` for TCP, `{ path }` for a Unix-domain socket. */
  target: { host: string; port: number } | { path: string };
  connectTimeoutMs: number;
  ring: ByteRingMemory;
}

/** What the socket worker tells its parent. */
export type PgSocketEvent =
  | { type: 'connected' }
  /** Node's own words: `connect ECONNREFUSED 127.0.0.1:5433`. */
  | { type: 'connect-failed'; message: string; code?: string }
  /** The connection ended; `error` when it broke rather than closed. */
  | { type: 'closed'; error?: string };

/** Sent to the socket worker: the port pg_dump's thread sends its bytes through. */
export interface PgSocketAttach {
  type: 'attach';
  port: MessagePort;
}

function main(): void {
  const data = workerData as PgSocketWorkerData;
  const parent = parentPort!;
  const ring = new ByteRingWriter(data.ring);

  // Server → pg_dump, through one reused read buffer (no allocation per read). What does not
  // fit in the ring is copied aside and reading pauses until pg_dump took it: memory stays
  // bounded whatever the speed of either side.
  let pending: Buffer | undefined;
  let draining = false;
  let closed = false;
  // Ends the ring once the connection closed and every byte made it in.
  const endIfDone = () => {
    if (closed && !pending && !draining) ring.end();
  };
  const drain = async () => {
    if (draining) return;
    draining = true;
    while (pending) {
      const taken = ring.write(pending);
      pending = taken === pending.length ? undefined : pending.subarray(taken);
      if (pending) await ring.spaceFreed();
    }
    draining = false;
    socket.resume();
    endIfDone();
  };
  // Set once the server sent its first bytes (see the answer timeout below).
  let answered = false;
  let answerTimer: NodeJS.Timeout | undefined;
  const onread = {
    buffer: Buffer.alloc(64 * 1024),
    callback: (count: number, buffer: Uint8Array): boolean => {
      if (!answered) {
        answered = true;
        clearTimeout(answerTimer);
      }
      const taken = ring.write(buffer.subarray(0, count));
      if (taken === count) return true;
      pending = Buffer.from(buffer.subarray(taken, count));
      // Returning false pauses reading; drain() resumes it, so it must run after that pause.
      setImmediate(() => void drain());
      return false;
    },
  };
  const socket = 'path' in data.target ? net.connect({ path: data.target.path, onread }) : net.connect({ ...data.target, onread });
  let connected = false;
  let closedReported = false;
  const report = (event: PgSocketEvent) => parent.postMessage(event);

  const connectTimer = setTimeout(() => {
    socket.destroy(Object.assign(new Error(`connect ETIMEDOUT after ${data.connectTimeoutMs / 1000} s`), { code: 'ETIMEDOUT' }));
  }, data.connectTimeoutMs);
  socket.setNoDelay(true);
  // As every connection of the library: a server that vanishes while pg_dump waits for its
  // data is noticed in about 15 s (5 s idle, then libuv's 10 probes a second apart).
  if (!('path' in data.target)) socket.setKeepAlive(true, 5_000);

  socket.once('connect', () => {
    clearTimeout(connectTimer);
    connected = true;
    report({ type: 'connected' });
  });

  const finish = (error?: Error) => {
    if (closedReported) return;
    closedReported = true;
    closed = true;
    report(error ? { type: 'closed', error: error.message } : { type: 'closed' });
    endIfDone();
  };
  socket.on('error', (error: NodeJS.ErrnoException) => {
    clearTimeout(connectTimer);
    if (!connected) {
      closedReported = true;
      ring.end();
      report({ type: 'connect-failed', message: error.message, ...(error.code ? { code: error.code } : {}) });
      return;
    }
    finish(error);
  });
  socket.on('close', () => finish());

  // pg_dump → server. libpq's connect_timeout cannot work here (its poll always says
  // ready, then its read waits), so the timeout also covers the server's first answer: a
  // server that accepts connections but never answers fails like an unreachable one.
  parent.on('message', (message: PgSocketAttach) => {
    if (message.type !== 'attach') return;
    message.port.on('message', (bytes: Uint8Array | 'end') => {
      if (bytes === 'end') return void socket.end();
      if (!answered && !answerTimer) {
        answerTimer = setTimeout(() => {
          const seconds = data.connectTimeoutMs / 1000;
          socket.destroy(Object.assign(new Error(`the server did not answer within ${seconds} s (connect_timeout)`), { code: 'ETIMEDOUT' }));
        }, data.connectTimeoutMs);
      }
      socket.write(bytes);
    });
  });
}

// Only as a worker thread: the types above are imported elsewhere, never this module's code.
if (!isMainThread) main();
