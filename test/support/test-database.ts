import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, inject } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
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


/**
 * Creates a database for one test file: a clone of the migrated template (fast, isolated,
 * so files run in parallel), or with `empty: true` a database with no schema, for migration
 * tests; either way owned by the run's owner role (`ownerUrl`).
 */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `${inject('databasePrefix')}${randomBytes(6).toString('hex')}`;
  await withMaintenanceClient(inject('serverUrl'), async (client) => {
    const template = options.empty ? 'template0' : inject('templateDatabase');
    // Owned by the owner role, as setup --admin leaves a database: a restore empties public
    // as the database's owner.
    await client.query(
      `CREATE DATABASE ${client.escapeIdentifier(name)} TEMPLATE ${client.escapeIdentifier(template)} OWNER ${client.escapeIdentifier(inject('ownerUser'))}`,
    );
  });
  const url = databaseUrlWith(inject('serverUrl'), name);
  return {
    name,
    url,
    ownerUrl: databaseUrlAs(url, inject('ownerUser'), inject('ownerPassword')),
    drop: () =>
      withMaintenanceClient(inject('serverUrl'), async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
      }),
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
