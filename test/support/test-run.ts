import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedServer, stopEmbeddedServer } from '../../src/embedded/embedded-server.js';
import { freePort } from '../../src/embedded/free-port.js';
import { migrate } from '../../src/migrations/migrator.js';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { provisionDatabase, type RoleCredentials } from '../../src/provisioning/provision-database.js';
import { bundleCliCommands } from './cli-bundle.js';
import { dockerEndpointMayExist } from './docker-endpoint.js';
import { dropEndedRuns, holdRunPrefix, newRunPrefix, type RunPrefixHold } from './ended-runs.js';
import { type PgBouncer, type PgBouncerVersion, pgBouncerVersions, startPgBouncer } from './pgbouncer.js';
import { type ExtraPostgresMajor, postgresMajorBinDir } from './postgres-majors.js';
import { openRunFolder } from './run-folder.js';

const composeImage = 'ghcr.io/fboulnois/pg_uuidv7:1.6.0';

export interface TestServer {
  kind: string;
  url: string;
  stop: () => Promise<void>;
}

async function dockerAnswers(): Promise<boolean> {
  if (!dockerEndpointMayExist()) return false;
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
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300', max_prepared_transactions: '4' },
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

/** What a test run shares between its projects' set-ups (test/support/global-setup.ts). */
export interface TestRun {
  cliDir: string;
  server: TestServer;
  /** The server URL through that PgBouncer (started with the run for the projects that use one); '' when it is not installed. */
  poolerUrlOf: (version: PgBouncerVersion) => Promise<string>;
  databasePrefix: string;
  templateDatabase: string;
  owner: RoleCredentials;
  /** The server of another PostgreSQL major, started (and migrated) on first use. */
  serverOf: (major: ExtraPostgresMajor) => Promise<TestServer>;
  stop: () => Promise<void>;
}

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

export async function startTestRun(majorsToStart: ExtraPostgresMajor[], poolersToStart: PgBouncerVersion[]): Promise<TestRun> {
  // First: every folder the run makes, and every server in one, goes inside it.
  const runFolder = await openRunFolder();
  const databasePrefix = newRunPrefix();
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
  // The commands' bundle (esbuild's own process) alongside the server's start.
  const bundled = bundleCliCommands();
  const serverStarted = startTestServer();
  // CI installs both PgBouncers (.ci/run) and must run the pooler passes; elsewhere a pooler
  // project is left out when its PgBouncer is missing (see vitest.config.ts).
  const poolers = new Map<PgBouncerVersion, Promise<PgBouncer | undefined>>();
  const poolerOf = (version: PgBouncerVersion) => {
    let started = poolers.get(version);
    if (!started) {
      const start = async () => (existsSync(pgBouncerVersions[version]) ? startPgBouncer({ serverUrl: (await serverStarted).url, version }) : undefined);
      poolers.set(version, (started = start()));
    }
    return started;
  };
  const stopPoolers = () => Promise.allSettled([...poolers.values()].map(async (started) => (await started.catch(() => undefined))?.stop()));
  let cliDir: string;
  let server: TestServer;
  let hold: RunPrefixHold | undefined;
  try {
    [cliDir, server] = await Promise.all([bundled, serverStarted]);
    // Marked as running before it makes anything on the server (see ended-runs.ts).
    hold = await holdRunPrefix(server.url, databasePrefix);
    // Each PgBouncer alongside the template's migration: it needs only the server.
    for (const version of poolersToStart) poolerOf(version).catch(() => undefined);
    // An existing server keeps what killed runs left there until a run clears it away.
    if (server.kind === 'env') {
      const dropped = await dropEndedRuns(server.url);
      if (dropped.length > 0) console.log(`[test run] dropped the databases and roles of ${dropped.length} ended run(s): ${dropped.join(', ')}`);
    }
    await provisionTemplate(databaseUrlWith(server.url, templateDatabase), owner);
  } catch (error) {
    await hold?.release();
    await Promise.allSettled([
      serverStarted.then((started) => started.stop()),
      stopPoolers(),
      stopMajors(),
      bundled.then((dir) => rm(dir, { recursive: true, force: true })),
    ]);
    runFolder.close();
    throw error;
  }
  return {
    cliDir,
    server,
    poolerUrlOf: async (version) => (await poolerOf(version))?.url(server.url) ?? '',
    databasePrefix,
    templateDatabase,
    owner,
    serverOf,
    stop: async () => {
      await Promise.allSettled([stopPoolers(), stopMajors()]);
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
      await hold.release();
      await server.stop();
      await rm(cliDir, { recursive: true, force: true });
      // Whatever a file left running there (a test that timed out before its clean-up) goes too.
      runFolder.close();
    },
  };
}
