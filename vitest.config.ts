import { existsSync, statfsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig, type Plugin, type ViteUserConfig } from 'vitest/config';
import { pgBouncer124Path, pgBouncerPath } from './test/support/pgbouncer.js';
import { inCi } from './test/support/in-ci.js';
import { extraPostgresMajors, postgresMajorBinDir } from './test/support/postgres-majors.js';
import { singleFilePackageAliases } from './test/support/single-file-packages.js';
import { withoutFetch } from './test/support/without-fetch.js';

// The run's scratch space (the test servers' clusters, and each file's backups and folders,
// through os.tmpdir()) is a tmpfs where there is a roomy one: creating a database copies some
// 300 files, and on this machine's ext4 that took 0.2 s of the kernel's CPU each time, a third
// of PostgreSQL's CPU in the suite; on tmpfs it takes 0.02 s. A TMPDIR of one's own is kept.
const tmpfs = '/dev/shm';
const roomy = (folder: string) => {
  try {
    const { bavail, bsize } = statfsSync(folder);
    return bavail * bsize >= 4 * 2 ** 30;
  } catch {
    return false;
  }
};
if (!process.env.TMPDIR && roomy(tmpfs)) process.env.TMPDIR = tmpfs;

const common = {
  // One PostgreSQL for the run, migrated once into a template; each file clones its own database.
  globalSetup: ['test/support/global-setup.ts'],
  // A bound on a test that hangs, not a measure: machines of this kind differ twofold (the whole
  // suite took 141-157 s on one, 315-339 s on another), and on the slower several tests that
  // wait on deadlines or build a TypeScript program took 26-31 s of the 30 once allowed.
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // A worker runs file after file of its project with one module cache, rather than a fresh
  // process per file: starting a process and loading Kysely, pg and the library again for each
  // of 135 file runs cost about 90 s of the suite's CPU (issue 19). So files keep to themselves
  // what they change in the process: each creates its own database and pools and destroys them,
  // restores env and timers in afterEach, and removes what it patches (OpenTelemetry) in
  // afterAll. `vitest run --sequence.shuffle.files` checks that no file needs another's leftovers.
  isolate: false,
  // V8 compiles WebAssembly (libpg-query's parser, PGlite's pg_dump) with its baseline
  // compiler only, as the commands the tests start do (see test/support/run-cli.ts): the
  // optimizing recompiles on background threads cost more CPU than the tests' short runs of
  // that code win back. The operations' and restores' files used 29-32 s of CPU with it and
  // 31-38 s without, in three alternating runs (issue 19). (A V8 flag in execArgv needs the
  // default `forks` pool: worker threads refuse one.)
  // The same holds for JavaScript: V8 stops at its baseline tier (Sparkplug, `--max-opt=1`),
  // without an optimizing tier (TurboFan; Maglev too, where a later Node turns it on), whose
  // compiles a test run's many short-lived functions rarely pay back. On Node 20, the query
  // and schema files of the direct and pooler projects used 34.5-35.9 s of CPU with it and
  // 36.8-40.8 s without (six alternating runs). In four alternating full runs the workers used
  // 71 and 80 s with it, 100 and 91 s without, while the machine's speed drifted; set against
  // the commands' CPU in the same run, which the flag does not touch (56 and 69 s, 66 and 72
  // s), that is 9-16 % less. The flag changes how fast the code runs, not what it does;
  // `npm run bench` measures the library with V8's defaults.
  // And without Node's fetch globals, as the commands (test/support/without-fetch.ts).
  execArgv: ['--liftoff-only', '--max-opt=1', ...withoutFetch],
};

// The WebAssembly pg_dump's worker threads start, in the tests' processes, from the bundle the
// global setup made for the commands, not from the TypeScript sources: a worker started from
// the sources registers tsx first, 0.27 s of CPU each against 0.05 s, and the tests start
// some 20 (issue 19). Only wasm-pg-dump.ts's import is redirected; the sources' way has a
// test of its own (test/operations/wasm-pg-dump/module-worker.test.ts). Like the commands,
// the bundle is made once per run: `vitest` in watch mode must be restarted to see a change
// to the worker modules.
const bundledModuleWorker = fileURLToPath(new URL('./test/support/bundled-module-worker.ts', import.meta.url));
const bundledModuleWorkers: Plugin = {
  name: 'kw-bundled-module-workers',
  enforce: 'pre',
  resolveId(source, importer) {
    const fromWasmPgDump = importer?.replaceAll('\\', '/').endsWith('/src/operations/wasm-pg-dump/wasm-pg-dump.ts') === true;
    return source === './module-worker.js' && fromWasmPgDump ? bundledModuleWorker : undefined;
  },
};
// Kysely and Umzug load in the workers each from one file of their own code, rather than from
// their packages' many modules (test/support/single-file-packages.ts says what it saves). The
// aliases match the bare names only: test/architecture.test.ts holds src/ and test/ to those.
const alias = await singleFilePackageAliases(fileURLToPath(new URL('.', import.meta.url)));
// Modules that vitest's own process runs (the global set-up) stay out of the transforms' disk
// cache (`fsModuleCache` below): with a cached module there, vitest 4.1 failed to map the
// stack of an error thrown in the set-up ("code.charCodeAt is not a function") and printed
// that instead of the error. The workers, where the cache saves the transforms, keep it.
const setupModulesUncached: Plugin = {
  name: 'kw-setup-modules-uncached',
  configureVitest({ experimental_defineCacheKeyGenerator }) {
    experimental_defineCacheKeyGenerator(({ environment }) => (environment.name === '__vitest__' ? false : undefined));
  },
};
const project = (test: NonNullable<ViteUserConfig['test']>) => ({
  plugins: [bundledModuleWorkers, setupModulesUncached],
  resolve: { alias },
  test: { ...common, ...test },
});

// The query modules run again through PgBouncer in transaction mode, as services do, with the
// library's defaults: through Debian's 1.18 (\`pooler\`: named statements would be lost, so
// \`auto\` sends them unnamed) and through 1.24 (\`pooler-1.24\`: it keeps them, so \`auto\` names
// them). CI installs and builds both and always runs both passes; elsewhere a missing one is
// left out, saying so.
const ci = inCi();
const withPooler = ci || existsSync(pgBouncerPath);
if (!withPooler) console.warn(`[vitest.config] ${pgBouncerPath} not found: the pooler pass is skipped (apt-get install pgbouncer)`);
const withPooler124 = ci || existsSync(pgBouncer124Path);
if (!withPooler124) console.warn(`[vitest.config] ${pgBouncer124Path} not found: the pooler-1.24 pass is skipped (.ci/build-pgbouncer builds it)`);
const poolerFiles = ['test/queries/**/*.test.ts'];

// The schema, the migrations and the query modules run again on PostgreSQL 15 (Debian's) and
// 18 (embedded, the native uuidv7() branch); everything runs on 17. Of the migrator's files,
// those whose outcome depends on the server: every migration up, down and up again, and the
// no-transaction runs (CREATE INDEX CONCURRENTLY); the run's bookkeeping (lock, checksums,
// CLI, dry run) does not, and runs on 17 only. CI has both majors and always runs them;
// elsewhere a missing one is left out, saying so.
const majorFiles = [
  'test/schema/**/*.test.ts',
  'test/queries/**/*.test.ts',
  'test/migrations/{no-transaction,round-trip}.test.ts',
  // Restoring through the owner role, with identical hashes, on every supported major.
  'test/operations/restore/owner-restore-round-trip.test.ts',
];
const majors = extraPostgresMajors.filter((major) => {
  const found = postgresMajorBinDir(major) !== undefined;
  if (!found && !ci) console.warn(`[vitest.config] PostgreSQL ${major} not found: the pg${major} pass is skipped`);
  return found || ci;
});

// The four smaller projects (11-16 files each) run after the direct project, on three workers
// between them: vitest gives a group one pool of maxWorkers and queues its files project by
// project (by name), so the projects mostly follow one another, each on up to three workers. A
// worker serves one project only, and a new one costs about 1.2 s of CPU to start and warm up:
// the pooler project's workers used 8.3 s of CPU on four and 4.7 s on one, which left a core
// idle. The four projects alone, in five alternating pairs: 47.8-50.8 s (mean 48.8) with 92-99 s
// of CPU on three, 46.9-55.2 s (mean 51.6) with 93-109 s on four; on two, 45.4 and 51.7 s
// against 43.4 and 46.9 s on four; later, once no file of theirs waited 8 s, 25.0 and 31.0 s on
// three against 26.4 and 26.0 s on four (issue 19). Projects with another maxWorkers must be
// another group for vitest (sequence.groupOrder); groups run one after the other.
const smallerProject = { maxWorkers: 3, sequence: { groupOrder: 1 } };

// The canary (.ci/run, issue 15): every project runs only the file that fails on purpose, so
// that CI proves a failing test makes the run exit non-zero before it trusts a green one.
const canary = process.env.KW_TEST_CANARY === '1';
const canaryFiles = ['test/canary/**/*.test.ts'];
const files = (include: string[]) => (canary ? { include: canaryFiles } : { include, exclude: [...configDefaults.exclude, ...canaryFiles] });

export default defineConfig({
  test: {
    // The direct project's longest files mostly wait (for a deadline, a keepalive, a lock
    // timeout: 10-48 s each, at little CPU), and vitest starts the longest first: with four
    // workers they held all four for the run's first 55 s while the machine was 13-116 % busy
    // (of 200), and `npm test` took 111.8-120.9 s. With more workers the files that compute run
    // beside them: on this 2-core machine, alternating runs took 91.7 and 101.7 s on six,
    // 82.2-93.1 s (five runs) on eight, 83.3 and 88.2 s on ten, the machine 88-93 % busy on
    // eight or ten against 67 % on four (issue 19).
    maxWorkers: 8,
    // Vitest transforms a module once per project (five here) unless the transform is kept on
    // disk: with this, the projects after the first read the direct project's results, and a
    // run on a fresh clone spent 9.3-9.6 s of CPU in vitest's own process against 11.5-12.2 s
    // (issue 19); later runs reuse them too. A module's key is its content and id, the
    // project's root, mode and resolve options, the plugins' names and this file's content (an
    // edit here renews every module); a new lockfile empties the cache, and so does
    // `npx vitest --clearCache` (node_modules/.experimental-vitest-cache).
    experimental: { fsModuleCache: true },
    projects: [
      project({ name: 'direct', ...files(['test/**/*.test.ts']) }),
      ...(withPooler
        ? [project({ name: 'pooler', ...smallerProject, ...files(poolerFiles), provide: { viaPooler: true, pgBouncerVersion: '1.18' as const } })]
        : []),
      ...(withPooler124
        ? [project({ name: 'pooler-1.24', ...smallerProject, ...files(poolerFiles), provide: { viaPooler: true, pgBouncerVersion: '1.24' as const } })]
        : []),
      ...majors.map((major) => project({ name: `pg${major}`, ...smallerProject, ...files(majorFiles), provide: { postgresMajor: major } })),
    ],
  },
});
