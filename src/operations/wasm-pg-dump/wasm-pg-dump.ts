import os from 'node:os';
import type { Writable } from 'node:stream';
import { MessageChannel, type Worker } from 'node:worker_threads';
import { ByteRingReader, ByteRingWriter, createByteRing } from './byte-ring.js';
import type { LibpqConnection } from '../pg-tools/libpq-connection.js';
import { startModuleWorker } from './module-worker.js';
import type { PgSocketAttach, PgSocketEvent, PgSocketWorkerData } from './pg-socket-worker.js';
import { outputDevicePath, pgliteToolsPackage } from './pglite-pg-dump-module.js';
import type { WasmPgDumpEvent, WasmPgDumpWorkerData } from './wasm-pg-dump-worker.js';

/** Which WebAssembly pg_dump runs: `{ pgDump: '18.3', major: 18, package: '@electric-sql/pglite-tools 0.4.8' }`. */
export interface WasmPgDumpVersion {
  pgDump: string;
  major: number;
  package: string;
}

/** A WebAssembly pg_dump run that has connected to the server. */
export interface WasmPgDumpRun {
  version: WasmPgDumpVersion;
  /**
   * Writes what pg_dump writes (`--file` points at it) into `destination` as it comes, one
   * chunk at a time through one reused buffer, and ends it after the last byte. pg_dump
   * waits while `destination` is behind. The buffer is reused once a write's callback fired,
   * which suits streams that are done with a chunk by then (zlib, files); one that keeps
   * chunks (a PassThrough) must copy them. Resolves when everything was written; rejects when
   * writing fails or the run is aborted, and pg_dump is then stopped, and with the run's error
   * when pg_dump was stopped before its output ended (its thread or its connection's thread
   * died). Call it once.
   */
  pipeTo: (destination: Writable) => Promise<void>;
  /** Resolves when pg_dump has ended (its output may still be on its way to the destination); never rejects. */
  exited: Promise<WasmPgDumpExit>;
}

/** How the WebAssembly pg_dump ended. */
export interface WasmPgDumpExit {
  /** pg_dump's exit code; null when it did not run to its end (failed to load, stopped). */
  code: number | null;
  stderr: string;
  /** Why it did not run to its end. */
  error?: Error;
  /**
   * The connection broke, in Node's words (`read ECONNRESET`), or the thread that held it
   * failed or ended (`the socket thread ended unexpectedly (exit code 1)`).
   */
  connectionError?: string;
}

/** Options of {@link startWasmPgDump}. */
export interface WasmPgDumpOptions {
  /** The server and database, as for the native programs; the password reaches pg_dump through its environment only. */
  connection: LibpqConnection;
  /** pg_dump's own options, e.g. `['--format=plain', '--verbose']`; the connection, `--no-password` and `--file` are added. */
  args: string[];
  /** Called with the version before the connection is known to work, so a notice can name it. */
  onVersion?: (version: WasmPgDumpVersion) => void;
  /** Each line pg_dump writes to stderr, as it comes (`--verbose` progress). */
  onStderrLine?: (line: string) => void;
  /** Aborting stops pg_dump and closes the connection at once. */
  signal?: AbortSignal;
}

/** The server could not be reached; the message is Node's own (`connect ECONNREFUSED 127.0.0.1:5433`). */
export class WasmPgDumpConnectError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'WasmPgDumpConnectError';
  }
}

// Server bytes not yet read by pg_dump (beyond this the socket pauses), and output not yet
// taken by the destination (beyond this pg_dump waits): all the memory the data passes through.
const ringCapacity = 1024 * 1024;
const outputCapacity = 1024 * 1024;
const outputChunk = 256 * 1024;
// How long pg_dump gets to notice that its connection's thread is gone (it reads the end of
// the stream and exits with libpq's words) before it is stopped.
const socketGoneGraceMs = 2_000;

function parseVersion(stdout: string): WasmPgDumpVersion {
  const { name, version } = pgliteToolsPackage();
  const match = /\(PostgreSQL\)\s+(\d+)\.(\d+)/.exec(stdout);
  if (!match) throw new Error(`the WebAssembly pg_dump of ${name} ${version} printed no version`);
  return { pgDump: `${match[1]}.${match[2]}`, major: Number(match[1]), package: `${name} ${version}` };
}

// The next message of `worker` that `accept`s; rejects when the thread fails or ends first
// (stopped on Ctrl-C, say), so nobody waits for a message that cannot come.
function nextEvent<T>(worker: Worker, accept: (message: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = () => done(() => reject(new Error('the thread ended')));
    const onMessage = (message: T) => accept(message) && done(() => resolve(message));
    const onError = (error: Error) => done(() => reject(error));
    const done = (settle: () => void) => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      settle();
    };
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  });
}

/**
 * The version of the WebAssembly pg_dump (runs `pg_dump --version` in a worker).
 *
 * @example
 * await wasmPgDumpVersion() // { pgDump: '18.3', major: 18, package: '@electric-sql/pglite-tools 0.4.8' }
 */
export async function wasmPgDumpVersion(): Promise<WasmPgDumpVersion> {
  const worker = startModuleWorker('wasm-pg-dump-worker', {
    workerData: { args: ['--version'], env: {} } satisfies WasmPgDumpWorkerData,
  });
  try {
    const event = await nextEvent<WasmPgDumpEvent>(worker, (message) => message.type === 'exit' || message.type === 'failed');
    if (event.type === 'failed') throw new Error(`the WebAssembly pg_dump does not start: ${event.message}`);
    return parseVersion(event.type === 'exit' ? event.stdout : '');
  } finally {
    await worker.terminate();
  }
}

/**
 * Why the WebAssembly pg_dump must not be used for this connection, or undefined: the build
 * has neither TLS nor GSSAPI encryption, so a connection that pg would make with TLS (every
 * spelling pg reads as TLS: `sslmode` other than `disable`, `ssl=true`, `ssl=1`,
 * `ssl=no-verify`, a certificate parameter, or `PGSSLMODE` when the URL says nothing) is
 * refused rather than made in the clear, and so is one that demands GSSAPI encryption.
 *
 * @example
 * wasmPgDumpRefusal(libpqConnection('postgresql://u:p@db.example.org/app?ssl=true'))
 * // 'the WebAssembly pg_dump has no TLS support and cannot honour ssl=true; …'
 */
export function wasmPgDumpRefusal(connection: LibpqConnection, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (connection.tls) {
    return (
      `the WebAssembly pg_dump has no TLS support and cannot honour ${connection.tls}, with which pg connects to this server over TLS; ` +
      `it is meant for local servers: to back up over TLS, install PostgreSQL's client tools (a native pg_dump at least as new as the server) ` +
      `and put them on PATH or in PG_DUMP`
    );
  }
  if (env.PGGSSENCMODE === 'require') return 'the WebAssembly pg_dump has no GSSAPI encryption and cannot honour PGGSSENCMODE=require';
  return undefined;
}

function socketTarget(connection: LibpqConnection): PgSocketWorkerData['target'] {
  const { host, port } = connection.target;
  // A host starting with '/' is the folder of a Unix-domain socket, as for libpq.
  if (host.startsWith('/')) return { path: `${host}/.s.PGSQL.${port}` };
  return { host, port };
}

function libpqEnvironment(connection: LibpqConnection): Record<string, string> {
  // os.userInfo() throws for a uid without a passwd entry (some containers).
  let user = process.env.USER ?? 'postgres';
  try {
    user = os.userInfo().username;
  } catch {
    // keep the fallback
  }
  return {
    // libpq's default user name, which a native pg_dump takes from the OS.
    USER: user,
    LOGNAME: user,
    ...connection.env,
    // The build has neither; never offer them (wasmPgDumpRefusal covers connections that demand them).
    PGSSLMODE: 'disable',
    PGGSSENCMODE: 'disable',
  };
}

/**
 * Starts the WebAssembly pg_dump of `@electric-sql/pglite-tools` against a real server, in
 * two worker threads: one owns the socket and connects first, so a refused or unreachable
 * server is reported in Node's own words ({@link WasmPgDumpConnectError}); the other runs
 * pg_dump, whose libpq does the protocol and authentication itself (its errors come in
 * libpq's words on stderr). The password reaches it through its environment with
 * `--no-password`, never through its arguments. Resolves once connected; a connection that
 * demands TLS is refused before anything starts.
 *
 * @example
 * const run = await startWasmPgDump({ connection: libpqConnection(url), args: ['--format=plain', '--verbose'] })
 * const gzip = createGzip()
 * const [{ code, stderr }] = await Promise.all([run.exited, run.pipeTo(gzip), pipeline(gzip, createWriteStream('dump.sql.gz'))])
 */
export async function startWasmPgDump(options: WasmPgDumpOptions): Promise<WasmPgDumpRun> {
  const { connection, signal } = options;
  const refusal = wasmPgDumpRefusal(connection);
  if (refusal) throw new Error(refusal);
  signal?.throwIfAborted();

  const ring = createByteRing(ringCapacity);
  const timeoutSeconds = Number(connection.env.PGCONNECT_TIMEOUT ?? 10);
  const socketWorker = startModuleWorker('pg-socket-worker', {
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
    workerData: {
      target: socketTarget(connection),
      connectTimeoutMs: (timeoutSeconds > 0 ? timeoutSeconds : 10) * 1000,
      ring,
    } satisfies PgSocketWorkerData,
  });
  const channel = new MessageChannel();
  const startGate = new SharedArrayBuffer(4);
  const gate = new Int32Array(startGate);
  const outputRing = createByteRing(outputCapacity);
  const dumpWorker = startModuleWorker('wasm-pg-dump-worker', {
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
    workerData: {
      args: [...options.args, '--no-password', `--file=${outputDevicePath}`, ...connection.args],
      env: libpqEnvironment(connection),
      ring,
      sendPort: channel.port2,
      output: outputRing,
      startGate,
    } satisfies WasmPgDumpWorkerData,
    transferList: [channel.port2],
  });
  const openGate = (value: 1 | 2) => {
    Atomics.store(gate, 0, value);
    Atomics.notify(gate, 0);
  };

  let connectionError: string | undefined;
  // A thread that dies is reported through the exit (below), never as an unhandled 'error' event.
  socketWorker.on('error', (error) => (connectionError ??= `the socket thread failed: ${error.message}`));
  // The exit code of the socket thread, once it ended. Only stopBoth and settle end it, unless
  // it failed (threw) or was stopped from outside; a promise, because that may happen before
  // the run below listens (while the start still waits for pg_dump's version).
  const socketThreadEnded = new Promise<number>((resolve) => socketWorker.once('exit', resolve));
  const socketClosed = nextEvent<PgSocketEvent>(socketWorker, (event) => {
    if (event.type === 'closed' && event.error) connectionError = event.error;
    return event.type === 'closed' || event.type === 'connect-failed';
  }).catch(() => undefined);
  const stopBoth = async () => {
    openGate(2);
    await Promise.all([dumpWorker.terminate(), socketWorker.terminate()]);
  };
  const abortStart = () => void stopBoth();
  signal?.addEventListener('abort', abortStart, { once: true });

  let version: WasmPgDumpVersion;
  try {
    const versionEvent = nextEvent<WasmPgDumpEvent>(dumpWorker, (event) => event.type === 'version' || event.type === 'failed').then(
      (event) => {
        if (event.type === 'failed') throw new Error(`the WebAssembly pg_dump does not start: ${event.message}`);
        version = parseVersion(event.type === 'version' ? event.stdout : '');
        options.onVersion?.(version);
      },
    );
    const connected = nextEvent<PgSocketEvent>(socketWorker, (event) => event.type !== 'closed').then((event) => {
      if (event.type === 'connect-failed') throw new WasmPgDumpConnectError(event.message, event.code);
    });
    // Both settle before either failure is thrown: the version (and its notice) comes first.
    const [versionOutcome, connectOutcome] = await Promise.allSettled([versionEvent, connected]);
    signal?.throwIfAborted();
    if (versionOutcome.status === 'rejected') throw versionOutcome.reason;
    if (connectOutcome.status === 'rejected') throw connectOutcome.reason;
  } catch (error) {
    signal?.removeEventListener('abort', abortStart);
    await stopBoth();
    throw error;
  }
  signal?.removeEventListener('abort', abortStart);
  socketWorker.postMessage({ type: 'attach', port: channel.port1 } satisfies PgSocketAttach, [channel.port1]);

  let stderr = '';
  let exitReported = false;
  let settled = false;
  let finished: (exit: WasmPgDumpExit) => void;
  const exited = new Promise<WasmPgDumpExit>((resolve) => (finished = resolve));

  const settle = async (exit: Omit<WasmPgDumpExit, 'stderr'>) => {
    if (settled) return;
    settled = true;
    signal?.removeEventListener('abort', abortRun);
    await dumpWorker.terminate();
    // pg_dump said goodbye and ended its side: let the socket close cleanly, briefly.
    if (exit.code !== null) await Promise.race([socketClosed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    await socketWorker.terminate();
    finished({ ...exit, stderr, ...(connectionError ? { connectionError } : {}) });
  };
  const abortRun = () => void settle({ code: null, error: new Error('pg_dump was stopped') });
  signal?.addEventListener('abort', abortRun, { once: true });

  // The socket thread ended before pg_dump did. Nothing more comes from the server, and
  // only that thread ends the ring pg_dump's libpq reads: pg_dump would wait in Atomics.wait
  // for ever, and pipeTo with it. The ring is shared memory, so it is ended here instead, as
  // the socket thread ends it when the server closes the connection: pg_dump reads what
  // came, then the end ("server closed the connection unexpectedly") and exits with its
  // error. Should it not exit within the grace period (waiting on a stalled destination,
  // say), it is stopped.
  void socketThreadEnded.then((exitCode) => {
    if (settled) return;
    connectionError ??= `the socket thread ended unexpectedly (exit code ${exitCode})`;
    new ByteRingWriter(ring).end();
    const reason = new Error(`the connection ended: ${connectionError}`);
    setTimeout(() => void settle({ code: null, error: reason }), socketGoneGraceMs).unref();
  });

  dumpWorker.on('message', (event: WasmPgDumpEvent) => {
    if (event.type === 'stderr') {
      stderr += `${event.line}\n`;
      options.onStderrLine?.(event.line);
    } else if (event.type === 'exit') {
      exitReported = true;
      void settle({ code: event.code });
    } else if (event.type === 'failed') {
      void settle({ code: null, error: new Error(`the WebAssembly pg_dump failed: ${event.message}`) });
    }
  });
  dumpWorker.on('error', (error) => void settle({ code: null, error }));
  dumpWorker.on('exit', () => {
    if (!exitReported) void settle({ code: null, error: new Error('the WebAssembly pg_dump thread ended unexpectedly') });
  });
  openGate(1);

  const pipeTo = async (destination: Writable): Promise<void> => {
    // The ring is shared memory: it stays readable after pg_dump's thread is gone.
    const reader = new ByteRingReader(outputRing);
    const buffer = Buffer.allocUnsafe(outputChunk);
    const write = (chunk: Buffer) =>
      new Promise<void>((resolve, reject) => destination.write(chunk, (error) => (error ? reject(error) : resolve())));
    try {
      for (;;) {
        signal?.throwIfAborted();
        const count = reader.take(buffer);
        // One write at a time: once its callback fired, the destination is done with the buffer.
        if (count > 0) await write(buffer.subarray(0, count));
        else if (reader.ended) break;
        else if (settled) throw (await exited).error ?? new Error('pg_dump ended without finishing its output');
        else await reader.dataArrived(250);
      }
      destination.end();
    } catch (error) {
      void settle({ code: null, error: error instanceof Error ? error : new Error(String(error)) });
      throw error;
    }
  };
  return { version: version!, pipeTo, exited };
}
