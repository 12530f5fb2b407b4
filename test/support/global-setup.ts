import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { randomBytes } from 'node:crypto';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { provisionDatabase, type RoleCredentials } from '../../src/provisioning/provision-database.js';
import { startEmbeddedServer, stopEmbeddedServer } from '../../src/embedded/embedded-server.js';
import { migrate } from '../../src/migrations/migrator.js';
import { bundleCliCommands } from './cli-bundle.js';
import { freePort } from '../../src/embedded/free-port.js';
import { type PgBouncer, type PgBouncerVersion, pgBouncerVersions, startPgBouncer } from './pgbouncer.js';
import { type ExtraPostgresMajor, postgresMajorBinDir } from './postgres-majors.js';

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
  }
}

const composeImage = 'ghcr.io/fboulnois/pg_uuidv7:1.6.0';

interface TestServer {
  kind: string;
  url: string;
  stop: () => Promise<void>;
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const probe = getContainerRuntimeClient().then(() => true, () => false);
    const giveUp = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000).unref());
    return await Promise.race([probe, giveUp]);
  } catch {
    return false;
  }
}

// One server for the whole run, in the order the README gives: an existing server, a
// container of the docker-compose image, or a throwaway embedded PostgreSQL 17.
async function startTestServer(): Promise<TestServer> {
  const existing = process.env.TEST_DATABASE_URL?.trim();
  if (existing) return { kind: 'env', url: existing, stop: async () => undefined };

  if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer(composeImage).start();
    return { kind: 'testcontainers', url: container.getConnectionUri(), stop: async () => void (await container.stop()) };
  }
  return startLocalServer();
}

// A throwaway cluster of the embedded PostgreSQL 17, or of the installation in `binDir`.
async function startLocalServer(binDir?: string): Promise<TestServer> {
  const dataRoot = await mkdtemp(path.join(os.tmpdir(), 'kw-db-test-'));
  // The server runs as the 'postgres' account when this runs as root: let it into this folder.
  await chmod(dataRoot, 0o711);
  const options = {
    dataDir: path.join(dataRoot, 'data'),
    port: await freePort(),
    user: 'postgres',
    password: 'postgres',
    database: 'postgres',
    // A throwaway cluster: durability buys nothing here, and costs seconds.
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
    ...(binDir ? { binDir } : {}),
  };
  const { url } = await startEmbeddedServer(options);
  return {
    kind: 'embedded',
    url,
    stop: async () => {
      await stopEmbeddedServer(options.dataDir, binDir ? { binDir } : {});
      await rm(dataRoot, { recursive: true, force: true });
    },
  };
}

interface SharedRun {
  cliDir: string;
  server: TestServer;
  /** The server URL through that PgBouncer, started on first use; '' when it is not installed. */
  poolerUrlOf: (version: PgBouncerVersion) => Promise<string>;
  databasePrefix: string;
  templateDatabase: string;
  owner: RoleCredentials;
  /** The server of another PostgreSQL major, started (and migrated) on first use. */
  serverOf: (major: ExtraPostgresMajor) => Promise<TestServer>;
  stop: () => Promise<void>;
}

// Vitest runs the global setup once per project (direct, pooler, pg15, pg18); they share one
// server, one PgBouncer and one template, started by the first and stopped by the last
// teardown. The pg15 and pg18 projects each add a server of their major, with its own template.
const shared = globalThis as { kwTestRun?: { run: Promise<SharedRun>; users: number } };

// The template as production has it: provisioned by the admin step (the superuser creates the
// database and its non-superuser owner), then migrated as that owner, so every object the
// tests clone belongs to the owner role, as the objects a restore replaces do.
async function provisionTemplate(templateUrl: string, owner: RoleCredentials): Promise<void> {
  await provisionDatabase({ adminUrl: templateUrl, owner });
  await migrate({ databaseUrl: databaseUrlAs(templateUrl, owner.user, owner.password) });
}

async function startMajorServer(major: ExtraPostgresMajor, templateDatabase: string, owner: RoleCredentials): Promise<TestServer> {
  const binDir = postgresMajorBinDir(major);
  if (!binDir) throw new Error(`the pg${major} project needs PostgreSQL ${major} (see test/support/postgres-majors.ts)`);
  const server = await startLocalServer(binDir);
  try {
    await provisionTemplate(databaseUrlWith(server.url, templateDatabase), owner);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

async function startRun(majorsToStart: ExtraPostgresMajor[]): Promise<SharedRun> {
  const databasePrefix = `kw_${process.pid}_${Date.now().toString(36)}_`;
  const templateDatabase = `${databasePrefix}template`;
  // Roles are cluster-wide: one of this run's own on a server the run did not start.
  const owner = { user: `${databasePrefix}owner`, password: randomBytes(12).toString('hex') };
  const majors = new Map<ExtraPostgresMajor, Promise<TestServer>>();
  const serverOf = (major: ExtraPostgresMajor) => {
    let started = majors.get(major);
    if (!started) majors.set(major, (started = startMajorServer(major, templateDatabase, owner)));
    return started;
  };
  // Each one stopped even when another fails to stop.
  const stopMajors = () => Promise.allSettled([...majors.values()].map(async (started) => (await started.catch(() => undefined))?.stop()));
  // Alongside the default server: initdb and a template's migration take a second or more
  // each, while much of the machine waits.
  for (const major of majorsToStart) serverOf(major).catch(() => undefined);
  let cliDir: string | undefined;
  let server: TestServer | undefined;
  try {
    cliDir = await bundleCliCommands();
    server = await startTestServer();
    await provisionTemplate(databaseUrlWith(server.url, templateDatabase), owner);
  } catch (error) {
    await Promise.allSettled([server?.stop(), stopMajors(), cliDir && rm(cliDir, { recursive: true, force: true })]);
    throw error;
  }
  // CI installs both PgBouncers (.ci/run) and must run the pooler passes; elsewhere a pooler
  // project is left out when its PgBouncer is missing (see vitest.config.ts).
  const poolers = new Map<PgBouncerVersion, Promise<PgBouncer | undefined>>();
  const poolerOf = (version: PgBouncerVersion) => {
    let started = poolers.get(version);
    if (!started) {
      started = existsSync(pgBouncerVersions[version]) ? startPgBouncer({ serverUrl: server.url, version }) : Promise.resolve(undefined);
      poolers.set(version, started);
    }
    return started;
  };
  return {
    cliDir,
    server,
    poolerUrlOf: async (version) => (await poolerOf(version))?.url(server.url) ?? '',
    databasePrefix,
    templateDatabase,
    owner,
    serverOf,
    stop: async () => {
      for (const started of poolers.values()) await (await started.catch(() => undefined))?.stop();
      await stopMajors();
      if (server.kind === 'env') {
        // Leave an existing server as we found it.
        await withMaintenanceClient(server.url, async (client) => {
          const { rows } = await client.query<{ datname: string }>(
            'SELECT datname FROM pg_database WHERE starts_with(datname, $1)',
            [databasePrefix],
          );
          for (const { datname } of rows) {
            await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
          }
          await client.query(`DROP OWNED BY ${client.escapeIdentifier(owner.user)}`).catch(() => undefined);
          await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(owner.user)}`);
        });
      }
      await server.stop();
      await rm(cliDir, { recursive: true, force: true });
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const majorOf = (of: TestProject) => of.config.provide?.postgresMajor as ExtraPostgresMajor | undefined;
  // Every project's server starts with the first set-up, not as vitest sets each project up.
  const majors = project.vitest.projects.flatMap((other) => majorOf(other) ?? []);
  shared.kwTestRun ??= { run: startRun(majors), users: 0 };
  const state = shared.kwTestRun;
  state.users += 1;
  // The last teardown stops the run's servers; a set-up that fails has none, so it counts
  // itself out and stops them if it was the last (a server of its major that failed to start).
  const leave = async () => {
    state.users -= 1;
    if (state.users > 0) return;
    if (shared.kwTestRun === state) shared.kwTestRun = undefined;
    await (await state.run.catch(() => undefined))?.stop();
  };
  const major = majorOf(project);
  let run: SharedRun;
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
  // PgBouncer fronts the default server only: Debian's 1.18, or 1.24 for the pooler-1.24 project.
  const version = (project.config.provide?.pgBouncerVersion as PgBouncerVersion | undefined) ?? '1.18';
  project.provide('poolerUrl', major === undefined ? await run.poolerUrlOf(version) : '');

  return leave;
}
