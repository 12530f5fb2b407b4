import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { provisionDatabase } from '../../src/provisioning/provision-database.js';
import { startEmbeddedServer, stopEmbeddedServer } from '../../src/embedded/embedded-server.js';
import { migrate } from '../../src/migrations/migrator.js';
import { freePort } from '../../src/embedded/free-port.js';

/**
 * Debian's PostgreSQL 15, the one server on these machines that the available pg_dump (15)
 * can dump: the run's shared server is PostgreSQL 17.
 */
export const debianPostgresBinDir = '/usr/lib/postgresql/15/bin';

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

/**
 * Starts Debian's PostgreSQL 15 on 127.0.0.1 at a free port with its data in a temporary
 * folder and durability off (as the run's shared server), through the same code as the
 * embedded server, so it runs as the `postgres` account when the tests run as root.
 */
export async function startDebianPostgres(): Promise<DebianPostgres> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-pg15-'));
  // The server runs as the 'postgres' account when this runs as root: let it into this folder.
  await chmod(root, 0o711);
  const password = `pg15-${randomBytes(8).toString('hex')}`;
  const options = {
    dataDir: path.join(root, 'data'),
    port: await freePort(),
    user: 'postgres',
    password,
    database: 'postgres',
    binDir: debianPostgresBinDir,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  };
  const { url } = await startEmbeddedServer(options);
  const urlOf = (database: string) => databaseUrlWith(url, database);
  // As setup --admin leaves a server: databases owned by a non-superuser owner role, migrated as it.
  const owner = { user: 'kw_owner', password: `owner-${randomBytes(8).toString('hex')}` };
  const ownerUrlOf = (database: string) => databaseUrlAs(urlOf(database), owner.user, owner.password);
  const template = 'kw_template';
  await provisionDatabase({ adminUrl: urlOf(template), owner });
  await migrate({ databaseUrl: ownerUrlOf(template) });
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
      await stopEmbeddedServer(options.dataDir, { binDir: debianPostgresBinDir });
      await rm(root, { recursive: true, force: true });
    },
  };
}
