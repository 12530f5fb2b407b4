import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { provisionDatabase } from '../../src/provisioning/provision-database.js';
import { startEmbeddedServer, stopEmbeddedServer } from '../../src/embedded/embedded-server.js';
import { migrate } from '../../src/migrations/migrator.js';
import { freePort } from '../../src/embedded/free-port.js';
import { eventually } from './eventually.js';
import { debianPostgresBinDir } from './postgres-majors.js';

/** The programs a {@link startDebianPostgres} server and the backups of it need. */
export const debianPostgresPrograms = ['initdb', 'pg_ctl', 'postgres', 'pg_dump', 'pg_restore', 'psql'].map((program) =>
  path.join(debianPostgresBinDir, program),
);

/** A throwaway PostgreSQL 15 cluster of one test file. */
export interface DebianPostgres {
  /** The superuser's password: tests check it never shows in output. */
  password: string;
  /** URL of a database on this server, as the superuser. */
  urlOf: (database: string) => string;
  /** The same, as the databases' owner role (not a superuser), as migrations, backups and restores connect. */
  ownerUrlOf: (database: string) => string;
  /** That owner role's name and password. */
  owner: { user: string; password: string };
  /** Creates a database migrated to the latest schema (a clone of a template migrated once). */
  createMigratedDatabase: () => Promise<string>;
  /** Creates an empty database. */
  createEmptyDatabase: () => Promise<string>;
  /** Creates a copy of a database nobody is connected to (`CREATE DATABASE … TEMPLATE`). */
  cloneDatabase: (database: string) => Promise<string>;
  stop: () => Promise<void>;
}

const template = 'kw_template';

// A server of such a cluster, at a free port: a throwaway, as the run's shared server.
async function serverOptions(dataDir: string, password: string, settings: Record<string, string> = {}) {
  return {
    dataDir,
    port: await freePort(),
    user: 'postgres',
    password,
    database: 'postgres',
    binDir: debianPostgresBinDir,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', ...settings },
  };
}

/** The passwords of a stopped cluster, provisioned and with its template migrated, that each file's server starts from a copy of. */
interface Seed {
  password: string;
  owner: { user: string; password: string };
}

// Makes the seed in `dataDir`: initdb, then (started) the owner role and the template migrated
// as it, as setup --admin leaves a server; stopped, so that a copy starts clean.
async function makeSeed(dataDir: string): Promise<Seed> {
  const seed = {
    password: `pg15-${randomBytes(8).toString('hex')}`,
    owner: { user: 'kw_owner', password: `owner-${randomBytes(8).toString('hex')}` },
  };
  const { url } = await startEmbeddedServer(await serverOptions(dataDir, seed.password));
  try {
    const adminUrl = databaseUrlWith(url, template);
    await provisionDatabase({ adminUrl, owner: seed.owner });
    await migrate({ databaseUrl: databaseUrlAs(adminUrl, seed.owner.user, seed.owner.password) });
  } finally {
    await stopEmbeddedServer(dataDir, { binDir: debianPostgresBinDir });
  }
  return seed;
}

// Once per run, for every worker: the first to take the lock (a folder: mkdir is atomic) makes
// the seed beside its place and renames it there with its passwords; the others wait for that.
// A worker whose making failed gives the lock up, and the next one tries.
async function runSeed(): Promise<Seed & { dataDir: string }> {
  const folder = path.join(os.tmpdir(), `${inject('databasePrefix')}pg15-seed`);
  const described = path.join(folder, 'seed.json');
  const lock = `${folder}.lock`;
  let seed: Seed | undefined;
  await eventually(
    async () => {
      const read = () => readFile(described, 'utf8').then((text) => JSON.parse(text) as Seed, () => undefined);
      seed = await read();
      if (seed || !(await mkdir(lock).then(() => true, () => false))) return seed !== undefined;
      try {
        // Looked at again under the lock: the worker that held it before may have put the seed in
        // place between the look above and the lock (a second seed then failed its rename with
        // ENOTEMPTY, and the file with it).
        seed = await read();
        if (seed) return true;
        const making = await mkdtemp(`${folder}-`);
        // The server runs as the 'postgres' account when this runs as root: let it into this folder.
        await chmod(making, 0o711);
        seed = await makeSeed(path.join(making, 'data'));
        // It holds the clusters' passwords: for this account only, as the clusters' own files are.
        await writeFile(path.join(making, 'seed.json'), JSON.stringify(seed), { mode: 0o600 });
        await rename(making, folder);
        return true;
      } finally {
        await rm(lock, { recursive: true, force: true });
      }
    },
    `the PostgreSQL 15 cluster that another worker makes in ${folder} is ready`,
    { timeoutMs: 120_000, intervalMs: 50 },
  );
  return { ...seed!, dataDir: path.join(folder, 'data') };
}

let seeded: Promise<Seed & { dataDir: string }> | undefined;

/**
 * Starts Debian's PostgreSQL 15 on 127.0.0.1 at a free port with its data in a temporary
 * folder and durability off (as the run's shared server), through the same code as the
 * embedded server, so it runs as the `postgres` account when the tests run as root. Each file
 * gets a cluster of its own, copied from one the run makes once (see runSeed): initdb, the
 * owner role and a migrated template took 1.5-1.7 s of CPU and 1.4 s for each of four files.
 * `settings` are the server's own besides (`postgres -c`), e.g. a library to preload.
 */
export async function startDebianPostgres(options: { settings?: Record<string, string> } = {}): Promise<DebianPostgres> {
  // A failed making is tried again by the next file.
  seeded ??= runSeed().catch((error: unknown) => {
    seeded = undefined;
    throw error;
  });
  const seed = await seeded;
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-pg15-'));
  // The server runs as the 'postgres' account when this runs as root: let it into this folder.
  await chmod(root, 0o711);
  const server = await serverOptions(path.join(root, 'data'), seed.password, options.settings);
  // -a keeps the files' owner (the 'postgres' account, when this runs as root) and modes.
  await promisify(execFile)('cp', ['-a', seed.dataDir, server.dataDir]);
  const { url } = await startEmbeddedServer(server);
  const urlOf = (database: string) => databaseUrlWith(url, database);
  const { owner, password } = seed;
  const ownerUrlOf = (database: string) => databaseUrlAs(urlOf(database), owner.user, owner.password);
  const create = async (from: string) => {
    const name = `kw_${randomBytes(5).toString('hex')}`;
    await withMaintenanceClient(url, (client) => client.query(`CREATE DATABASE ${name} TEMPLATE ${from} OWNER ${owner.user}`));
    return name;
  };
  return {
    password,
    urlOf,
    ownerUrlOf,
    owner,
    createMigratedDatabase: () => create(template),
    createEmptyDatabase: () => create('template0'),
    cloneDatabase: (database) => create(database),
    stop: async () => {
      await stopEmbeddedServer(server.dataDir, { binDir: debianPostgresBinDir });
      await rm(root, { recursive: true, force: true });
    },
  };
}
