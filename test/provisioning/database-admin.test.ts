import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { ConfigError, ProvisioningError } from '../../src/errors.js';
import { databaseUrlAs, databaseUrlWith, ensureDatabase, isLocalDatabaseUrl, recreateDatabase, requireLocalDatabase } from '../../src/provisioning/database-admin.js';
import { eventually } from '../support/eventually.js';
import { stallingProxyFor } from '../support/stalling-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { withReadmeAdminOptions } from '../support/readme-admin-options.js';

describe('isLocalDatabaseUrl', () => {
  it.each([
    'postgresql://u:p@127.0.0.1:5432/db',
    'postgresql://u:p@localhost/db',
    'postgresql://u:p@[::1]/db',
    'postgresql:///db',
    'postgresql:///db?host=/var/run/postgresql',
    'postgresql://u:p@/db?host=/var/run/postgresql',
    // ?host= is where pg and libpq connect: the URL's own host is then not used.
    'postgresql://u:p@db.example.com/db?host=127.0.0.1',
  ])('treats %s as local', (url) => {
    expect(isLocalDatabaseUrl(url, {})).toBe(true);
  });

  it.each([
    'postgresql://u:p@db.example.com/db',
    'postgresql://u:p@10.0.0.5/db',
    'postgresql:///db?host=prod.example.com',
    'postgresql://u:p@127.0.0.1/db?host=prod.example.com',
  ])('treats %s as non-local', (url) => {
    expect(isLocalDatabaseUrl(url, {})).toBe(false);
  });

  it('follows PGHOST for a URL without a host, as pg does', () => {
    expect(isLocalDatabaseUrl('postgresql:///kennwilliamson', { PGHOST: 'db.example.org' })).toBe(false);
    expect(isLocalDatabaseUrl('postgresql:///kennwilliamson', { PGHOST: '/var/run/postgresql' })).toBe(true);
    expect(isLocalDatabaseUrl('postgresql://127.0.0.1/kennwilliamson', { PGHOST: 'db.example.org' })).toBe(true);
  });
});

describe('requireLocalDatabase', () => {
  it('names the host and where it came from, and lets --force through', () => {
    const url = 'postgresql://u:secret@/kennwilliamson';
    const env = { PGHOST: 'db.example.org' };
    expect(() => requireLocalDatabase(url, { force: false, action: 'reset', env })).toThrow(ConfigError);
    expect(() => requireLocalDatabase(url, { force: false, action: 'reset', env })).toThrow(
      "refusing to reset a database on the non-local host 'db.example.org' (from PGHOST); pass --force if you mean it",
    );
    expect(requireLocalDatabase(url, { force: true, action: 'reset', env })).toMatchObject({ host: 'db.example.org', database: 'kennwilliamson' });
  });

  it('reports a URL under the variable it came from', () => {
    const refusal = (url: string) => {
      try {
        requireLocalDatabase(url, { force: false, action: 'reset', env: {}, variable: 'ADMIN_DATABASE_URL' });
      } catch (error) {
        return error as ConfigError;
      }
      throw new Error('not refused');
    };
    expect(refusal('postgresql://u:secret@db.example.org/kennwilliamson')).toMatchObject({ variable: 'ADMIN_DATABASE_URL' });
    expect(refusal('postgresql://u:secret@127.0.0.1:99999/kennwilliamson').message).toContain('the port of ADMIN_DATABASE_URL');
  });
});

// The database a URL names is read by the one URL parser, and a fault is reported under the
// variable the URL came from, before any connection (nothing listens on port 1).
describe.each([
  ['ensureDatabase', ensureDatabase],
  ['recreateDatabase', recreateDatabase],
] as const)('%s', (_, act) => {
  it('reports a URL that names no database under the variable it came from', async () => {
    await expect(act('postgresql://u:secret@127.0.0.1:1/', { variable: 'MIGRATION_DATABASE_URL' })).rejects.toMatchObject({
      variable: 'MIGRATION_DATABASE_URL',
      message: 'MIGRATION_DATABASE_URL names no database',
    });
  });
});

describe('databaseUrlWith', () => {
  it('keeps a URL without a host (a Unix socket in ?host=) without one', () => {
    expect(databaseUrlWith('postgresql://u:p@/app?host=/var/run/postgresql', 'postgres')).toBe(
      'postgresql://u:p@/postgres?host=/var/run/postgresql',
    );
    expect(databaseUrlWith('postgresql://u:p@127.0.0.1:5432/app', 'postgres')).toBe('postgresql://u:p@127.0.0.1:5432/postgres');
  });
});

describe('databaseUrlAs', () => {
  // What pg makes of a URL (nothing is connected): the login it would send.
  const loginOf = (url: string) => {
    const { user, password, options, replication, host, port, database, ssl, application_name } = (
      new pg.Client({ connectionString: url }) as unknown as { connectionParameters: Record<string, unknown> }
    ).connectionParameters;
    return { user, password, options, replication, host, port, database, ssl, application_name };
  };

  it("logs in as the other role without the admin's options (the README's superuser-only settings), keeping how to reach the server", () => {
    const admin = withReadmeAdminOptions('postgresql://postgres:pw@db.example.org:6543/app?sslmode=verify-full&application_name=kw-admin');

    const url = databaseUrlAs(admin, 'owner', 's3cret/#?');

    expect(url).toBe('postgresql://owner:s3cret%2F%23%3F@db.example.org:6543/app?sslmode=verify-full&application_name=kw-admin');
    expect(loginOf(url)).toMatchObject({ user: 'owner', password: 's3cret/#?', host: 'db.example.org', port: 6543, database: 'app', application_name: 'kw-admin' });
    expect(loginOf(url).options).toBeUndefined();
    expect(loginOf(url).ssl).toBeTruthy();
  });

  it("leaves out the login parameters pg takes over the URL's own (?user=, ?password=) and a replication connection", () => {
    const url = databaseUrlAs('postgresql://@127.0.0.1/app?user=postgres&password=pw&replication=database&connect_timeout=5', 'owner', 'secret');

    expect(url).toBe('postgresql://owner:secret@127.0.0.1/app?connect_timeout=5');
    expect(loginOf(url)).toMatchObject({ user: 'owner', password: 'secret', replication: undefined });
  });

  it('keeps a URL without a host (a Unix socket in ?host=) without one, its options left out', () => {
    expect(databaseUrlAs('postgresql://u:p@/app?host=/var/run/postgresql', 'owner', 'secret')).toBe('postgresql://owner:secret@/app?host=/var/run/postgresql');
    const dropped = databaseUrlAs('postgresql://u:p@/app?host=/var/run/postgresql&options=-c%20a%3Db', 'owner', 'secret');
    expect(dropped).toMatch(/^postgresql:\/\/owner:secret@\/app\?host=/);
    expect(loginOf(dropped)).toMatchObject({ user: 'owner', host: '/var/run/postgresql', database: 'app', options: undefined });
  });
});

describe('recreateDatabase', () => {
  // A transaction that changed the database's row (here a GRANT … ON DATABASE, from a session
  // on another database, which FORCE does not end) holds DROP DATABASE for as long as it lives.
  // Left open until the test rolls it back, or ends it with the database's drop when it is done.
  async function grantInProgress(database: TestDatabase): Promise<pg.Client> {
    const blocker = new pg.Client({ connectionString: databaseUrlWith(database.url, 'postgres'), application_name: 'kw-grant-in-progress' });
    // The blocker first: the test's own drop would wait behind it too.
    onTestFinished(async () => {
      await blocker.end().catch(() => undefined);
      await database.drop();
    });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query(`GRANT CONNECT ON DATABASE ${blocker.escapeIdentifier(database.name)} TO PUBLIC`);
    return blocker;
  }

  it('gives up on a drop that another transaction blocks after lockTimeoutMs, naming it, with nothing dropped', async () => {
    const database = await createTestDatabase({ empty: true });
    const blocker = await grantInProgress(database);
    const { rows } = await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const warnings: string[] = [];

    const error = await recreateDatabase(database.url, { lockTimeoutMs: 1_500, warn: (line) => warnings.push(line) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as Error).message).toContain(`could not drop the database '${database.name}': gave up waiting for its locks after`);
    expect((error as Error).message).toContain(`blocked by pid ${rows[0]!.pid} (application 'kw-grant-in-progress'`);
    expect((error as Error).message).toContain('nothing was dropped');
    expect(warnings.length).toBeGreaterThan(0);
    await blocker.query('ROLLBACK');
    // Still there, and dropped and created again once nothing holds it.
    const marker = new pg.Client({ connectionString: database.url });
    await marker.connect();
    await marker.query('CREATE TABLE kept_until_recreated (id int)');
    await marker.end();
    await recreateDatabase(database.url, { lockTimeoutMs: 10_000 });
    const after = new pg.Client({ connectionString: database.url });
    await after.connect();
    onTestFinished(() => after.end());
    expect((await after.query("SELECT to_regclass('public.kept_until_recreated') AS t")).rows[0].t).toBeNull();
  });

  it("drops from a connection named db:reset's, watched from one named so too, not as a service's or a migration's", async () => {
    const database = await createTestDatabase({ empty: true });
    const blocker = await grantInProgress(database);

    const recreated = recreateDatabase(database.url, { lockTimeoutMs: 60_000, warn: () => undefined });
    recreated.catch(() => undefined);
    // Read from outside the blocker's transaction, whose view of pg_stat_activity stays as it
    // first read it. The drop's monitor connects to the maintenance database, as the drop does;
    // other files' runs at the same time have monitors of their own (a migration's, on its database).
    const monitors = () =>
      withClient(databaseUrlWith(database.url, 'postgres'), async (client) =>
        (
          await client.query<{ name: string }>(
            "SELECT DISTINCT application_name AS name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'kennwilliamson-%-monitor'",
          )
        ).rows.map((row) => row.name),
      );
    // The monitor opens once an attempt met contention, and stays until the drop is done.
    await eventually(async () => (await monitors()).includes('kennwilliamson-reset-monitor'), 'the reset monitor watches the drop');
    // The drop waits in attempts, with pauses between them: caught in one.
    const dropping = () =>
      withClient(databaseUrlWith(database.url, 'postgres'), async (client) =>
        (
          await client.query<{ name: string }>(
            "SELECT application_name AS name FROM pg_stat_activity WHERE query LIKE 'DROP DATABASE%' AND position($1 in query) > 0 AND wait_event_type = 'Lock'",
            [database.name],
          )
        ).rows,
      );
    let waiting: { name: string }[] = [];
    await eventually(async () => (waiting = await dropping()).length > 0, 'the drop waits for its lock');
    expect(waiting).toEqual([{ name: 'kennwilliamson-reset' }]);
    await blocker.query('ROLLBACK');
    await recreated;
  });

  const exists = (database: TestDatabase) =>
    withClient(databaseUrlWith(database.url, 'postgres'), async (client) =>
      (await client.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [database.name])).rowCount === 1,
    );

  // One prepared after db:reset looked (its own refusal comes before the question): the drop
  // failed with PostgreSQL's bare "is being used by prepared transactions", untyped.
  it('refuses a drop that a prepared transaction stops, naming it, with nothing dropped', async () => {
    const database = await createTestDatabase({ empty: true });
    const gid = `kw_drop_prepared_${Date.now()}`;
    // Rolled back first: the database cannot be dropped while it holds the transaction.
    onTestFinished(async () => {
      await withClient(database.url, (client) => client.query(`ROLLBACK PREPARED '${gid}'`)).catch(() => undefined);
      await database.drop();
    });
    await withClient(database.url, (client) => client.query(`BEGIN; CREATE TABLE kept (id int); PREPARE TRANSACTION '${gid}'`));

    const error = await recreateDatabase(database.url, { lockTimeoutMs: 5_000 }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^refusing to drop '${database.name}': it holds a prepared transaction '${gid}' of role \\w+, prepared at \\d{4}-\\d\\d-\\d\\dT[^,]+Z, ` +
          'which DROP DATABASE cannot end: COMMIT PREPARED or ROLLBACK PREPARED it first; nothing was dropped$',
      ),
    );
    expect((error as ProvisioningError).cause).toMatchObject({ code: '55006' });
    expect(await exists(database)).toBe(true);
  });

  // The connection lost during the drop's attempt failed the reset with a bare ConnectionError
  // ("the operation may be retried"), which did not say whether the database was still there.
  // Both at once: each waits for a deadline.
  it('says whether the database may have been dropped when the connection is lost: after the DROP was sent, or before', async ({ onTestFinished: finished }) => {
    const lost = async (stalledStatement: RegExp) => {
      const database = await createTestDatabase({ empty: true });
      finished(() => database.drop());
      const { proxy, url } = await stallingProxyFor(database.url, finished);
      const stalled = proxy.stallOn(stalledStatement);
      const error = await recreateDatabase(url).catch((e: unknown) => e);
      await stalled;
      return { database, error };
    };

    const [afterDrop, beforeDrop] = await Promise.all([lost(/DROP DATABASE/), lost(/SET lock_timeout/)]);

    expect(afterDrop.error).toBeInstanceOf(ProvisioningError);
    expect((afterDrop.error as Error).message).toMatch(
      new RegExp(`^'${afterDrop.database.name}' may or may not have been dropped: .*no answer to DROP DATABASE within \\d+ ms.*\\. Run the reset again, which drops it if it is there and creates it$`),
    );
    expect(beforeDrop.error).toBeInstanceOf(ProvisioningError);
    expect((beforeDrop.error as Error).message).toMatch(
      new RegExp(`^could not drop '${beforeDrop.database.name}': .*no answer to SET lock_timeout within \\d+ ms.*; nothing was dropped$`),
    );
    expect(await exists(beforeDrop.database)).toBe(true);
  });

  // CREATE DATABASE … OWNER of a role that is not there failed once the database was gone.
  it('refuses an owner role that does not exist before it drops anything', async () => {
    const database = await createTestDatabase({ empty: true });
    onTestFinished(() => database.drop());

    const error = await recreateDatabase(database.url, { owner: 'kw_no_such_owner' }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as Error).message).toBe(`refusing to recreate '${database.name}': its owner role 'kw_no_such_owner' does not exist; nothing was dropped`);
    expect(await exists(database)).toBe(true);
  });

  // The connection lost once the drop was done (here its RESET held back on the way, until the
  // round trip's deadline closed it): CREATE DATABASE failed with pg's bare "not queryable",
  // which did not say that the database was gone.
  it('says that the database was dropped and not created again when the creation fails after the drop', async ({ onTestFinished: finished }) => {
    const database = await createTestDatabase({ empty: true });
    finished(() => database.drop());
    const { proxy, url } = await stallingProxyFor(database.url, finished);
    const stalled = proxy.stallOn(/RESET lock_timeout/);

    const error = await recreateDatabase(url).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as Error).message).toMatch(new RegExp(`^'${database.name}' was dropped, and was not created again: .+\\. Run the reset again to create it$`));
    expect(await exists(database)).toBe(false);
  });
});
