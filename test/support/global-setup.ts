import type { TestProject } from 'vitest/node';
import type { PgBouncerVersion } from './pgbouncer.js';
import type { ExtraPostgresMajor } from './postgres-majors.js';
import { projectsWithFiles } from './projects-with-files.js';
import type { TestRun, TestServer } from './test-run.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A URL of the test server; the database part is replaced per test file. */
    serverUrl: string;
    /** A database migrated to the latest schema, cloned by each test file. */
    templateDatabase: string;
    /** Prefix of every database this run creates, so teardown drops exactly those. */
    databasePrefix: string;
    /** Which server the run uses: 'env', 'testcontainers' or 'embedded'. */
    serverKind: string;
    /** Folder of the bundled `src/cli/` commands (see bundleCliCommands). */
    cliDir: string;
    /** The server URL pointed at PgBouncer (transaction mode) in front of the test server. */
    poolerUrl: string;
    /** Set by the `pooler` projects: the library under test connects through PgBouncer. */
    viaPooler: boolean;
    /** Which PgBouncer a `pooler` project runs through: '1.18' (`pooler`) or '1.24' (`pooler-1.24`). */
    pgBouncerVersion: PgBouncerVersion;
    /** Set by the `pg15` and `pg18` projects: the PostgreSQL major their server runs. */
    postgresMajor: number;
    /** The databases' owner role (not a superuser), as `setup --admin` makes it: it owns the template, its clones and their objects. */
    ownerUser: string;
    /** Its password. */
    ownerPassword: string;
    /** The projects the first set-up found files of this run for, and started servers for (see projects-with-files.ts). */
    runProjects: string[];
  }
}

// Vitest runs the global setup once for each project that has files in the run (direct,
// pooler, pooler-1.24, pg15, pg18), one after the other, each in a module runner of its own;
// they share one run (test-run.ts): one server, its PgBouncers and one template, started by
// the first and stopped by the last teardown. The pg15 and pg18 projects each add a server of their major, with its own
// template. Only the first loads test-run.ts and what it imports (the migrator, the embedded
// server, the provisioning): loading those again for each project took 0.25-0.3 s of the
// start, before any test could run (issue 19).
const shared = globalThis as { kwTestRun?: { run: Promise<TestRun>; users: number; projects: string[] } };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const majorOf = (of: TestProject) => of.config.provide?.postgresMajor as ExtraPostgresMajor | undefined;
  // PgBouncer fronts the default server only: Debian's 1.18, or 1.24 for the pooler-1.24 project.
  const poolerOf = (of: TestProject) => (of.config.provide?.pgBouncerVersion as PgBouncerVersion | undefined) ?? '1.18';
  // Every project's server and PgBouncer starts with the first set-up, not as vitest sets each
  // project up; but only for the projects that have files in this run (vitest has collected
  // their paths by now): `npx vitest run test/migrations/dry-run.test.ts` (vitest's Duration)
  // took 6.1-6.3 s and 11.6-12.3 s of CPU with the PostgreSQL 15 and 18 servers and PgBouncer
  // 1.24 it does not use, and 4.8 s and 7.8-8.0 s without. A project left out still gets its
  // server from its own set-up (serverOf and poolerUrlOf start one on first use), as in watch
  // mode after a new filter.
  if (!shared.kwTestRun) {
    const files = project.vitest.state.getPaths();
    const withFiles = projectsWithFiles(project.vitest.projects, files);
    // None when vitest no longer says which files run: then every project's servers start.
    const projects = withFiles.length > 0 ? withFiles : project.vitest.projects;
    const majors = projects.flatMap((other) => majorOf(other) ?? []);
    const poolers = [...new Set(projects.flatMap((other) => (majorOf(other) === undefined ? [poolerOf(other)] : [])))];
    shared.kwTestRun = {
      run: import('./test-run.js').then(({ startTestRun }) => startTestRun(majors, poolers)),
      users: 0,
      projects: withFiles.map((other) => other.name),
    };
  }
  const state = shared.kwTestRun;
  state.users += 1;
  // The last teardown stops the run's servers; a set-up that fails has none, so it counts
  // itself out and stops them if it was the last (a server of its major that failed to start).
  const leave = async () => {
    state.users -= 1;
    if (state.users > 0) return;
    if (shared.kwTestRun === state) delete shared.kwTestRun;
    await (await state.run.catch(() => undefined))?.stop();
  };
  const major = majorOf(project);
  let run: TestRun;
  let server: TestServer;
  try {
    run = await state.run;
    server = major === undefined ? run.server : await run.serverOf(major);
  } catch (error) {
    await leave();
    throw error;
  }
  project.provide('cliDir', run.cliDir);
  project.provide('serverUrl', server.url);
  project.provide('templateDatabase', run.templateDatabase);
  project.provide('databasePrefix', run.databasePrefix);
  project.provide('ownerUser', run.owner.user);
  project.provide('ownerPassword', run.owner.password);
  project.provide('serverKind', server.kind);
  project.provide('runProjects', state.projects);
  project.provide('poolerUrl', major === undefined ? await run.poolerUrlOf(poolerOf(project)) : '');

  return leave;
}
