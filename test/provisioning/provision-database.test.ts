import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { ProvisioningError } from '../../src/errors.js';
import { migrate } from '../../src/migrations/migrator.js';
import { databaseUrlAs, databaseUrlWith, ensureDatabase } from '../../src/provisioning/database-admin.js';
import { provisionAppRole } from '../../src/provisioning/app-role.js';
import { provisionDatabase } from '../../src/provisioning/provision-database.js';
import { debianPostgresPrograms, startDebianPostgres, type DebianPostgres } from '../support/debian-postgres.js';
import { eventually } from '../support/eventually.js';
import { inCi } from '../support/in-ci.js';
import { toolsAvailable } from '../support/required-tools.js';
import { runCli } from '../support/run-cli.js';
import { execute } from '../support/table-contents.js';
import { withReadmeAdminOptions } from '../support/readme-admin-options.js';

// A server of this file's own (Debian's PostgreSQL 15, where CREATEROLE is as good as
// superuser): the tests revoke CONNECT on its `postgres` database, which the run's shared
// server must keep.
const available = toolsAvailable(debianPostgresPrograms, 'the provisioning tests (a PostgreSQL 15 server of their own)');

// Each test runs the command in processes of its own: room for a busy machine.
describe.skipIf(!available)('setup --admin provisions, setup (the release step) needs no role-creating powers', { timeout: 120_000 }, () => {
  let server: DebianPostgres;
  const suffix = randomBytes(3).toString('hex');
  const owner = { user: `kw_owner_${suffix}`, password: `owner-${randomBytes(8).toString('hex')}` };
  const app = { user: `kw_app_${suffix}`, password: `app-${randomBytes(8).toString('hex')}` };
  const database = `kw_provisioned_${suffix}`;
  let adminUrl: string;
  let ownerUrl: string;

  const admin = (env: NodeJS.ProcessEnv = {}, options: string[] = []) =>
    runCli('db-setup', ['--admin', ...options], {
      ADMIN_DATABASE_URL: adminUrl,
      DATABASE_URL: '',
      MIGRATION_DATABASE_URL: '',
      DB_OWNER_USER: owner.user,
      DB_OWNER_PASSWORD: owner.password,
      DB_APP_USER: app.user,
      DB_APP_PASSWORD: app.password,
      ...env,
    });
  const release = (env: NodeJS.ProcessEnv = {}) =>
    runCli('db-setup', [], { MIGRATION_DATABASE_URL: ownerUrl, DATABASE_URL: '', DB_APP_USER: app.user, DB_APP_PASSWORD: '', ...env });

  // The stored SCRAM verifiers, which only a superuser may read.
  const verifiers = () =>
    withClient(server.urlOf('postgres'), async (client) => {
      const { rows } = await client.query<{ rolname: string; rolpassword: string }>(
        'SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY ($1) ORDER BY rolname',
        [[owner.user, app.user]],
      );
      return Object.fromEntries(rows.map((row) => [row.rolname, row.rolpassword]));
    });
  const ownersIn = (url: string) =>
    withClient(url, async (client) => {
      const { rows } = await client.query<{ owner: string }>(
        `SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class
          WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'v')
         UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc p
          WHERE pronamespace = 'public'::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`,
      );
      return rows.map((row) => row.owner).sort();
    });

  beforeAll(async () => {
    server = await startDebianPostgres();
    adminUrl = server.urlOf(database);
    ownerUrl = databaseUrlAs(adminUrl, owner.user, owner.password);
  });
  afterAll(async () => server?.stop());

  // First: the database does not exist yet, and must not once the value is refused.
  it('refuses a MIGRATION_LOCK_TIMEOUT the migration step would refuse before the admin step changes anything', async () => {
    const result = await admin({ MIGRATION_LOCK_TIMEOUT: '10000' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('MIGRATION_LOCK_TIMEOUT=10000 is ambiguous');
    expect(result.stdout).toBe('');
    const exists = await withClient(server.urlOf('postgres'), async (client) => (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount);
    expect(exists).toBe(0);
  });

  it('creates the database, a plain owner role that owns it and everything in it, migrates as it, and the application role', async () => {
    const result = await admin();

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`created the database '${database}'`);
    expect(result.stdout).toContain(`created the owner role '${owner.user}'`);
    expect(result.stdout).toContain('5 migration(s) applied.');
    expect(result.stdout).toContain(`created the application role '${app.user}'`);
    expect(result.stdout + result.stderr).not.toContain(owner.password);
    expect(result.stdout + result.stderr).not.toContain(app.password);
    const facts = await withClient(adminUrl, async (client) => {
      const { rows } = await client.query(
        `SELECT r.rolcanlogin AS login, r.rolsuper AS super, r.rolcreaterole AS createrole, r.rolcreatedb AS createdb,
                r.rolreplication AS replication, r.rolbypassrls AS bypassrls,
                pg_get_userbyid(d.datdba) AS database_owner,
                (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public') AS schema_owner
           FROM pg_roles r, pg_database d WHERE r.rolname = $1 AND d.datname = current_database()`,
        [owner.user],
      );
      return rows[0];
    });
    expect(facts).toEqual({
      login: true,
      super: false,
      createrole: false,
      createdb: false,
      replication: false,
      bypassrls: false,
      database_owner: owner.user,
      schema_owner: 'pg_database_owner',
    });
    expect(await ownersIn(adminUrl)).toEqual([owner.user]);
  });

  it('keeps both verifiers when run again with the same passwords', async () => {
    const before = await verifiers();

    const result = await admin();

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`the owner role '${owner.user}' owns the database and everything in it`);
    expect(result.stdout).toContain(`the application role '${app.user}' exists, its password unchanged`);
    expect(await verifiers()).toEqual(before);
  });

  it('release step: a plain owner (no CREATEROLE, no CREATEDB) runs setup twice on the provisioned database, leaving the application role\'s verifier alone', async () => {
    const before = await verifiers();
    await withClient(adminUrl, (client) => client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${app.user}`));

    // A different DB_APP_PASSWORD changes nothing either: the release step never sets one.
    for (const env of [{}, { DB_APP_PASSWORD: 'not-the-password' }]) {
      const result = await release(env);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('Database is up to date.');
      expect(result.stdout).toContain(`granted the application role '${app.user}' rows only`);
    }

    expect(await verifiers()).toEqual(before);
    // The grants came back, and the application role logs in with the password the admin set.
    const appUrl = databaseUrlAs(adminUrl, app.user, app.password);
    await withClient(appUrl, (client) => client.query('SELECT count(*) FROM users'));
  });

  // The application role named as the owner (or a typo, which would create a role) had the
  // database and everything in it handed to it: the services' role could drop every table,
  // and the release step, as the real owner, refused from then on.
  it('refuses a DB_OWNER_USER other than the role the migrations record belongs to, the application role or a new name, changing nothing', async () => {
    const before = { verifiers: await verifiers(), owners: await ownersIn(adminUrl) };
    const typo = `kw_typo_${suffix}`;
    for (const other of [{ DB_OWNER_USER: app.user, DB_OWNER_PASSWORD: owner.password }, { DB_OWNER_USER: typo, DB_OWNER_PASSWORD: 'typo-password' }]) {
      const result = await admin({ ...other, DB_APP_USER: '', DB_APP_PASSWORD: '' });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`the migrations record public.schema_migrations belongs to '${owner.user}', the role migrations run as in this database`);
      expect(result.stderr).toContain(`Set DB_OWNER_USER to '${owner.user}'`);
    }
    expect(await verifiers()).toEqual(before.verifiers);
    expect(await ownersIn(adminUrl)).toEqual(before.owners);
    const { rows } = await withClient(adminUrl, (client) =>
      client.query<{ owner: string; typo: boolean }>(
        'SELECT pg_get_userbyid(datdba) AS owner, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS typo FROM pg_database WHERE datname = current_database()',
        [typo],
      ),
    );
    expect(rows).toEqual([{ owner: owner.user, typo: false }]);
    expect((await release()).code).toBe(0);
  });

  it('sets a changed password, and only then', async () => {
    const before = await verifiers();
    const result = await admin({ DB_APP_PASSWORD: `${app.password}-new` });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`set the password of the application role '${app.user}'`);
    const after = await verifiers();
    expect(after[owner.user]).toBe(before[owner.user]);
    expect(after[app.user]).not.toBe(before[app.user]);
    await withClient(databaseUrlAs(adminUrl, app.user, `${app.password}-new`), (client) => client.query('SELECT 1'));
    await admin(); // back to the password the other tests use
  });

  // A role's password is the server's: a copy provisioned beside production with production's
  // role names and the copy's own passwords logged production's services out.
  it("refuses to change the password of a role that serves another database of the server, unless --shared-roles, naming it", async () => {
    const copy = await server.createEmptyDatabase();
    const before = await verifiers();
    const asCopy = { ADMIN_DATABASE_URL: server.urlOf(copy) };

    const appRun = await admin({ ...asCopy, DB_APP_PASSWORD: 'copy-staging-pw' }, ['--no-migrate']);
    const ownerRun = await admin({ ...asCopy, DB_OWNER_PASSWORD: 'copy-owner-pw' }, ['--no-migrate']);

    expect(appRun.code).toBe(1);
    expect(appRun.stderr).toContain(
      `DB_APP_PASSWORD would change the password of '${app.user}', and a role's password is the server's: '${app.user}' also serves '${database}' on this server`,
    );
    expect(ownerRun.code).toBe(1);
    expect(ownerRun.stderr).toContain(`DB_OWNER_PASSWORD would change the password of '${owner.user}', and a role's password is the server's: '${owner.user}' also serves '${database}'`);
    expect(await verifiers()).toEqual(before);

    const meant = await admin({ ...asCopy, DB_APP_PASSWORD: 'copy-staging-pw' }, ['--no-migrate', '--shared-roles']);
    expect(meant.code, meant.stderr).toBe(0);
    expect((await verifiers())[app.user]).not.toBe(before[app.user]);
    // The copy goes, and with it what the roles had there; the password the other tests use comes back.
    await execute(server.urlOf('postgres'), `DROP DATABASE ${copy} WITH (FORCE)`);
    await admin();
  });

  // README, "Changing the application role's password": run from a machine whose package is
  // newer than the release, the admin step must not change the schema under the services.
  it('sets a changed password with --no-migrate, applying no migration, and says how many are pending', async () => {
    const before = await verifiers();
    const latest = await withClient(adminUrl, async (client) => (await client.query('SELECT * FROM schema_migrations ORDER BY name DESC LIMIT 1')).rows[0]);
    // As a newer package sees it: its latest migration not applied here.
    await withClient(adminUrl, (client) => client.query('DELETE FROM schema_migrations WHERE name = $1', [latest.name]));
    try {
      const result = await admin({ DB_APP_PASSWORD: `${app.password}-rotated` }, ['--no-migrate']);

      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('applied no migration (--no-migrate): 1 pending, for the release step to apply');
      expect(result.stdout).toContain(`set the password of the application role '${app.user}'`);
      const applied = await withClient(adminUrl, async (client) => (await client.query('SELECT count(*)::int AS n FROM schema_migrations WHERE name = $1', [latest.name])).rows[0]);
      expect(applied).toEqual({ n: 0 });
      expect((await verifiers())[app.user]).not.toBe(before[app.user]);
    } finally {
      await withClient(adminUrl, (client) =>
        client.query('INSERT INTO schema_migrations SELECT * FROM json_populate_record(NULL::schema_migrations, $1)', [JSON.stringify(latest)]),
      );
      await admin(); // back to the password the other tests use
    }
  });

  // Run to change the bounds without DB_APP_USER, it changed nothing and said so nowhere.
  it('says that the bound variables write nothing without DB_APP_USER, and writes nothing', async () => {
    const settings = () =>
      withClient(adminUrl, async (client) => (await client.query('SELECT setrole::regrole::text AS role, setconfig FROM pg_db_role_setting ORDER BY 1')).rows);
    const before = await settings();

    const result = await admin({ DB_APP_USER: '', DB_APP_PASSWORD: '', DB_STATEMENT_TIMEOUT: '7s', DB_LOCK_TIMEOUT: '3s' }, ['--no-migrate']);

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(
      "DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT are set, but DB_APP_USER is not: setup --admin writes the bounds into the application role's defaults " +
        'only as it provisions that role (DB_APP_USER with DB_APP_PASSWORD); no bound was written',
    );
    expect(await settings()).toEqual(before);
  });

  it('refuses --no-migrate without --admin: the release step is the migration', async () => {
    const result = await runCli('db-setup', ['--no-migrate'], { MIGRATION_DATABASE_URL: ownerUrl, DATABASE_URL: '' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('setup --no-migrate goes with --admin only');
  });

  // README, "The application role": the run that sets a password keeps its verifier out of the
  // server's log with superuser-only settings in ADMIN_DATABASE_URL. The owner, not a superuser,
  // may not log in with them (42501 at login), so its connections go without them.
  it("sets changed passwords with the README's superuser-only options in ADMIN_DATABASE_URL, keeping both verifiers out of a server log that logs every statement, and migrates as the owner", async () => {
    const superuser = server.urlOf('postgres');
    const logFile = path.join(await withClient(superuser, async (client) => (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0]!.data_directory), 'server.log');
    const logSince = async (offset: number) => (await readFile(logFile)).subarray(offset).toString('utf8');
    const logSize = async () => (await readFile(logFile)).length;
    const settings = { log_statement: "'all'", log_min_duration_statement: '0', log_line_prefix: "'%m [%p] user=%u '" };
    const logsEverything = () =>
      withClient(superuser, async (client) => (await client.query<{ s: string }>("SELECT current_setting('log_statement') AS s")).rows[0]!.s === 'all');
    const before = await verifiers();
    let restored: Record<string, string> | undefined;
    // One statement at a time: ALTER SYSTEM may not run in a transaction, nor in a multi-statement query.
    for (const [name, value] of Object.entries(settings)) await execute(superuser, `ALTER SYSTEM SET ${name} = ${value}`);
    await execute(superuser, 'SELECT pg_reload_conf()');
    try {
      await eventually(logsEverything, 'the server logs every statement');
      const start = await logSize();
      const result = await admin({
        ADMIN_DATABASE_URL: withReadmeAdminOptions(adminUrl),
        DB_OWNER_PASSWORD: `${owner.password}-new`,
        DB_APP_PASSWORD: `${app.password}-new`,
      });
      // Read at once: the test's own sessions below are the superuser's too, without the options.
      const logged = await logSince(start);

      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`set the password of the owner role '${owner.user}'`);
      expect(result.stdout).toContain('Database is up to date.');
      expect(result.stdout).toContain(`set the password of the application role '${app.user}'`);
      expect(result.stdout).toContain(`granted the application role '${app.user}' rows only`);
      const changed = await verifiers();
      expect(changed[owner.user]).not.toBe(before[owner.user]);
      expect(changed[app.user]).not.toBe(before[app.user]);
      expect(logged).not.toContain(changed[owner.user]);
      expect(logged).not.toContain(changed[app.user]);
      expect(logged).not.toContain('SCRAM-SHA-256$');
      // The admin's sessions logged nothing; the owner's (the migrations, the grants) went
      // without the admin's options, and the server logged them.
      expect(logged).not.toContain('user=postgres ');
      expect(logged).toContain(`user=${owner.user} LOG:  statement: `);

      // Back to the passwords the other tests use, without the options: the server logs those
      // verifiers, as the README warns (and the assertions above could see them).
      const back = await logSize();
      expect((await admin()).code).toBe(0);
      const loggedWithout = await logSince(back);
      restored = await verifiers();
      expect(restored[owner.user]).not.toBe(changed[owner.user]);
      expect(loggedWithout).toContain(restored[owner.user]);
      expect(loggedWithout).toContain(restored[app.user]);
    } finally {
      if (restored === undefined) await admin(); // the passwords back, should the test have failed before
      for (const name of Object.keys(settings)) await execute(superuser, `ALTER SYSTEM RESET ${name}`);
      await execute(superuser, 'SELECT pg_reload_conf()');
      await eventually(async () => !(await logsEverything()), 'the server logs statements as it did');
    }
    await withClient(ownerUrl, (client) => client.query('SELECT 1'));
  });

  // RDS's master user, on PostgreSQL 15: "must be member of role" once it had created the
  // database, which then stayed its own, and every run after failed the same way.
  it('by an admin with CREATEDB and CREATEROLE, not a superuser, creates the database and gives it to the owner role it made', async () => {
    const rdsadmin = { user: `kw_rdsadmin15_${suffix}`, password: `admin-${randomBytes(8).toString('hex')}` };
    const owner15 = { user: `kw_owner15_${suffix}`, password: `owner-${randomBytes(8).toString('hex')}` };
    await execute(server.urlOf('postgres'), `CREATE ROLE ${rdsadmin.user} LOGIN CREATEDB CREATEROLE PASSWORD '${rdsadmin.password}'`);
    const rdsUrl = databaseUrlAs(server.urlOf(`kw_provisioned15_${suffix}`), rdsadmin.user, rdsadmin.password);
    const lines: string[] = [];

    const result = await provisionDatabase({ adminUrl: rdsUrl, owner: owner15, log: (line) => lines.push(line) });

    expect(result).toMatchObject({ databaseCreated: true, owner: 'created' });
    const facts = await withClient(server.urlOf('postgres'), async (client) =>
      (
        await client.query<{ owner: string; member: boolean }>(
          "SELECT pg_get_userbyid(datdba) AS owner, pg_has_role($2, $3, 'MEMBER') AS member FROM pg_database WHERE datname = $1",
          [`kw_provisioned15_${suffix}`, rdsadmin.user, owner15.user],
        )
      ).rows[0],
    );
    // The membership it needed for that is taken back: it would inherit the owner's rights.
    expect(facts).toEqual({ owner: owner15.user, member: false });
    expect(lines.join('\n')).not.toContain('membership');
    expect((await migrate({ databaseUrl: databaseUrlAs(rdsUrl, owner15.user, owner15.password) })).length).toBeGreaterThan(0);
  });

  it('keeps an unchanged password also for an admin that may not read pg_authid (CREATEROLE, not a superuser), by logging in as the role', async () => {
    const creator = { user: `kw_creator_${suffix}`, password: 'creator-pw' };
    await execute(server.urlOf('postgres'), `CREATE ROLE ${creator.user} LOGIN CREATEROLE PASSWORD '${creator.password}'`);
    const creatorUrl = databaseUrlAs(adminUrl, creator.user, creator.password);
    const before = await verifiers();

    expect(await provisionAppRole({ adminUrl: creatorUrl, ...app })).toBe('unchanged');
    expect(await verifiers()).toEqual(before);
    expect(await provisionAppRole({ adminUrl: creatorUrl, user: app.user, password: `${app.password}-other` })).toBe('password set');
    expect((await verifiers())[app.user]).not.toBe(before[app.user]);
    await provisionAppRole({ adminUrl, ...app }); // back to the password the other tests use
  });

  it('sets a changed password where the server lets the role in with any password (trust), for an admin that may not read pg_authid', async () => {
    const creator = { user: `kw_trust_creator_${suffix}`, password: `creator-${randomBytes(8).toString('hex')}` };
    const trusted = { user: `kw_trusted_${suffix}`, password: `old-${randomBytes(8).toString('hex')}` };
    const wanted = `new-${randomBytes(8).toString('hex')}`;
    const superuser = server.urlOf('postgres');
    await execute(superuser, `CREATE ROLE ${creator.user} LOGIN CREATEROLE PASSWORD '${creator.password}'; CREATE ROLE ${trusted.user} LOGIN PASSWORD '${trusted.password}'`);
    const target = server.urlOf(await server.createEmptyDatabase());
    const logsInWith = (password: string) =>
      withClient(databaseUrlAs(target, trusted.user, password), (client) => client.query('SELECT 1')).then(() => true, () => false);
    const wrong = () => `wrong-${randomBytes(8).toString('hex')}`;
    const hbaFile = await withClient(superuser, async (client) => (await client.query<{ hba_file: string }>('SHOW hba_file')).rows[0]!.hba_file);
    const hba = await readFile(hbaFile, 'utf8');
    try {
      // This role only, ahead of the server's scram-sha-256 rules: its own server's file, put back below.
      await writeFile(hbaFile, `host all ${trusted.user} 127.0.0.1/32 trust\n${hba}`);
      await execute(superuser, 'SELECT pg_reload_conf()');
      await eventually(() => logsInWith(wrong()), 'the server lets the role in with a wrong password');

      expect(await provisionAppRole({ adminUrl: databaseUrlAs(target, creator.user, creator.password), user: trusted.user, password: wanted })).toBe('password set');
    } finally {
      await writeFile(hbaFile, hba);
      await execute(superuser, 'SELECT pg_reload_conf()');
      await eventually(async () => !(await logsInWith(wrong())), 'the server checks the role\'s password again');
    }
    // Once the server asks for it, the password set-up was given is the one that logs in.
    expect(await logsInWith(wanted)).toBe(true);
    expect(await logsInWith(trusted.password)).toBe(false);
  });

  it('hands an installation that migrated as the superuser over to the owner, idempotently, and the owner migrates it from then on', async () => {
    const legacy = await server.createEmptyDatabase();
    await execute(server.urlOf('postgres'), `ALTER DATABASE ${legacy} OWNER TO postgres`);
    await migrate({ databaseUrl: server.urlOf(legacy) });
    expect(await ownersIn(server.urlOf(legacy))).toEqual(['postgres']);
    const legacyAdmin = server.urlOf(legacy);

    const first = await provisionDatabase({ adminUrl: legacyAdmin, owner });
    const second = await provisionDatabase({ adminUrl: legacyAdmin, owner });

    expect(first.handedOver).toEqual(
      expect.arrayContaining(['table public.users', 'table public.schema_migrations', 'function public.uuid_generate_v7()', 'function public.update_updated_at_column()']),
    );
    expect(first.handedOver).not.toContain('sequence public.phrases_draw_no_seq'); // follows its table
    expect(second).toEqual({ databaseCreated: false, owner: 'unchanged', handedOver: [], extensionsCreated: [] });
    expect(await ownersIn(legacyAdmin)).toEqual([owner.user]);
    const legacyOwner = databaseUrlAs(legacyAdmin, owner.user, owner.password);
    expect(await migrate({ databaseUrl: legacyOwner })).toEqual([]);
    await withClient(legacyOwner, (client) => client.query('ALTER TABLE users ADD COLUMN handed_over boolean; ALTER TABLE users DROP COLUMN handed_over'));
  });

  it("hands over in short attempts while a long reader holds a table: queries of the tables before it keep going under the services' 2 s lock_timeout", async () => {
    const legacy = await server.createEmptyDatabase();
    await execute(server.urlOf('postgres'), `ALTER DATABASE ${legacy} OWNER TO postgres`);
    await migrate({ databaseUrl: server.urlOf(legacy) });
    const tables = await withClient(server.urlOf(legacy), async (client) =>
      (await client.query<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'users' ORDER BY 1")).rows.map((row) => row.name),
    );
    // A report's long transaction on users, which comes late in the hand-over's order.
    const reader = new pg.Client({ connectionString: server.urlOf(legacy) });
    await reader.connect();
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM users');
    const readerPid = (await reader.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const warnings: string[] = [];
    let provisioned: Promise<unknown> | undefined;
    try {
      provisioned = provisionDatabase({ adminUrl: server.urlOf(legacy), owner, warn: (line) => warnings.push(line) });
      provisioned.catch(() => undefined);
      await eventually(
        async () =>
          (await withClient(server.urlOf(legacy), (client) =>
            client.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'kennwilliamson-setup' AND wait_event_type = 'Lock' AND datname = current_database()"),
          )).rowCount === 1,
        'the hand-over waits for the reader',
      );
      // The services' queries, each willing to wait 2 s for a lock, over several attempts.
      for (let round = 0; round < 3; round++) {
        await withClient(server.urlOf(legacy), async (client) => {
          await client.query("SET lock_timeout = '2s'");
          for (const table of tables) await client.query(`SELECT count(*) FROM public.${client.escapeIdentifier(table)}`);
        });
      }
      // Each attempt that ran out says so, naming the session it waited for (from the second
      // on), as a migration's do.
      await eventually(async () => warnings.some((line) => line.includes(`blocked by pid ${readerPid}`)), 'an attempt names the reader');
      // The watching connection is set-up's, not a migration's, to an operator who looks.
      const watching = await withClient(server.urlOf(legacy), (client) =>
        client.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_activity WHERE application_name LIKE '%-monitor'"),
      );
      expect(watching.rows).toEqual([{ name: 'kennwilliamson-setup-monitor' }]);
    } finally {
      await reader.end();
    }
    await provisioned;
    expect(await ownersIn(server.urlOf(legacy))).toEqual([owner.user]);
    expect(warnings.filter((line) => line.includes(`blocked by pid ${readerPid}`)).length).toBeGreaterThan(0);
  });

  it('refuses an admin without CREATEROLE, naming the attribute and the statement that grants it', async () => {
    const plain = { user: `kw_plain_${suffix}`, password: 'plain-pw' };
    await execute(server.urlOf('postgres'), `CREATE ROLE ${plain.user} LOGIN CREATEDB PASSWORD '${plain.password}'`);

    const error = await provisionDatabase({ adminUrl: databaseUrlAs(server.urlOf(`kw_refused_${suffix}`), plain.user, plain.password), owner: { user: `kw_never_${suffix}`, password: 'x' } }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(ProvisioningError);
    expect((error as ProvisioningError).privilege).toBe('CREATEROLE');
    expect((error as Error).message).toContain(`ALTER ROLE "${plain.user}" CREATEROLE;`);
    expect((error as Error).message).toContain('on PostgreSQL 15 and older CREATEROLE is as good as superuser');
  });

  it('checks the target database first, so it works where the maintenance databases are closed; creating one without CREATEDB names CREATEDB', async () => {
    // Common hardening: no CONNECT on postgres for PUBLIC (template1 too, here, so that only
    // connecting to the target itself can succeed).
    await execute(server.urlOf('postgres'), 'REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; REVOKE CONNECT ON DATABASE template1 FROM PUBLIC');
    try {
      const result = await release();
      expect(result.code, result.stderr).toBe(0);

      // A database that does not exist: the maintenance database is needed (template1, with
      // postgres still closed), and the owner may not create databases.
      await execute(server.urlOf('postgres'), 'GRANT CONNECT ON DATABASE template1 TO PUBLIC');
      const missing = databaseUrlAs(server.urlOf(`kw_missing_${suffix}`), owner.user, owner.password);
      const refused = await runCli('db-setup', [], { MIGRATION_DATABASE_URL: missing, DATABASE_URL: '', DB_APP_USER: '' });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `[PROVISIONING_REFUSED]: database 'kw_missing_${suffix}' does not exist, and role '${owner.user}' may not create it: it lacks CREATEDB.`,
      );
      expect(refused.stderr).toContain(`ALTER ROLE "${owner.user}" CREATEDB;`);
      await expect(ensureDatabase(missing)).rejects.toMatchObject({ privilege: 'CREATEDB' });
    } finally {
      await execute(server.urlOf('postgres'), 'GRANT CONNECT ON DATABASE postgres TO PUBLIC; GRANT CONNECT ON DATABASE template1 TO PUBLIC');
    }
  });

  it('refuses an owner role that is a superuser or a member of pg_execute_server_program, naming the fix', async () => {
    const superOwner = `kw_super_owner_${suffix}`;
    const memberOwner = `kw_member_owner_${suffix}`;
    await execute(server.urlOf('postgres'), `CREATE ROLE ${superOwner} LOGIN SUPERUSER; CREATE ROLE ${memberOwner} LOGIN IN ROLE pg_execute_server_program`);
    const target = server.urlOf(await server.createEmptyDatabase());

    await expect(provisionDatabase({ adminUrl: target, owner: { user: superOwner, password: 'x' } })).rejects.toThrow(
      `ALTER ROLE "${superOwner}" NOSUPERUSER;`,
    );
    await expect(provisionDatabase({ adminUrl: target, owner: { user: memberOwner, password: 'x' } })).rejects.toThrow(
      `REVOKE "pg_execute_server_program" FROM "${memberOwner}";`,
    );
    // Refused whole: the database still belongs to the role it belonged to.
    const databaseOwner = await withClient(target, async (client) => (await client.query('SELECT pg_get_userbyid(datdba) AS o FROM pg_database WHERE datname = current_database()')).rows[0].o);
    expect(databaseOwner).toBe(server.owner.user);
  });
});

// The run's own server is PostgreSQL 17, where CREATEROLE no longer carries every role's powers.
describe('setup --admin by an admin with CREATEDB and CREATEROLE, not a superuser, on PostgreSQL 16 and later', () => {
  const suffix = randomBytes(3).toString('hex');
  const admin = { user: `kw_rdsadmin_${suffix}`, password: `admin-${randomBytes(8).toString('hex')}` };
  const owner = { user: `kw_owner16_${suffix}`, password: `owner-${randomBytes(8).toString('hex')}` };
  const database = `kw_provisioned16_${suffix}`;
  const superuserUrl = () => databaseUrlWith(inject('serverUrl'), 'postgres');

  afterAll(async () => {
    await execute(superuserUrl(), `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await execute(superuserUrl(), `DROP ROLE IF EXISTS ${owner.user}; DROP ROLE IF EXISTS ${admin.user}`);
  });

  it('creates the database and gives it to the owner role it made, which then migrates it', async () => {
    await execute(superuserUrl(), `CREATE ROLE ${admin.user} LOGIN CREATEDB CREATEROLE PASSWORD '${admin.password}'`);
    const adminUrl = databaseUrlAs(databaseUrlWith(inject('serverUrl'), database), admin.user, admin.password);

    const lines: string[] = [];
    const result = await provisionDatabase({ adminUrl, owner, log: (line) => lines.push(line) });

    expect(result).toMatchObject({ databaseCreated: true, owner: 'created' });
    expect(lines).toContain(`granted '${admin.user}' SET on '${owner.user}' (without INHERIT), which PostgreSQL 16 and later need to give it objects`);
    const ownerUrl = databaseUrlAs(adminUrl, owner.user, owner.password);
    expect((await migrate({ databaseUrl: ownerUrl })).length).toBeGreaterThan(0);
    const [facts] = await withClient(superuserUrl(), async (client) => {
      const { rows } = await client.query<{ owner: string; inherits: boolean }>(
        `SELECT pg_get_userbyid(d.datdba) AS owner, pg_has_role($2, $1, 'USAGE') AS inherits FROM pg_database d WHERE d.datname = $3`,
        [owner.user, admin.user, database],
      );
      return rows;
    });
    // The admin may act as the owner to hand objects over, and gains none of its powers by that.
    expect(facts).toEqual({ owner: owner.user, inherits: false });
  });
});

// The run's own server (its log and pg_hba.conf are this run's to read and change): PostgreSQL
// 16 and later say how a login was authenticated, so one login with the password answers.
// CI's run is on the embedded server: there it runs whatever the run's server, and fails rather than skips.
describe.runIf(inject('serverKind') === 'embedded' || inCi())('the password check of an admin that may not read pg_authid, on PostgreSQL 16 and later', () => {
  const suffix = randomBytes(3).toString('hex');
  const creator = { user: `kw_creator16_${suffix}`, password: `creator-${randomBytes(8).toString('hex')}` };
  const role = { user: `kw_checked16_${suffix}`, password: `kept-${randomBytes(8).toString('hex')}` };
  const superuserUrl = () => databaseUrlWith(inject('serverUrl'), 'postgres');
  const creatorUrl = () => databaseUrlAs(superuserUrl(), creator.user, creator.password);
  const logsInWith = (password: string) =>
    withClient(databaseUrlAs(superuserUrl(), role.user, password), (client) => client.query('SELECT 1')).then(() => true, () => false);
  const setting = (name: string) => withClient(superuserUrl(), async (client) => (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!);

  beforeAll(async () => {
    await execute(superuserUrl(), `CREATE ROLE ${creator.user} LOGIN CREATEROLE PASSWORD '${creator.password}'`);
    // Made by the admin, which so holds ADMIN on it: on 16 and later, what lets it alter the role.
    await execute(creatorUrl(), `CREATE ROLE ${role.user} LOGIN PASSWORD '${role.password}'`);
  });
  afterAll(async () => {
    await execute(superuserUrl(), `DROP ROLE IF EXISTS ${role.user}; DROP ROLE IF EXISTS ${creator.user}`);
  });

  it('keeps an unchanged password after one login as the role, with no failed login in the server log', async () => {
    expect(await provisionAppRole({ adminUrl: creatorUrl(), ...role })).toBe('unchanged');

    // A login with a wrong password, to see whether the server checks one, would be logged as a
    // failed login: the only one in the log is the test's own, after the check.
    expect(await logsInWith(`wrong-${randomBytes(4).toString('hex')}`)).toBe(false);
    const log = await readFile(path.join(await setting('data_directory'), 'server.log'), 'utf8');
    expect(log.split(`password authentication failed for user "${role.user}"`)).toHaveLength(2);
  });

  it('sets the password where the server lets the role in without checking one (trust)', async () => {
    const hbaFile = await setting('hba_file');
    const hba = await readFile(hbaFile, 'utf8');
    const wanted = `new-${randomBytes(8).toString('hex')}`;
    try {
      // This role only, ahead of the server's scram-sha-256 rules; put back below.
      await writeFile(hbaFile, `host all ${role.user} 127.0.0.1/32 trust\n${hba}`);
      await execute(superuserUrl(), 'SELECT pg_reload_conf()');
      await eventually(() => logsInWith(`wrong-${randomBytes(4).toString('hex')}`), 'the server lets the role in with a wrong password');

      expect(await provisionAppRole({ adminUrl: creatorUrl(), user: role.user, password: wanted })).toBe('password set');
    } finally {
      await writeFile(hbaFile, hba);
      await execute(superuserUrl(), 'SELECT pg_reload_conf()');
      await eventually(async () => !(await logsInWith(`wrong-${randomBytes(4).toString('hex')}`)), "the server checks the role's password again");
    }
    expect(await logsInWith(wanted)).toBe(true);
  });
});
