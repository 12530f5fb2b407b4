import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { findPackageRoot } from '../../package-root.js';

/*
 * Every use of @electric-sql/pglite-tools internals lives in this file; nothing else imports
 * the package. The package documents only `pgDump({ pg })`, which dumps an in-process PGlite
 * into its in-memory filesystem and returns the whole dump as one string. We need pg_dump
 * against a real server, streamed, so we rely on these undocumented parts of the exactly
 * pinned version (package.json), each checked by test/operations/wasm-pg-dump/pglite-pg-dump-module.test.ts:
 *
 * 1. `dist/pg_dump.js` re-exports from one bundled chunk (`./chunk-<hash>.js`) that holds the
 *    Emscripten module factory as `var <name>=(()=>{var _scriptName=import.meta.url;…`. The
 *    factory is not exported, so the chunk's text is loaded with an export appended.
 * 2. `pg_dump.wasm` sits beside that chunk.
 * 3. The module exposes `_pgl_set_rw_cbs(read, write)`: the build's libpq sends and receives
 *    through these two callbacks, `(pointer, length) => bytes` (signature 'iii'), instead of
 *    a socket; its `connect` does nothing and its `poll` always reports ready. So `read` must
 *    block until bytes arrive, and may return 0 only where libpq does not take 0 for end of
 *    stream (see ByteRingReader).
 * 4. The module keeps Emscripten's runtime exports: `addFunction` (to hand those callbacks
 *    over), `FS.registerDevice`/`makedev`/`mkdev` (the output device), `FS.writeFile`/`chmod`,
 *    `ENV` (libpq's environment: the password), `callMain`, and the `print`, `printErr`,
 *    `thisProgram`, `locateFile` and `preRun` options.
 */

/** The pinned package, for messages: `@electric-sql/pglite-tools 0.4.8`. */
export interface PgliteToolsPackage {
  name: string;
  version: string;
  /** Folder of `pg_dump.js`, its chunk and `pg_dump.wasm`. */
  distDir: string;
}

/** The parts of the Emscripten module this project uses. */
export interface PgDumpModule {
  HEAPU8: Uint8Array;
  ENV: Record<string, string>;
  FS: {
    writeFile: (path: string, data: string, options?: { mode?: number }) => void;
    chmod: (path: string, mode: number) => void;
    makedev: (major: number, minor: number) => number;
    registerDevice: (device: number, operations: DeviceOperations) => void;
    mkdev: (path: string, mode: number, device: number) => void;
    ErrnoError: new (errno: number) => Error;
  };
  addFunction: (callback: (pointer: number, length: number) => number, signature: string) => number;
  _pgl_set_rw_cbs: (read: number, write: number) => void;
  callMain: (args: string[]) => number;
}

interface DeviceStream {
  position: number;
}

interface DeviceOperations {
  open?: (stream: DeviceStream) => void;
  close?: (stream: DeviceStream) => void;
  write: (stream: DeviceStream, buffer: Int8Array, offset: number, length: number, position: number) => number;
  llseek: (stream: DeviceStream, offset: number, whence: number) => number;
}

/** How pg_dump's connection and output reach the host. */
export interface PgDumpHost {
  /** Fills `target` with bytes from the server; returns how many (0 only at the real end). */
  receive: (target: Uint8Array) => number;
  /** Bytes pg_dump sends to the server; returns how many were taken (all). */
  send: (bytes: Uint8Array) => number;
  /** Each piece of the dump pg_dump writes to {@link outputDevicePath}. */
  output: (bytes: Uint8Array) => void;
  /** pg_dump's stderr, one line at a time. */
  stderrLine: (line: string) => void;
  /** libpq's environment: PGPASSWORD, PGCONNECT_TIMEOUT, PGSSLMODE, … */
  env: Record<string, string>;
}

/** Pass `--file=<this>`: a device that hands every write to {@link PgDumpHost.output}. */
export const outputDevicePath = '/dev/kennwilliamson-dump';

// Emscripten's errno for "illegal seek".
const espipe = 70;

// pg_dump checks that its own program file exists (find_my_exec) and warns otherwise.
const programPath = '/pg_dump';

function locatePackage(): PgliteToolsPackage {
  // The package's exports offer `./pg_dump`, not `./package.json`.
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite-tools/pg_dump');
  const distDir = path.dirname(entry);
  const manifest = JSON.parse(readFileSync(path.join(distDir, '..', 'package.json'), 'utf8')) as { name: string; version: string };
  return { name: manifest.name, version: manifest.version, distDir };
}

/**
 * Whether `@electric-sql/pglite-tools` can be loaded. It is an optional peer dependency:
 * only a backup that finds no native pg_dump needs it, and it brings a required peer of its
 * own (`@electric-sql/pglite`, 26 MB, never loaded), so a service adds it only if it wants
 * the WebAssembly pg_dump. The version this package is tested with is what package.json asks.
 *
 * @example pgliteToolsAvailability() // { installed: false, wanted: '@electric-sql/pglite-tools@0.4.8' }
 */
export function pgliteToolsAvailability(): { installed: boolean; wanted: string } {
  // In a service's bundle, away from this package's package.json, the version goes unsaid.
  const root = findPackageRoot();
  const manifest = (root === undefined ? {} : JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))) as {
    peerDependencies?: Record<string, string>;
  };
  const wanted = `@electric-sql/pglite-tools@${manifest.peerDependencies?.['@electric-sql/pglite-tools'] ?? 'latest'}`;
  try {
    locatePackage();
    return { installed: true, wanted };
  } catch {
    return { installed: false, wanted };
  }
}

/**
 * The installed `@electric-sql/pglite-tools`: its name, version and `dist` folder.
 *
 * @example
 * pgliteToolsPackage().version // '0.4.8'
 */
export function pgliteToolsPackage(): PgliteToolsPackage {
  return locatePackage();
}

type Factory = (overrides: Record<string, unknown>) => Promise<PgDumpModule>;

// One factory per thread: a backup instantiates pg_dump twice (--version, then the dump), and
// the factory's source need be read, encoded and imported only once.
const factories = new Map<string, Promise<Factory>>();

function loadFactory(distDir: string): Promise<Factory> {
  let factory = factories.get(distDir);
  if (factory === undefined) {
    factory = importFactory(distDir);
    factory.catch(() => factories.delete(distDir));
    factories.set(distDir, factory);
  }
  return factory;
}

async function importFactory(distDir: string): Promise<Factory> {
  const entry = readFileSync(path.join(distDir, 'pg_dump.js'), 'utf8');
  const chunk = /from\s*["']\.\/(chunk-[\w-]+\.js)["']/.exec(entry)?.[1];
  if (!chunk) throw new Error(`${distDir}/pg_dump.js no longer imports a chunk-*.js`);
  const text = readFileSync(path.join(distDir, chunk), 'utf8');
  const factory = /var ([\w$]+)=\(\(\)=>\{var _scriptName=import\.meta\.url;/.exec(text)?.[1];
  if (!factory) throw new Error(`${chunk} no longer holds the Emscripten factory in the expected form`);
  // A data: URL keeps the module off the disk; the factory then finds pg_dump.wasm through locateFile.
  const source = `${text}\nexport { ${factory} as createPgDumpModule };\n`;
  const loaded = (await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`)) as {
    createPgDumpModule?: unknown;
  };
  if (typeof loaded.createPgDumpModule !== 'function') throw new Error(`${chunk}: ${factory} is not the module factory`);
  return loaded.createPgDumpModule as Factory;
}

function requireFunction(module: Record<string, unknown>, name: string): void {
  if (typeof module[name] !== 'function') throw new Error(`the pg_dump module no longer has ${name}()`);
}

/**
 * Instantiates the WebAssembly pg_dump with its connection and its output wired to `host`,
 * ready for {@link runPgDumpMain}. Throws an Error naming the internal that is missing when
 * an upgrade of the package changed them.
 *
 * @example
 * const module = await createPgDumpModule({ receive, send, output, stderrLine, env: { PGPASSWORD: '…' } })
 * runPgDumpMain(module, ['--file=' + outputDevicePath, '--host', '127.0.0.1', …]) // 0
 */
export async function createPgDumpModule(host: PgDumpHost): Promise<PgDumpModule> {
  const { distDir } = locatePackage();
  const factory = await loadFactory(distDir);
  let stdout = '';
  const module = await factory({
    noExitRuntime: false,
    thisProgram: programPath,
    locateFile: (file: string) => path.join(distDir, file),
    // pg_dump writes the dump to our device, never to stdout; --version does.
    print: (line: string) => void (stdout += `${line}\n`),
    printErr: host.stderrLine,
    preRun: [
      (instance: PgDumpModule) => {
        Object.assign(instance.ENV, host.env);
      },
    ],
  });
  const record = module as unknown as Record<string, unknown>;
  for (const name of ['addFunction', '_pgl_set_rw_cbs', 'callMain']) requireFunction(record, name);
  for (const name of ['writeFile', 'chmod', 'makedev', 'registerDevice', 'mkdev']) requireFunction(module.FS as never, name);
  (module as PgDumpModule & { stdout: () => string }).stdout = () => stdout;

  module.FS.writeFile(programPath, '');
  module.FS.chmod(programPath, 0o755);

  const read = module.addFunction((pointer, length) => host.receive(module.HEAPU8.subarray(pointer, pointer + length)), 'iii');
  const write = module.addFunction((pointer, length) => host.send(module.HEAPU8.subarray(pointer, pointer + length)), 'iii');
  module._pgl_set_rw_cbs(read, write);

  // A character device whose writes go to the host as they happen, so the dump never
  // accumulates in the in-memory filesystem. llseek answers questions about the position
  // (ftello) and refuses real seeks, which a plain-format dump never makes.
  const device = module.FS.makedev(64, 0);
  module.FS.registerDevice(device, {
    write: (_stream, buffer, offset, length) => {
      host.output(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length));
      return length;
    },
    llseek: (stream, offset, whence) => {
      if (whence === 1 && offset === 0) return stream.position;
      if (whence === 0 && offset === stream.position) return offset;
      throw new module.FS.ErrnoError(espipe);
    },
  });
  module.FS.mkdev(outputDevicePath, 0o600, device);
  return module;
}

/**
 * Runs pg_dump's `main` with `args` on this thread (it blocks until pg_dump ends) and
 * returns its exit code.
 *
 * @example
 * runPgDumpMain(module, ['--version']) // 0; pgDumpStdout(module): 'pg_dump (PostgreSQL) 18.3\n'
 */
export function runPgDumpMain(module: PgDumpModule, args: string[]): number {
  return module.callMain(args);
}

/**
 * What pg_dump printed on stdout (only `--version` does; the dump goes to the device).
 *
 * @example
 * pgDumpStdout(module) // 'pg_dump (PostgreSQL) 18.3\n'
 */
export function pgDumpStdout(module: PgDumpModule): string {
  return (module as PgDumpModule & { stdout: () => string }).stdout();
}
