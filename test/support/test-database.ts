import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { openClient } from '../../src/db/with-client.js';
import { databaseUrlAs, databaseUrlWith, withMaintenanceClient } from '../../src/provisioning/database-admin.js';

/** A database of this test run's server, dropped with {@link TestDatabase.drop}. */
export interface TestDatabase {
  name: string;
  /** As the server's superuser: for scaffolding (and tests of what an admin does). */
  url: string;
  /** As the database's owner role (not a superuser), as migrations, backups and restores connect. */
  ownerUrl: string;
  drop: () => Promise<void>;
}

// One connection per worker and server creates and drops the files' databases, rather than
// one for each CREATE and each DROP: connections cost CPU on both sides, and these were 360
// of a run's (README, Tests). Files keep their worker between them (isolate: false), so it
// serves every file of the worker; ending the worker ends it, and one the server closed is
// forgotten, so the next statement opens another. It lives on `postgres`, never on a template
// (an idle session there would fail CREATE DATABASE); where it cannot be opened, each
// statement gets withMaintenanceClient's connection, which says why if that fails too.
const maintenanceConnections = new Map<string, Promise<pg.Client | undefined>>();

function maintenanceConnection(serverUrl: string): Promise<pg.Client | undefined> {
  let connection = maintenanceConnections.get(serverUrl);
  if (!connection) {
    // Only this connection's own end forgets it: a broken one's late 'end' must not drop its successor.
    const forget = () => {
      if (maintenanceConnections.get(serverUrl) === connection) maintenanceConnections.delete(serverUrl);
    };
    connection = openClient(databaseUrlWith(serverUrl, 'postgres'), 'kennwilliamson-test-maintenance').then(
      (client) => client.on('error', forget).on('end', forget),
      () => undefined,
    );
    maintenanceConnections.set(serverUrl, connection);
  }
  return connection;
}

async function runOnMaintenanceConnection(statement: string): Promise<void> {
  const serverUrl = inject('serverUrl');
  const client = await maintenanceConnection(serverUrl);
  await (client ? client.query(statement) : withMaintenanceClient(serverUrl, (fresh) => fresh.query(statement)));
}

/**
 * Creates a database for one test file: a clone of the migrated template (fast, isolated,
 * so files run in parallel), or with `empty: true` a database with no schema, for migration
 * tests; either way owned by the run's owner role (`ownerUrl`).
 */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `${inject('databasePrefix')}${randomBytes(6).toString('hex')}`;
  const template = options.empty ? 'template0' : inject('templateDatabase');
  // Owned by the owner role, as setup --admin leaves a database: a restore empties public
  // as the database's owner.
  await runOnMaintenanceConnection(
    `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)} OWNER ${pg.escapeIdentifier(inject('ownerUser'))}`,
  );
  const url = databaseUrlWith(inject('serverUrl'), name);
  return {
    name,
    url,
    ownerUrl: databaseUrlAs(url, inject('ownerUser'), inject('ownerPassword')),
    drop: () => runOnMaintenanceConnection(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  };
}

/**
 * The URL the library under test connects with: through PgBouncer in the `pooler` projects
 * (as services connect), directly otherwise.
 */
export function libraryUrl(database: TestDatabase): string {
  if (!inject('viaPooler')) return database.url;
  const poolerUrl = inject('poolerUrl');
  if (!poolerUrl) {
    throw new Error(
      inject('pgBouncerVersion') === '1.24'
        ? 'the pooler-1.24 project needs PgBouncer 1.24 (.ci/build-pgbouncer builds it)'
        : 'the pooler project needs PgBouncer (/usr/sbin/pgbouncer; apt-get install pgbouncer)',
    );
  }
  return databaseUrlWith(poolerUrl, database.name);
}

/**
 * Gives a test file its own migrated database and a `Kysely<DB>` on it, both cleaned up
 * after the file. `url` is what the library connects with (through PgBouncer in the pooler
 * project); `directUrl` is the server itself, for test scaffolding that holds session state
 * (a session advisory lock gating a race). Read them inside tests and hooks, not at module load.
 */
export function useTestDatabase(): { readonly db: Kysely<DB>; readonly url: string; readonly directUrl: string } {
  let database: TestDatabase | undefined;
  let db: Kysely<DB> | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = createDb({ databaseUrl: libraryUrl(database), minConnections: 0 });
  });
  afterAll(async () => {
    await db?.destroy();
    await database?.drop();
  });
  return {
    get db() {
      if (!db) throw new Error('useTestDatabase(): the database exists only inside tests and hooks');
      return db;
    },
    get url() {
      if (!database) throw new Error('useTestDatabase(): the database exists only inside tests and hooks');
      return libraryUrl(database);
    },
    get directUrl() {
      if (!database) throw new Error('useTestDatabase(): the database exists only inside tests and hooks');
      return database.url;
    },
  };
}
