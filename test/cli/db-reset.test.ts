import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { ensureAppRole } from '../../src/provisioning/app-role.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';
import { copyOfMigrations, writeMigration } from '../support/migration-sandbox.js';
import { execute } from '../support/table-contents.js';
import { cliOutcome, runCli, runCliInTerminal, startCli } from '../support/run-cli.js';
import { stallingProxyFor } from '../support/stalling-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { withReadmeAdminOptions } from '../support/readme-admin-options.js';

// A plain login role, as setup --admin makes the application role; gone after the test.
async function appRoleIn(databaseUrl: string): Promise<{ user: string; url: string }> {
  const user = `kw_reset_app_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(8).toString('hex');
  await execute(databaseUrl, `CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
  onTestFinished(() => execute(databaseUrl, `DROP OWNED BY ${user}; DROP ROLE ${user}`));
  const url = new URL(databaseUrl);
  url.username = user;
  url.password = password;
  return { user, url: url.toString() };
}

// A service's session connected to the database, for a reset's drop to end; closed after the test.
async function heldSession(url: string, applicationName: string): Promise<void> {
  const held = new pg.Client({ connectionString: url, application_name: applicationName });
  held.on('error', () => undefined);
  await held.connect();
  onTestFinished(() => held.end().catch(() => undefined));
}

// db:reset --admin --yes with `adminUrl`, and no owner's URL of its own.
const resetAsAdmin = (adminUrl: string, env: NodeJS.ProcessEnv) =>
  runCli('db-reset', ['--admin', '--yes'], { ADMIN_DATABASE_URL: adminUrl, DATABASE_URL: '', MIGRATION_DATABASE_URL: '', ...env });

const usersReadableBy = (url: string) =>
  withClient(url, (client) => client.query('SELECT count(*) FROM users').then(
    () => true,
    () => false,
  ));

describe('npm run db:reset', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database.drop());

  it('refuses a non-local host without --force, and never prints the password', async () => {
    const result = await runCli('db-reset', [], { DATABASE_URL: 'postgresql://app:hunter2-secret@db.example.com:5432/prod' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to reset a database on the non-local host 'db.example.com'");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  // pg sends a URL without a host to PGHOST: the guard must see that server, not "no host".
  it('refuses a URL without a host when PGHOST names a remote server, before connecting', async () => {
    const result = await runCli('db-reset', [], { DATABASE_URL: 'postgresql://app:hunter2-secret@/kennwilliamson', PGHOST: 'db.invalid' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to reset a database on the non-local host 'db.invalid' (from PGHOST); pass --force");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  it('drops, recreates and migrates a local database', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query("INSERT INTO users (email, password_hash, display_name, slug) VALUES ('gone@example.org', 'h', 'Gone', 'gone')");
    await client.end();

    const result = await runCli('db-reset', ['--yes'], { DATABASE_URL: database.url });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('5 migration(s) applied.');
    const after = new pg.Client({ connectionString: database.url });
    await after.connect();
    const { rows } = await after.query("SELECT count(*)::int AS n FROM users WHERE email = 'gone@example.org'");
    const { rows: migrations } = await after.query('SELECT count(*)::int AS n FROM schema_migrations');
    await after.end();
    expect(rows[0]).toEqual({ n: 0 });
    expect(migrations[0]).toEqual({ n: 5 });
  });

  it("gives the application role (DB_APP_USER) its grants back, which went with the database, and says that its bounds did too", async () => {
    const app = await appRoleIn(database.url);
    await ensureAppRole({ databaseUrl: database.url, user: app.user });
    expect(await usersReadableBy(app.url)).toBe(true);

    const result = await runCli('db-reset', ['--yes'], { DATABASE_URL: database.url, DB_APP_USER: app.user });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`granted the application role '${app.user}' rows only`);
    expect(result.stdout).toContain('run setup --admin with DB_APP_USER to write them again');
    expect(await usersReadableBy(app.url)).toBe(true);
  });
});

describe('npm run db:reset asks first', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
    await execute(database.url, "INSERT INTO users (email, password_hash, display_name, slug) VALUES ('kept@example.org', 'h', 'Kept', 'kept')");
  });
  afterAll(async () => database.drop());

  const kept = async () =>
    withClient(database.url, async (client) => (await client.query("SELECT count(*)::int AS n FROM users WHERE email = 'kept@example.org'")).rows[0]);

  it('refuses without a terminal to ask on unless --yes, touching nothing', async () => {
    const result = await runCli('db-reset', [], { DATABASE_URL: database.url });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`refusing to reset '${database.name}' on 127.0.0.1 without confirmation: there is no terminal to ask on; pass --yes`);
    expect(await kept()).toEqual({ n: 1 });
  });

  it('names the database and its server at the terminal, and an answer other than yes touches nothing', async () => {
    const result = await runCliInTerminal('db-reset', [], { DATABASE_URL: database.url }, 'no\n');

    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`This DROPS database '${database.name}' on 127\\.0\\.0\\.1:\\d+ and ALL ITS DATA`));
    expect(result.stdout).toContain('not confirmed; the database was not touched');
    expect(await kept()).toEqual({ n: 1 });
  });

  it('refuses to drop a database that its role could not create again (no CREATEDB), dropping nothing', async () => {
    // The owner role setup --admin makes: it owns the database, and may not create one.
    const result = await runCli('db-reset', ['--yes'], { DATABASE_URL: database.ownerUrl });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`refusing to recreate '${database.name}': role '${inject('ownerUser')}' may not create databases (CREATEDB)`);
    expect(result.stderr).toContain('nothing was dropped');
    expect(await kept()).toEqual({ n: 1 });
  });

  // As the superuser, the way that refusal says: the admin step's own inputs and refusals come
  // before the drop, not after it, which left an empty database owned by the admin.
  const asAdmin = (env: NodeJS.ProcessEnv) => resetAsAdmin(database.url, env);

  it('--admin refuses a missing DB_OWNER_USER or DB_OWNER_PASSWORD before it asks, dropping nothing', async () => {
    const noUser = await asAdmin({ DB_OWNER_USER: '', DB_OWNER_PASSWORD: inject('ownerPassword') });
    expect(noUser.code).toBe(1);
    expect(noUser.stderr).toContain('DB_OWNER_USER is not set');
    const noPassword = await asAdmin({ DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: '' });
    expect(noPassword.code).toBe(1);
    expect(noPassword.stderr).toContain('DB_OWNER_PASSWORD must not be empty');
    expect(noUser.stdout + noPassword.stdout).not.toContain('dropped');
    expect(await kept()).toEqual({ n: 1 });
  });

  // The reset without --admin refuses an owner without CREATEDB and advises --admin; an operator
  // who follows that with MIGRATION_DATABASE_URL still naming the database meant (a copy) and an
  // admin.env naming another (production) would drop the other.
  it.each(['MIGRATION_DATABASE_URL', 'DATABASE_URL'])('--admin refuses, before it asks, where %s names another database than ADMIN_DATABASE_URL', async (variable) => {
    const copyUrl = databaseUrlWith(database.ownerUrl, 'the_copy_meant');
    const result = await asAdmin({ [variable]: copyUrl, DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword') });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`--admin resets the database ADMIN_DATABASE_URL names, '${database.name}' on 127\\.0\\.0\\.1:\\d+, but ${variable} names 'the_copy_meant'`),
    );
    expect(result.stderr).toContain('nothing was dropped');
    expect(result.stdout).not.toContain('dropped');
    expect(await kept()).toEqual({ n: 1 });
  });

  it('--admin refuses what setup --admin refuses (an owner that is a superuser) before dropping anything', async () => {
    const superuser = decodeURIComponent(new URL(database.url).username);
    const result = await asAdmin({ DB_OWNER_USER: superuser, DB_OWNER_PASSWORD: 'not-used' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`role '${superuser}' is a superuser, so it cannot own the database`);
    expect(result.stdout).not.toContain('dropped');
    expect(await kept()).toEqual({ n: 1 });
  });

  it('refuses, before dropping anything, a MIGRATION_LOCK_TIMEOUT the migration would refuse and a DB_APP_USER it could not give the grants back to', async () => {
    const owner = { DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword') };
    const ambiguous = await asAdmin({ ...owner, MIGRATION_LOCK_TIMEOUT: '10000' });
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toContain('MIGRATION_LOCK_TIMEOUT=10000 is ambiguous');
    expect(ambiguous.stdout).not.toContain('dropped');
    const missing = 'kw_no_such_app_role';
    for (const result of [await asAdmin({ ...owner, DB_APP_USER: missing }), await runCli('db-reset', ['--yes'], { DATABASE_URL: database.url, DB_APP_USER: missing })]) {
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(missing);
      expect(result.stdout).not.toContain('dropped');
    }
    const sameAsOwner = await asAdmin({ ...owner, DB_APP_USER: inject('ownerUser') });
    expect(sameAsOwner.stderr).toContain('DB_APP_USER and DB_OWNER_USER are both');
    expect(await kept()).toEqual({ n: 1 });
  });

  // An admin that owns the database but lacks CREATEROLE may drop it and create it again, and
  // only the admin step after that refused it, leaving an empty database that nobody could
  // migrate: the admin step now runs first, on the database as it is.
  it('--admin refuses an admin without CREATEROLE before dropping anything, even one that owns the database', async () => {
    const admin = `kw_reset_admin_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(8).toString('hex');
    const ownedBy = (role: string) => execute(database.url, `ALTER DATABASE "${database.name}" OWNER TO ${role}`);
    await execute(database.url, `CREATE ROLE ${admin} LOGIN CREATEDB PASSWORD '${password}'`);
    onTestFinished(() => execute(database.url, `DROP ROLE ${admin}`));
    await ownedBy(admin);
    onTestFinished(() => ownedBy(inject('ownerUser')));
    const adminUrl = new URL(database.url);
    adminUrl.username = admin;
    adminUrl.password = password;

    const result = await asAdmin({ ADMIN_DATABASE_URL: adminUrl.toString(), DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword') });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`role '${admin}' cannot provision '${database.name}': creating the owner and application roles needs CREATEROLE`);
    expect(result.stdout).not.toContain('dropped');
    expect(await kept()).toEqual({ n: 1 });
  });

  // Last: it empties the database the tests above keep a row in.
  it('--admin drops, recreates and migrates the database, owned by the owner role, and gives the application role its grants and bounds back', async () => {
    const app = await appRoleIn(database.url);

    const result = await asAdmin({ DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword'), DB_APP_USER: app.user, DB_STATEMENT_TIMEOUT: '7s' });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('dropped and recreated the database');
    expect(result.stdout).toContain('5 migration(s) applied.');
    expect(await kept()).toEqual({ n: 0 });
    const owner = await withClient(database.url, async (client) => (await client.query('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()')).rows[0]);
    expect(owner).toEqual({ owner: inject('ownerUser') });
    expect(await usersReadableBy(app.url)).toBe(true);
    const bound = await withClient(app.url, async (client) => (await client.query("SELECT current_setting('statement_timeout') AS statement, current_setting('tcp_keepalives_idle') AS idle")).rows[0]);
    expect(bound).toEqual({ statement: '7s', idle: '5' });
  });
});

// Without DB_APP_USER the services' role lost every grant and its bounds without a word: the
// release step run afterwards brought the grants back but not the bounds, and behind a pooler
// its statements then ran unbounded. And the drop ended the services' sessions unannounced.
describe('npm run db:reset without DB_APP_USER', () => {
  it("gives the role the owner's default privileges name its grants and bounds back, naming it, and names the sessions the drop ends", async () => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const app = await appRoleIn(database.url);
    await ensureAppRole({ databaseUrl: database.ownerUrl, user: app.user });
    await heldSession(app.url, 'kw-held-service');

    const result = await resetAsAdmin(database.url, { DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword'), DB_APP_USER: '', DB_STATEMENT_TIMEOUT: '7s' });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`It ends 1 session(s) connected to it now: ${app.user} (kw-held-service).`);
    expect(result.stdout).toContain(`DB_APP_USER is unset: the application role is '${app.user}', to which the owner's default privileges give every new table`);
    expect(result.stdout).toContain(`granted the application role '${app.user}' rows only`);
    expect(await usersReadableBy(app.url)).toBe(true);
    const bound = await withClient(app.url, async (client) => (await client.query("SELECT current_setting('statement_timeout') AS statement")).rows[0]);
    expect(bound).toEqual({ statement: '7s' });
  });

  // A database whose application role is `before`, and `after`, a role made for it, not yet granted.
  async function databaseWithAnotherAppRole() {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const before = await appRoleIn(database.url);
    await ensureAppRole({ databaseUrl: database.ownerUrl, user: before.user });
    return { database, before, after: await appRoleIn(database.url) };
  }

  // The old database's default privileges go with it: its check of the new role before the drop
  // refused it as a second application role.
  it('with a DB_APP_USER other than the role the old database had, resets and grants the new one', async () => {
    const { database, before, after } = await databaseWithAnotherAppRole();

    const result = await resetAsAdmin(database.url, { DB_OWNER_USER: inject('ownerUser'), DB_OWNER_PASSWORD: inject('ownerPassword'), DB_APP_USER: after.user });

    expect(result.code, result.stderr).toBe(0);
    expect(await usersReadableBy(after.url)).toBe(true);
    expect(await usersReadableBy(before.url)).toBe(false);
  });

  // The check of the new role before the drop granted it on the old database, and a drop that
  // then did not happen (no CREATEDB here) left two roles with every row.
  it('grants nothing on the old database when the drop does not happen', async () => {
    const { database, before, after } = await databaseWithAnotherAppRole();

    const result = await runCli('db-reset', ['--yes'], { DATABASE_URL: database.ownerUrl, DB_APP_USER: after.user });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('may not create databases (CREATEDB)');
    expect(await usersReadableBy(after.url)).toBe(false);
    expect(await usersReadableBy(before.url)).toBe(true);
  });

  it('names at the terminal the sessions the drop would end', async () => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    await heldSession(database.ownerUrl, 'kw-held-terminal');

    const result = await runCliInTerminal('db-reset', [], { DATABASE_URL: database.url }, 'no\n');

    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`It ends 1 session(s) connected to it now: ${inject('ownerUser')} (kw-held-terminal).`);
    expect(result.stdout).toContain('not confirmed; the database was not touched');
  });

  // A role's name may hold any character: asked raw at the terminal, before the drop, one named
  // with escape sequences could erase the question and print another.
  it('names at the terminal a session whose role holds control characters, escaped', async () => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const user = `kw_reset_\x1b[2K\r${randomBytes(4).toString('hex')}`;
    const password = randomBytes(8).toString('hex');
    await withClient(database.url, (client) => client.query(`CREATE ROLE ${client.escapeIdentifier(user)} LOGIN PASSWORD '${password}'`));
    onTestFinished(() => withClient(database.url, (client) => client.query(`DROP ROLE ${client.escapeIdentifier(user)}`).then(() => undefined)));
    const url = new URL(database.url);
    url.username = encodeURIComponent(user);
    url.password = password;
    await heldSession(url.toString(), 'kw-held-odd-role');

    const result = await runCliInTerminal('db-reset', [], { DATABASE_URL: database.url }, 'no\n');

    expect(result.stdout).toContain(`It ends 1 session(s) connected to it now: ${user.replace('\x1b', '\\x1b').replace('\r', '\\x0d')} (kw-held-odd-role).`);
    expect(result.stdout).not.toContain('\x1b[2K');
    expect(result.stdout).toContain('not confirmed; the database was not touched');
  });

  // A prepared transaction belongs to the database and to no session: FORCE cannot end it, and
  // the drop failed with PostgreSQL's "database … is being used by prepared transactions",
  // untyped, naming neither the transaction nor what to do.
  it('refuses, before it asks, a database that a prepared transaction holds, naming it, and drops nothing', async () => {
    const database = await createTestDatabase();
    const gid = `kw_reset_prepared_${randomBytes(4).toString('hex')}`;
    // Rolled back first: the database cannot be dropped while it holds the transaction.
    onTestFinished(async () => {
      await withClient(database.url, (client) => client.query(`ROLLBACK PREPARED '${gid}'`)).catch(() => undefined);
      await database.drop();
    });
    await withClient(database.url, (client) => client.query(`BEGIN; SELECT count(*) FROM users; PREPARE TRANSACTION '${gid}'`));

    const asked = await runCliInTerminal('db-reset', [], { DATABASE_URL: database.url }, 'yes\n');
    const told = await runCli('db-reset', ['--yes'], { DATABASE_URL: database.url });

    // At the terminal, stdout and stderr are one.
    for (const output of [asked.stdout, told.stderr]) {
      expect(output).toContain(
        `refusing to reset '${database.name}': it holds a prepared transaction '${gid}' of role ${new URL(database.url).username}, prepared at `,
      );
      expect(output).toContain('which DROP DATABASE cannot end: COMMIT PREPARED or ROLLBACK PREPARED it first; nothing was dropped');
    }
    expect([asked.code, told.code]).toEqual([1, 1]);
    expect(asked.stdout).not.toContain('DROPS database');
    expect(await usersReadableBy(database.url)).toBe(true);
  });

  // A role without pg_read_all_stats sees other roles' sessions with no backend_type: they were
  // left out, the services' among them, for a reset that is no superuser's.
  it("names other roles' sessions to a reset that is no superuser's", async () => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const creator = await appRoleIn(database.url);
    await execute(database.url, `ALTER ROLE ${creator.user} CREATEDB; ALTER DATABASE ${database.name} OWNER TO ${creator.user}`);
    // Given back before the role goes, which it cannot while it owns the database.
    onTestFinished(() => execute(database.url, `ALTER DATABASE ${database.name} OWNER TO ${inject('ownerUser')}`));
    const app = await appRoleIn(database.url);
    await heldSession(app.url, 'kw-held-other');

    const result = await runCliInTerminal('db-reset', [], { DATABASE_URL: creator.url }, 'no\n');

    expect(result.stdout).toContain(`It ends 1 session(s) connected to it now: ${app.user}`);
    expect(result.stdout).toContain('not confirmed; the database was not touched');
    // Told yes, it may not end them: said so, rather than PostgreSQL's bare "permission denied
    // to terminate process".
    const told = await runCli('db-reset', ['--yes'], { DATABASE_URL: creator.url });
    expect(told.code).toBe(1);
    expect(told.stderr).toContain(`refusing to drop '${database.name}': sessions of other roles are connected to it`);
    expect(told.stderr).toContain('nothing was dropped');
    expect(await usersReadableBy(database.url)).toBe(true);
  });
});

// Node's own exit on Ctrl-C said nothing, not even whether the database was gone. Each stage is
// held at one round trip through a proxy that stalls it, and the command stopped there.
describe('npm run db:reset stopped by Ctrl-C', () => {
  it.for([
    { stage: 'before the drop', statement: /backend_type = 'client backend'/, leaves: () => 'nothing was dropped' },
    // Confirmed, the drop's own checks (CREATEDB) still come before it is sent.
    { stage: "at the drop's checks", statement: /rolsuper OR rolcreatedb AS creates/, leaves: () => 'nothing was dropped' },
    {
      stage: 'during the drop',
      statement: /DROP DATABASE/,
      leaves: (name: string) => `'${name}' may or may not have been dropped: run the reset again, which drops it if it is there and creates it`,
    },
    {
      stage: 'during the migrations',
      statement: /pg_try_advisory_xact_lock/,
      leaves: (name: string) =>
        `'${name}' was dropped and created again, and is not fully set up (a migration in progress is rolled back by the server and not recorded): run the reset again`,
    },
  ])('$stage, says what it leaves', async ({ statement, leaves }, { expect, onTestFinished: finished }) => {
    const database = await createTestDatabase();
    finished(() => database.drop());
    const { proxy, url } = await stallingProxyFor(database.url, finished);
    const stalled = proxy.stallOn(statement);
    const child = startCli('db-reset', ['--yes'], { DATABASE_URL: url });
    const outcome = cliOutcome(child);

    await stalled;
    child.kill('SIGINT');
    const { code, stderr } = await outcome;

    expect(code, stderr).toBe(130);
    expect(stderr).toContain(`SIGINT: stopped; ${leaves(database.name)}\n`);
  });

  // The role found from the old database's default privileges is not found again once they went
  // with it: a reset run again as told would give its grants back to nobody.
  it('names the application role it found for the reset run again, once the drop has been sent', async ({ onTestFinished: finished }) => {
    const database = await createTestDatabase();
    finished(() => database.drop());
    const app = await appRoleIn(database.url);
    await ensureAppRole({ databaseUrl: database.ownerUrl, user: app.user });
    const { proxy, url } = await stallingProxyFor(database.url, finished);
    const stalled = proxy.stallOn(/pg_try_advisory_xact_lock/);
    const child = startCli('db-reset', ['--yes'], { DATABASE_URL: url, DB_APP_USER: '' });
    const outcome = cliOutcome(child);

    await stalled;
    child.kill('SIGINT');
    const { code, stderr } = await outcome;

    expect(code, stderr).toBe(130);
    expect(stderr).toContain(`not fully set up (a migration in progress is rolled back by the server and not recorded): run the reset again with DB_APP_USER=${app.user} (its grants went with the database)\n`);
  });

  it('at the question, says the database was not touched', async () => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());

    const result = await runCliInTerminal('db-reset', [], { DATABASE_URL: database.url }, '\x03', "Type 'yes'");

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('not confirmed; the database was not touched');
    expect(await usersReadableBy(database.url)).toBe(true);
  });
});

// README, "The application role": an admin URL may carry superuser-only settings (the advice
// that keeps a verifier out of the server log); the owner, not a superuser, may not log in with them.
describe("npm run db:reset --admin with the README's superuser-only options in ADMIN_DATABASE_URL", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database.drop());

  it("migrates as the owner role, which logs in without the admin's options, and gives the application role its grants back", async () => {
    const app = await appRoleIn(database.url);

    const result = await resetAsAdmin(withReadmeAdminOptions(database.url), {
      DB_OWNER_USER: inject('ownerUser'),
      DB_OWNER_PASSWORD: inject('ownerPassword'),
      DB_APP_USER: app.user,
    });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('dropped and recreated the database');
    expect(result.stdout).toContain('5 migration(s) applied.');
    expect(await usersReadableBy(app.url)).toBe(true);
  });
});

describe('npm run migrate', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database.drop());

  it('status lists the five applied migrations', async () => {
    const result = await runCli('migrate', ['status'], { DATABASE_URL: database.url });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^applied +20250914134643_initial_schema applied .+ in \d+ ms$/m);
    expect(result.stdout).toContain('5 applied, 0 pending, 0 changed, 0 missing');
  });

  it('fails with a message on an unknown action', async () => {
    const result = await runCli('migrate', ['sideways'], { DATABASE_URL: database.url });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("unknown migrate action 'sideways'");
  });

  it('migrates with MIGRATION_DATABASE_URL when both URLs are set', async () => {
    const result = await runCli('migrate', ['status'], {
      MIGRATION_DATABASE_URL: database.url,
      DATABASE_URL: 'postgresql://app:app-secret@127.0.0.1:1/unreachable',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('5 applied, 0 pending, 0 changed, 0 missing');
  });

  it('down asks first: without a terminal it refuses unless --yes, reverting nothing', async () => {
    const result = await runCli('migrate', ['down'], { DATABASE_URL: database.url });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`refusing to revert migrations of '${database.name}' on 127.0.0.1 without confirmation: there is no terminal to ask on; pass --yes`);
    expect((await runCli('migrate', ['status'], { DATABASE_URL: database.url })).stdout).toContain('5 applied, 0 pending');
  });

  it('down refuses a database on a non-local host without --force, and never prints the password', async () => {
    const result = await runCli('migrate', ['down', '--yes'], { DATABASE_URL: 'postgresql://owner:hunter2-secret@db.example.com:5432/prod' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to revert migrations of a database on the non-local host 'db.example.com'; pass --force");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  // A shell that still holds the URL exported for a release would apply a draft migration there,
  // where its recorded checksum keeps it from being changed. Releases run the shipped bin.
  it("up refuses a database on a non-local host without --force (this repository's script), and never prints the password", async () => {
    const result = await runCli('migrate', [], { DATABASE_URL: '', MIGRATION_DATABASE_URL: 'postgresql://owner:hunter2-secret@db.example.com:5432/prod' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "[CONFIG_INVALID]: refusing to apply migrations to a database on the non-local host 'db.example.com'; pass --force if you mean it",
    );
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  // db:setup applies migrations too, and is the README's first command: before, it applied the
  // draft wherever the shell's URL led, without a word.
  it.each([
    ['the release step', { MIGRATION_DATABASE_URL: 'postgresql://owner:hunter2-secret@db.example.com:5432/prod' }, []],
    ['the admin step', { ADMIN_DATABASE_URL: 'postgresql://admin:hunter2-secret@db.example.com:5432/prod', DB_OWNER_USER: 'owner', DB_OWNER_PASSWORD: 'x' }, ['--admin']],
  ])("db:setup (%s) refuses a database on a non-local host without --force (this repository's script), and never prints the password", async (_step, env, args) => {
    const result = await runCli('db-setup', args, { DATABASE_URL: '', ...env });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `[CONFIG_INVALID]: refusing to apply migrations to a database on the non-local host 'db.example.com'; pass --force if you mean it`,
    );
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  it('db:setup takes --force, and says so in its help', async () => {
    const forced = await runCli('db-setup', ['--force'], { DATABASE_URL: database.ownerUrl });
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain('Database is up to date.');
    expect((await runCli('db-setup', ['--help'], {})).stdout).toContain('--force                 in this repository (npm run): allow applying migrations');
  });

  it('up takes --force, which the shipped command knows with down only', async () => {
    const result = await runCli('migrate', ['up', '--force'], { DATABASE_URL: database.ownerUrl });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('Nothing to apply: the database is up to date.');
    expect((await runCli('migrate', ['--help'], {})).stdout).toContain('--force                 with down, and with up in this repository (npm run migrate)');
  });

  it('down names the database at the terminal and reverts once told yes', async () => {
    // As the owner: the commands refuse to migrate as a superuser.
    const result = await runCliInTerminal('migrate', ['down'], { DATABASE_URL: database.ownerUrl }, 'yes\n');

    expect(result.code, result.stdout).toBe(0);
    // Named: the question says which migration goes.
    const last = readdirSync(defaultMigrationsDir()).filter((file) => file.endsWith('.up.sql')).sort().at(-1)!.replace('.up.sql', '');
    expect(result.stdout).toMatch(new RegExp(`This reverts the last migration, ${last}, of database '${database.name}' on 127\\.0\\.0\\.1:\\d+`));
    expect(result.stdout).toContain('1 migration(s) reverted.');
    expect((await runCli('migrate', [], { DATABASE_URL: database.ownerUrl })).stdout).toContain('1 migration(s) applied.');
  });

  // What a superuser's migration creates is its own: the owner's grants to the application role
  // never reach it, and the owner's backups cannot read it (a review's run left the services
  // with "permission denied" and every later backup failing).
  it('up, down and the release step refuse to migrate as a superuser, naming the variable, and change nothing', async ({ onTestFinished }) => {
    const empty = await createTestDatabase({ empty: true });
    onTestFinished(() => empty.drop());
    const refusal = (nothing: string) =>
      new RegExp(
        `\\[CONFIG_INVALID\\]: MIGRATION_DATABASE_URL logs in as '[^']+', a superuser: the tables and functions a migration creates would be its own, .* ` +
          `Migrate as the database's owner \\(DB_OWNER_USER, as setup --admin made it\\); ${nothing}`,
      );
    const env = (url: string) => ({ DATABASE_URL: '', MIGRATION_DATABASE_URL: url });
    for (const [command, args, url, nothing] of [
      ['migrate', [], empty.url, 'nothing was applied'],
      ['migrate', ['up', '--dry-run'], empty.url, 'nothing was applied'],
      ['db-setup', [], empty.url, 'nothing was applied'],
      ['migrate', ['down', '--yes'], database.url, 'nothing was reverted'],
    ] as const) {
      const result = await runCli(command, [...args], env(url));
      expect(result.code, `${command} ${args.join(' ')}`).toBe(1);
      expect(result.stderr).toMatch(refusal(nothing));
    }
    const tables = await withClient(empty.url, async (client) => (await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")).rows[0]);
    expect(tables).toEqual({ n: 0 });
    // Before it asks: a "yes" would be for nothing.
    const asked = await runCliInTerminal('migrate', ['down'], env(database.url), 'yes\n');
    expect(asked.code).toBe(1);
    expect(asked.stdout).not.toContain("Type 'yes'");
    expect(asked.stdout).toMatch(refusal('nothing was reverted'));
    // The release step does not make the database it would then refuse to migrate: it would be left behind, the superuser's.
    const missing = `${database.name}_missing`;
    const created = await runCli('db-setup', [], env(databaseUrlWith(database.url, missing)));
    expect(created.code).toBe(1);
    expect(created.stderr).toMatch(refusal('nothing was created'));
    const exists = await withClient(database.url, async (client) => (await client.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [missing])).rows[0]);
    expect(exists).toEqual({ n: 0 });
    const recorded = await withClient(database.url, async (client) => (await client.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0]);
    expect(recorded).toEqual({ n: 5 });
    // As the owner, the same command migrates.
    expect((await runCli('migrate', [], env(empty.ownerUrl))).stdout).toContain('5 migration(s) applied.');
  });

  // A hosted platform's administrator (rds_superuser, Supabase's postgres) is no superuser, and
  // is often made a member of the roles it manages: with the owner's rights, its migration runs
  // and is recorded, but the tables it creates are its own, and the application role's next
  // queries of them fail with "permission denied".
  it("up, down and the release step refuse a login other than the migrations record's owner, naming both, and change nothing", async ({ onTestFinished }) => {
    const other = `kw_hosted_admin_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(8).toString('hex');
    await execute(database.url, `CREATE ROLE ${other} LOGIN PASSWORD '${password}'; GRANT ${inject('ownerUser')} TO ${other}`);
    onTestFinished(() => execute(database.url, `DROP OWNED BY ${other}; DROP ROLE ${other}`));
    const url = new URL(database.url);
    url.username = other;
    url.password = password;
    const migrationsDir = await copyOfMigrations();
    onTestFinished(() => rm(migrationsDir, { recursive: true, force: true }));
    await writeMigration(migrationsDir, '29990101000000_add_themes', 'CREATE TABLE themes (name text PRIMARY KEY);\n', 'DROP TABLE themes;\n');
    const owner = inject('ownerUser');
    const refusal =
      `[CONFIG_INVALID]: MIGRATION_DATABASE_URL logs in as '${other}', but the migrations record (public.schema_migrations) belongs to '${owner}', ` +
      `as what the migrations made does: what '${other}' created would be its own`;
    const env = { DATABASE_URL: '', MIGRATION_DATABASE_URL: url.toString() };
    for (const [command, args, nothing] of [
      ['migrate', ['--migrations-dir', migrationsDir], 'nothing was applied'],
      ['migrate', ['up', '--dry-run', '--migrations-dir', migrationsDir], 'nothing was applied'],
      ['db-setup', [], 'nothing was applied'],
      ['migrate', ['down', '--yes'], 'nothing was reverted'],
    ] as const) {
      const result = await runCli(command, [...args], env);
      expect(result.code, `${command} ${args.join(' ')}`).toBe(1);
      expect(result.stderr).toContain(refusal);
      expect(result.stderr).toContain(`Migrate as '${owner}' with its own login`);
      expect(result.stderr).toMatch(new RegExp(`; ${nothing}\\n`));
    }
    // Before it asks: a "yes" would be for nothing.
    const asked = await runCliInTerminal('migrate', ['down'], env, 'yes\n');
    expect(asked.code).toBe(1);
    expect(asked.stdout).not.toContain("Type 'yes'");
    expect(asked.stdout).toContain(refusal);
    const left = await withClient(database.url, async (client) => (await client.query(
      "SELECT to_regclass('themes') IS NULL AS no_themes, (SELECT count(*)::int FROM schema_migrations) AS recorded",
    )).rows[0]);
    expect(left).toEqual({ no_themes: true, recorded: 5 });
    // The owner, with the same folder, would apply it (the tests after this one count the record).
    const planned = await runCli('migrate', ['up', '--dry-run', '--migrations-dir', migrationsDir], { DATABASE_URL: '', MIGRATION_DATABASE_URL: database.ownerUrl });
    expect(planned.stdout).toContain('would apply 29990101000000_add_themes');
  });

  it('down --to a name that is not applied (mistyped) is refused before it asks, naming the applied ones, reverting nothing', async () => {
    const typo = '20250914134643_initial_schemaa';
    const result = await runCliInTerminal('migrate', ['down', '--to', typo], { DATABASE_URL: database.ownerUrl }, 'yes\n');

    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain("Type 'yes'");
    expect(result.stdout).toMatch(new RegExp(`--to ${typo} names no applied migration \\(applied, newest first: \\d{14}_\\w+, .*20250914134643_initial_schema\\); nothing was reverted`));
    const recorded = await withClient(database.url, async (client) => (await client.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0]);
    expect(recorded).toEqual({ n: 5 });
  });
});
