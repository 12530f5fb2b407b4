import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { appRoleLockKey, ensureAppRole, provisionAppRole, writeAppRoleBounds } from '../../src/provisioning/app-role.js';
import { createDb } from '../../src/db/create-db.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { withClient } from '../../src/db/with-client.js';
import { loadStatementBounds } from '../../src/db/db-config.js';
import { setRoleStatementBounds } from '../../src/provisioning/role-bounds.js';
import { withMaintenanceClient } from '../../src/provisioning/database-admin.js';
import { AppRoleError, ConfigError } from '../../src/errors.js';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { migrate, migrateDown } from '../../src/migrations/migrator.js';
import { holdAdvisoryLock } from '../support/advisory-lock-holder.js';
import { eventually } from '../support/eventually.js';
import { packetFilterAvailable, silenceConnections, unacknowledgedBytes } from '../support/packet-filter.js';
import { runCli } from '../support/run-cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * The URL a service would use: the owner's URL with the application role's name and password.
 * The lead's "run every query module as the application role" test builds its `createDb()` on this.
 */
export function appRoleUrl(ownerUrl: string, user: string, password: string): string {
  const url = new URL(ownerUrl);
  url.username = user;
  url.password = password;
  return url.toString();
}

const asRole = withClient;

async function sqlstateOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    // A connection refused at login comes mapped (DatabaseError.sqlState); a query's error raw.
    (error: { code?: string; sqlState?: string }) => error.sqlState ?? error.code,
  );
}

const packetFilter = packetFilterAvailable("the application role's silent-partition test");

// As provisionDatabase does: a URL that names no database set the role's bounds in the one the
// login landed in (the admin's own), and one left unset read PGHOST and the like instead.
describe('the application role from code, given a URL that names no database or none at all', () => {
  const bounds = loadStatementBounds({});
  it.each([
    ['no database', 'postgresql://admin:secret@127.0.0.1:5432', 'names no database'],
    ['an empty URL', '', 'is not set'],
    ['undefined, from plain JavaScript', undefined, 'is not set'],
  ])('%s: refused as ConfigError before connecting, naming the variable', async (_case, url, says) => {
    const calls = [
      ['ADMIN_DATABASE_URL', () => provisionAppRole({ adminUrl: url as string, user: 'kw_never_made', password: 'pw-123456789', statementBounds: bounds })],
      ['ADMIN_DATABASE_URL', () => writeAppRoleBounds({ adminUrl: url as string, user: 'kw_never_made', statementBounds: bounds })],
      ['databaseUrl', () => ensureAppRole({ databaseUrl: url as string, user: 'kw_never_made' })],
    ] as const;
    for (const [variable, call] of calls) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ variable, message: expect.stringContaining(`${variable} ${says}`) });
    }
  });
});

describe('the application role made by npm run db:setup', () => {
  // Roles are cluster-wide and test files run in parallel: a name of this file's own.
  const user = `kw_app_${randomBytes(4).toString('hex')}`;
  const password = `app-${randomBytes(8).toString('hex')}`;
  const extraRoles: string[] = [];
  let database: TestDatabase;
  let migrationsDir: string;
  let appUrl: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'kw-app-role-migrations-'));
    appUrl = appRoleUrl(database.url, user, password);
  });
  afterAll(async () => {
    await database?.drop();
    await withMaintenanceClient(database.url, async (client) => {
      for (const role of [user, ...extraRoles]) await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`);
    });
    await rm(migrationsDir, { recursive: true, force: true });
  });

  // Drops the packets of one session's connection, once nothing is left unacknowledged either
  // way (TCP would retransmit that rather than probe), and waits until the server has ended
  // the session: only the server's keepalive can, within the 30 s given.
  async function serverEndsWhenSilent(
    session: { pid: number; client: number; server: number },
    what: string,
    onTestFinished: (heal: () => void) => void,
  ): Promise<void> {
    await eventually(
      () => unacknowledgedBytes(session.server, session.client) === 0 && unacknowledgedBytes(session.client, session.server) === 0,
      'both sides have their data acknowledged',
    );
    const partition = silenceConnections(session.server, [session.client]);
    // A test that times out never reaches the `finally` below.
    onTestFinished(() => partition.heal());
    try {
      await asRole(database.url, (observer) =>
        eventually(async () => (await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [session.pid])).rowCount === 0, what, {
          timeoutMs: 30_000,
          intervalMs: 250,
        }),
      );
    } finally {
      partition.heal();
    }
  }

  // The admin step, as an admin (here the superuser), with the owner the test database has.
  const adminSetup = (env: NodeJS.ProcessEnv) =>
    runCli('db-setup', ['--admin'], {
      ADMIN_DATABASE_URL: database.url,
      DATABASE_URL: '',
      MIGRATION_DATABASE_URL: '',
      DB_OWNER_USER: inject('ownerUser'),
      DB_OWNER_PASSWORD: inject('ownerPassword'),
      ...env,
    });

  it('is created from DB_APP_USER and DB_APP_PASSWORD by setup --admin, and never prints the password', async () => {
    const result = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`created the application role '${user}'`);
    expect(result.stdout + result.stderr).not.toContain(password);
    const [attributes] = await asRole(database.url, async (client) =>
      (await client.query('SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword IS NOT NULL AS has_password FROM pg_authid WHERE rolname = $1', [user])).rows,
    );
    expect(attributes).toEqual({ rolcanlogin: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false, has_password: true });
  });

  it('starts its sessions in this database with the bounds of DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT and DB_IDLE_IN_TRANSACTION_TIMEOUT, and TCP keepalive, set by setup --admin', async () => {
    // What holds behind a transaction-mode pooler, which refuses the pool's own startup parameters.
    const bounds = { DB_STATEMENT_TIMEOUT: '7s', DB_LOCK_TIMEOUT: '1500', DB_IDLE_IN_TRANSACTION_TIMEOUT: '1min' };
    const result = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password, ...bounds });
    expect(result.code, result.stderr).toBe(0);
    const settings = await asRole(appUrl, async (client) =>
      (
        await client.query(
          `SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock,
                  current_setting('idle_in_transaction_session_timeout') AS idle,
                  current_setting('tcp_keepalives_idle') AS keepalive, current_setting('client_connection_check_interval') AS check`,
        )
      ).rows[0],
    );
    // With the server's side of the bounds for a silent host (the keepalive test below).
    expect(settings).toEqual({ statement: '7s', lock: '1500ms', idle: '1min', keepalive: '5', check: '1s' });

    const refused = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password, DB_LOCK_TIMEOUT: 'later' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('DB_LOCK_TIMEOUT');
  });

  // A password's rotation is the same step with a new DB_APP_PASSWORD: where the operator's
  // environment no longer holds the bounds, the role's longer ones go back to the defaults.
  it("says which of the role's bounds setup --admin changes, as a run with a new password alone puts them back to the defaults", async () => {
    expect((await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password })).code).toBe(0);
    // Longer bounds, as an operator may have set them by hand: in this database, for the role
    // everywhere, and for every role of the database.
    await withClient(database.url, (client) =>
      client.query(
        `ALTER ROLE ${user} IN DATABASE ${database.name} SET statement_timeout = '1min';
         ALTER ROLE ${user} IN DATABASE ${database.name} RESET lock_timeout; ALTER ROLE ${user} SET lock_timeout = '30s';
         ALTER ROLE ${user} IN DATABASE ${database.name} RESET idle_in_transaction_session_timeout;
         ALTER DATABASE ${database.name} SET idle_in_transaction_session_timeout = 0`,
      ),
    );
    try {
      const rotated = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: `${password}-next` });
      expect(rotated.code, rotated.stderr).toBe(0);
      const said = rotated.stdout.split('\n').filter((line) => line.startsWith("the application role's") && line.includes(' was '));
      const rest = (variable: string) => `(${variable}, or its default where it is not set)`;
      expect(said).toEqual([
        `the application role's statement_timeout in '${database.name}' was 1min and is now 5000 ms ${rest('DB_STATEMENT_TIMEOUT')}`,
        `the application role's lock_timeout in '${database.name}' was 30s (the role's own, for every database) and is now 2000 ms ${rest('DB_LOCK_TIMEOUT')}`,
        `the application role's idle_in_transaction_session_timeout in '${database.name}' was 0 (no limit) (the database's, for every role) and is now 10000 ms ${rest('DB_IDLE_IN_TRANSACTION_TIMEOUT')}`,
      ]);
      const again = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: `${password}-next` });
      expect(again.stdout).not.toContain(' was ');
    } finally {
      await withClient(database.url, (client) => client.query(`ALTER ROLE ${user} RESET lock_timeout; ALTER DATABASE ${database.name} RESET idle_in_transaction_session_timeout`));
      await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password });
    }
  });

  // The two tests wait for the server's keepalive (about 10 s) side by side. Each heals its own
  // partition (a timed-out test too: onTestFinished), never the other's.
  describe.skipIf(!packetFilter).concurrent("whose host goes silent, the server ends the session within seconds", () => {
    // A service host (or a pooler) cut off by a partition that drops packets without a word: its
    // idle sessions would keep their connection slots for the server's two hours of keepalive.
    it("an idle session of the role, freeing its connection slot (the role's keepalive defaults)", { timeout: 60_000 }, async ({ expect, onTestFinished }) => {
      // The defaults setup --admin writes for the role (the test above runs the command itself).
      await withClient(database.url, (client) => setRoleStatementBounds(client, user, database.name, loadStatementBounds({})));
      // No keepalive of its own, as a pooler's server connection may have none: only the
      // server's can end the session.
      const service = new pg.Client({ connectionString: appUrl, application_name: 'kw-silent-service', keepAlive: false });
      service.on('error', () => undefined);
      await service.connect();
      try {
        const { rows } = await service.query<{ pid: number; client: number; server: number; idle: string; count: string }>(
          `SELECT pg_backend_pid() AS pid, inet_client_port() AS client, inet_server_port() AS server,
                  current_setting('tcp_keepalives_idle') AS idle, current_setting('tcp_keepalives_count') AS count`,
        );
        const session = rows[0]!;
        expect({ idle: session.idle, count: session.count }).toEqual({ idle: '5', count: '5' });
        await serverEndsWhenSilent(session, "the server ends the silent service's session", onTestFinished);
      } finally {
        // Its socket still looks open here; the server's kernel answers a Terminate with a reset.
        (service as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      }
    });

    // setup --admin's transaction waits for the lock a concurrent set-up holds (up to a minute);
    // if its host goes silent meanwhile, the server must not keep the session (and what it took)
    // for its two hours of keepalive: the transaction carries the bounds for a silent host.
    it("setup --admin's transaction, waiting for a concurrent set-up's lock", { timeout: 60_000 }, async ({ expect, onTestFinished }) => {
      const holder = await holdAdvisoryLock(database.url, appRoleLockKey);
      try {
        const setup = provisionAppRole({ adminUrl: database.url, user, password });
        setup.catch(() => undefined);
        const waiting = await asRole(database.url, async (observer) => {
          const look = async () =>
            (
              await observer.query<{ pid: number; client: number; server: number }>(
                `SELECT pid, client_port AS client, inet_server_port() AS server FROM pg_stat_activity
                  WHERE application_name = 'kennwilliamson-setup' AND wait_event = 'advisory' AND datname = current_database()`,
              )
            ).rows[0];
          await eventually(async () => (await look()) !== undefined, 'setup --admin waits for the application role lock');
          return (await look())!;
        });
        await serverEndsWhenSilent(waiting, "the server ends the silent set-up's session", onTestFinished);
        // Its own side learns it from the server's reset once the packets pass again.
        await expect(setup).rejects.toBeInstanceOf(AppRoleError);
      } finally {
        await holder.release();
      }
    });
  });

  it('reads, inserts, updates and deletes rows of every table', async () => {
    await asRole(appUrl, async (client) => {
      const one = async (sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows[0] as Record<string, string>;
      const u = await one("INSERT INTO users (email, password_hash, display_name, slug) VALUES ('app@example.org', 'h', 'App', 'app-role') RETURNING id");
      const admin = await one("INSERT INTO users (email, password_hash, display_name, slug) VALUES ('adm@example.org', 'h', 'Adm', 'adm-role') RETURNING id");
      await client.query("UPDATE users SET display_name = 'App Ü' WHERE id = $1", [u.id]);
      const r = await one("INSERT INTO roles (name, description) VALUES ('tester', 'tests') RETURNING id");
      await client.query("UPDATE roles SET description = 'tests things' WHERE id = $1", [r.id]);
      await client.query('INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)', [u.id, r.id]);
      await client.query('UPDATE user_roles SET granted_by = $1 WHERE user_id = $2', [admin.id, u.id]);
      const t = await one("INSERT INTO incident_timers (user_id, notes) VALUES ($1, 'n') RETURNING id", [u.id]);
      await client.query("UPDATE incident_timers SET notes = 'm' WHERE id = $1", [t.id]);
      const token = await one(
        `INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at, device_info)
         VALUES ($1, sha256('t'), gen_random_uuid(), now() + interval '1 day', now() + interval '2 days', '{"ua":"x"}') RETURNING id`,
        [u.id],
      );
      await client.query("UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'logout' WHERE id = $1", [token.id]);
      // draw_no is an identity column: the insert uses its sequence.
      const p = await one("INSERT INTO phrases (phrase_text, created_by) VALUES ('Keep going', $1) RETURNING id, draw_no", [u.id]);
      expect(Number(p.draw_no)).toBeGreaterThan(10);
      await client.query('UPDATE phrases SET active = false WHERE id = $1', [p.id]);
      await client.query('INSERT INTO user_excluded_phrases (user_id, phrase_id) VALUES ($1, $2)', [u.id, p.id]);
      await client.query('UPDATE user_excluded_phrases SET created_at = now() WHERE user_id = $1', [u.id]);
      const s = await one("INSERT INTO phrase_suggestions (user_id, phrase_text) VALUES ($1, 'Try again') RETURNING id", [u.id]);
      await client.query("UPDATE phrase_suggestions SET status = 'approved', reviewed_by = $1, reviewed_at = now() WHERE id = $2", [admin.id, s.id]);

      const { rows } = await client.query(
        `SELECT (SELECT count(*) FROM users WHERE id = $1)::int AS users, (SELECT count(*) FROM roles)::int AS roles,
                (SELECT count(*) FROM user_roles WHERE user_id = $1)::int AS user_roles,
                (SELECT count(*) FROM incident_timers WHERE user_id = $1)::int AS timers,
                (SELECT count(*) FROM refresh_tokens WHERE user_id = $1)::int AS tokens,
                (SELECT count(*) FROM phrases WHERE created_by = $1)::int AS phrases,
                (SELECT count(*) FROM user_excluded_phrases WHERE user_id = $1)::int AS exclusions,
                (SELECT count(*) FROM phrase_suggestions WHERE user_id = $1)::int AS suggestions`,
        [u.id],
      );
      expect(rows[0]).toEqual({ users: 1, roles: 3, user_roles: 1, timers: 1, tokens: 1, phrases: 1, exclusions: 1, suggestions: 1 });

      for (const table of ['phrase_suggestions', 'user_excluded_phrases', 'refresh_tokens', 'incident_timers', 'user_roles']) {
        await client.query(`DELETE FROM ${table} WHERE user_id = $1`, [u.id]);
      }
      await client.query('DELETE FROM phrases WHERE id = $1', [p.id]);
      await client.query('DELETE FROM roles WHERE id = $1', [r.id]);
      await client.query('DELETE FROM users WHERE id IN ($1, $2)', [u.id, admin.id]);
      expect((await client.query('SELECT count(*)::int AS n FROM users WHERE id = $1', [u.id])).rows[0]).toEqual({ n: 0 });
    });
  });

  it('may read the migrations record but not change it', async () => {
    await asRole(appUrl, async (client) => {
      expect((await client.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0]).toEqual({ n: 5 });
      expect(await sqlstateOf(client.query('DELETE FROM schema_migrations'))).toBe('42501');
    });
  });

  it('is refused DROP TABLE, TRUNCATE, CREATE TABLE and ALTER TABLE (SQLSTATE 42501)', async () => {
    await asRole(appUrl, async (client) => {
      expect(await sqlstateOf(client.query('DROP TABLE phrases'))).toBe('42501');
      expect(await sqlstateOf(client.query('TRUNCATE users CASCADE'))).toBe('42501');
      expect(await sqlstateOf(client.query('CREATE TABLE intruder (id int)'))).toBe('42501');
      expect(await sqlstateOf(client.query('ALTER TABLE users ADD COLUMN intruder int'))).toBe('42501');
      expect(await sqlstateOf(client.query('CREATE SEQUENCE public.intruder_seq'))).toBe('42501');
    });
    const owned = await asRole(database.url, async (client) =>
      (await client.query('SELECT count(*)::int AS n FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)', [user])).rows[0],
    );
    expect(owned).toEqual({ n: 0 });
  });

  it('may not create schemas or temporary tables in the database, even after an explicit grant (42501)', async () => {
    // TEMPORARY comes from PUBLIC by default; an explicit grant to the role is undone by the next db:setup.
    await asRole(database.url, (client) => client.query(`GRANT CREATE, TEMPORARY ON DATABASE ${database.name} TO ${user}`));
    await ensureAppRole({ databaseUrl: database.url, user });

    await asRole(appUrl, async (client) => {
      expect(await sqlstateOf(client.query('CREATE TEMP TABLE scratch (id int)'))).toBe('42501');
      expect(await sqlstateOf(client.query('CREATE SCHEMA intruder'))).toBe('42501');
    });
    const privileges = await asRole(database.url, async (client) =>
      (
        await client.query(
          `SELECT has_database_privilege($1, current_database(), 'CONNECT') AS connect,
                  has_database_privilege($1, current_database(), 'CREATE') AS create,
                  has_database_privilege($1, current_database(), 'TEMPORARY') AS temporary`,
          [user],
        )
      ).rows[0],
    );
    expect(privileges).toEqual({ connect: true, create: false, temporary: false });
  });

  it('refuses a role that is a member of predefined roles with server-wide powers, naming the membership', async () => {
    const direct = `kw_powers_${randomBytes(4).toString('hex')}`;
    const group = `kw_group_${randomBytes(4).toString('hex')}`;
    const indirect = `kw_indirect_${randomBytes(4).toString('hex')}`;
    extraRoles.push(direct, indirect, group);
    await asRole(database.url, async (client) => {
      await client.query(`CREATE ROLE ${direct} LOGIN; GRANT pg_execute_server_program, pg_signal_backend TO ${direct}`);
      await client.query(`CREATE ROLE ${group}; GRANT pg_read_all_data TO ${group}; CREATE ROLE ${indirect} LOGIN IN ROLE ${group}`);
    });

    // The release step, as the owner (the commands refuse to migrate as a superuser).
    const result = await runCli('db-setup', [], { DATABASE_URL: database.ownerUrl, DB_APP_USER: direct });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `[APP_ROLE_INVALID]: role '${direct}' is a member of pg_execute_server_program, which runs programs on the server; ` +
        `it is a member of pg_signal_backend, which cancels and terminates other sessions, the services' among them: those give powers beyond rows`,
    );
    expect(result.stderr).toContain(`REVOKE "pg_execute_server_program" FROM "${direct}"; REVOKE "pg_signal_backend" FROM "${direct}"`);
    // Through another role as well: membership is transitive.
    await expect(ensureAppRole({ databaseUrl: database.url, user: indirect })).rejects.toThrow(
      `role '${indirect}' is a member of pg_read_all_data (through ${group}), which reads every table of every database: that gives powers beyond rows`,
    );
    // Nothing was granted to either: the refusal rolled everything back.
    const granted = await asRole(database.url, async (client) =>
      (await client.query("SELECT count(*)::int AS n FROM information_schema.role_table_grants WHERE grantee IN ($1, $2)", [direct, indirect])).rows[0],
    );
    expect(granted).toEqual({ n: 0 });
  });

  it('refuses a role with CREATEDB or REPLICATION, its own or through a group, with the one check the restore uses', async () => {
    const suffix = randomBytes(4).toString('hex');
    const [replicator, group, member] = [`kw_replicator_${suffix}`, `kw_dbgroup_${suffix}`, `kw_dbmember_${suffix}`];
    extraRoles.push(replicator, member, group);
    await asRole(database.url, (client) =>
      client.query(`CREATE ROLE ${replicator} LOGIN REPLICATION; CREATE ROLE ${group} CREATEDB; CREATE ROLE ${member} LOGIN IN ROLE ${group}`),
    );

    await expect(ensureAppRole({ databaseUrl: database.url, user: replicator })).rejects.toThrow(
      `role '${replicator}' has REPLICATION: that gives powers beyond rows (predefined roles reach the whole server; the others carry role attributes); ` +
        `take it away (ALTER ROLE "${replicator}" NOREPLICATION) or choose another DB_APP_USER`,
    );
    await expect(ensureAppRole({ databaseUrl: database.url, user: member })).rejects.toThrow(
      `role '${member}' is a member of ${group}, which has CREATEDB: that gives powers beyond rows`,
    );
  });

  // A release.env copied from another service beside this one names its role: granting it too
  // would let a second role read and write every row, the password hashes included.
  it("refuses a second application role where the owner's default privileges give one every new table already, granting it nothing", async ({ onTestFinished }) => {
    const target = await createTestDatabase();
    onTestFinished(() => target.drop());
    const first = `kw_first_${randomBytes(4).toString('hex')}`;
    const second = `kw_second_${randomBytes(4).toString('hex')}`;
    extraRoles.push(first, second);
    await asRole(target.url, (client) => client.query(`CREATE ROLE ${first} LOGIN; CREATE ROLE ${second} LOGIN`));
    await ensureAppRole({ databaseUrl: target.ownerUrl, user: first });

    const error = await ensureAppRole({ databaseUrl: target.ownerUrl, user: second }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(AppRoleError);
    expect((error as Error).message).toContain(`the owner's default privileges in public already give '${first}' the rows of every new table`);
    expect((error as Error).message).toContain(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM "${first}"`);
    const reads = await asRole(target.url, async (client) =>
      (await client.query<{ reads: boolean }>("SELECT has_table_privilege($1, 'public.users', 'SELECT') AS reads", [second])).rows,
    );
    expect(reads).toEqual([{ reads: false }]);
    // The one it has stays the one it gets, as often as the release step runs.
    await expect(ensureAppRole({ databaseUrl: target.ownerUrl, user: first })).resolves.toBeUndefined();
  });

  // The admin step makes the role before the release step grants it: refused there, it stayed
  // behind, with its password and bounds, although nothing was granted.
  it('refuses in setup --admin a DB_APP_USER beside the application role the database has, before it makes the role', async () => {
    const newcomer = `kw_newcomer_${randomBytes(4).toString('hex')}`;
    extraRoles.push(newcomer);
    expect((await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: password })).code).toBe(0);

    const result = await adminSetup({ DB_APP_USER: newcomer, DB_APP_PASSWORD: 'newcomer-password' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`the owner's default privileges in public already give '${user}' the rows of every new table`);
    const made = await asRole(database.url, async (client) => (await client.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [newcomer])).rows);
    expect(made).toEqual([{ n: 0 }]);
  });

  it('refuses a role that is a member of a role owning objects in the schema', async () => {
    const owner = `kw_table_owner_${randomBytes(4).toString('hex')}`;
    const member = `kw_member_${randomBytes(4).toString('hex')}`;
    extraRoles.push(member, owner);
    await asRole(database.url, async (client) => {
      await client.query(`CREATE ROLE ${owner}; CREATE ROLE ${member} LOGIN IN ROLE ${owner}`);
      await client.query(`CREATE TABLE owned_by_group (id int); ALTER TABLE owned_by_group OWNER TO ${owner}`);
    });
    try {
      await expect(ensureAppRole({ databaseUrl: database.url, user: member })).rejects.toThrow(
        new AppRoleError(
          member,
          `role '${member}' owns (or is a member of the owner of) relation owned_by_group; it could drop or alter them, so it cannot be the application role`,
        ),
      );
    } finally {
      await asRole(database.url, (client) => client.query('DROP TABLE owned_by_group'));
    }
  });

  it('reads and writes a table that a later migration adds, through default privileges', async () => {
    await cp(defaultMigrationsDir(), migrationsDir, { recursive: true });
    await writeFile(
      path.join(migrationsDir, '20990101000000_add_later_notes.up.sql'),
      'CREATE TABLE later_notes (id serial PRIMARY KEY, body text NOT NULL);\n',
    );
    await writeFile(path.join(migrationsDir, '20990101000000_add_later_notes.down.sql'), 'DROP TABLE later_notes;\n');
    await migrate({ databaseUrl: database.url, migrationsDir });

    await asRole(appUrl, async (client) => {
      const { rows } = await client.query("INSERT INTO later_notes (body) VALUES ('later') RETURNING id");
      await client.query("UPDATE later_notes SET body = 'later, updated' WHERE id = $1", [rows[0].id]);
      expect((await client.query('SELECT body FROM later_notes')).rows).toEqual([{ body: 'later, updated' }]);
      await client.query('DELETE FROM later_notes');
      expect(await sqlstateOf(client.query('DROP TABLE later_notes'))).toBe('42501');
    });
    // Back to the shipped migrations, which the other tests' db:setup runs expect.
    await migrateDown({ databaseUrl: database.url, migrationsDir });
  });

  it('is updated, not duplicated, when setup --admin runs again with a new password, and the new password works', async () => {
    // Non-ASCII on purpose: the verifier computed here must apply SASLprep as clients do (ﬁ → fi).
    const newPassword = `Ünïcødé ﬁ-${randomBytes(8).toString('hex')}`;
    const result = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: newPassword });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`set the password of the application role '${user}'`);
    await asRole(appRoleUrl(database.url, user, newPassword), (client) => client.query('SELECT 1 FROM users LIMIT 1'));
    expect(await sqlstateOf(asRole(appUrl, (client) => client.query('SELECT 1')))).toBe('28P01');
  });

  it('gives a role that lost LOGIN its LOGIN back when run again with the same password, keeping its verifier', async ({ onTestFinished }) => {
    // A database of its own: this one has its application role already, beside which another is refused.
    const own = await createTestDatabase();
    onTestFinished(() => own.drop());
    const other = `kw_app_nologin_${randomBytes(4).toString('hex')}`;
    extraRoles.push(other);
    const otherPassword = `app-${randomBytes(8).toString('hex')}`;
    const state = async () =>
      (
        await asRole(database.url, (client) =>
          client.query('SELECT rolcanlogin AS login, rolpassword AS verifier FROM pg_authid WHERE rolname = $1', [other]),
        )
      ).rows[0] as { login: boolean; verifier: string };
    expect(await provisionAppRole({ adminUrl: own.url, user: other, password: otherPassword })).toBe('created');
    const { verifier } = await state();
    await asRole(database.url, (client) => client.query(`ALTER ROLE ${other} NOLOGIN`));

    expect(await provisionAppRole({ adminUrl: own.url, user: other, password: otherPassword })).toBe('unchanged');

    expect(await state()).toEqual({ login: true, verifier });
  });

  it('is not created by the release step, which says to run setup --admin', async () => {
    const missing = `kw_missing_${randomBytes(4).toString('hex')}`;
    const result = await runCli('db-setup', [], { DATABASE_URL: database.ownerUrl, DB_APP_USER: missing, DB_APP_PASSWORD: 'ignored' });

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('DB_APP_PASSWORD is not used by the release step');
    expect(result.stderr).toContain(`[APP_ROLE_INVALID]: role '${missing}' does not exist; the release step creates no role and sets no password`);
    expect(result.stderr).toContain('setup --admin');
  });

  it('refuses DB_APP_USER without DB_APP_PASSWORD in the admin step, naming the missing variable', async () => {
    const result = await adminSetup({ DB_APP_USER: user, DB_APP_PASSWORD: '' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[CONFIG_INVALID]: DB_APP_USER is set but DB_APP_PASSWORD is not');
    // Someone who wanted only the grants back is told where they come from.
    expect(result.stderr).toContain('the release step, without --admin, gives an existing role its grants with DB_APP_USER alone');
  });

  it('gives up on a concurrent set-up that holds its lock too long, instead of waiting without end', async () => {
    const holder = await holdAdvisoryLock(database.url, appRoleLockKey);
    try {
      const error = await ensureAppRole({ databaseUrl: database.url, user, lockTimeoutMs: 200 }).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(AppRoleError);
      expect((error as Error).message).toContain('lock timeout');
      expect(((error as Error).cause as { code?: string }).code).toBe('55P03');
    } finally {
      await holder.release();
    }
  });

  it('refuses a role that owns a table or is a superuser, since no grant could restrict it', async () => {
    const owner = `kw_owner_${randomBytes(4).toString('hex')}`;
    const superuser = `kw_super_${randomBytes(4).toString('hex')}`;
    extraRoles.push(owner, superuser);
    await asRole(database.url, async (client) => {
      await client.query(`CREATE ROLE ${owner}; CREATE ROLE ${superuser} SUPERUSER`);
      await client.query(`CREATE TABLE owned_by_app (id int); ALTER TABLE owned_by_app OWNER TO ${owner}`);
    });

    await expect(ensureAppRole({ databaseUrl: database.url, user: owner })).rejects.toThrow(
      new AppRoleError(owner, `role '${owner}' owns (or is a member of the owner of) relation owned_by_app; it could drop or alter them, so it cannot be the application role`),
    );
    await expect(ensureAppRole({ databaseUrl: database.url, user: superuser })).rejects.toBeInstanceOf(AppRoleError);
    await asRole(database.url, (client) => client.query('DROP TABLE owned_by_app'));
  });

  it('runs every function of every query module, needing nothing beyond these privileges', async () => {
    // Back to this file's password (the test before set a new one).
    await provisionAppRole({ adminUrl: database.url, user, password });
    await ensureAppRole({ databaseUrl: database.url, user });
    const db = createDb({ databaseUrl: appUrl, minConnections: 0 });
    try {
      // users
      const member = await users.create(db, { email: 'member@example.org', passwordHash: 'h', displayName: 'Member', slug: 'member' });
      const admin = await users.create(db, { email: 'boss@example.org', passwordHash: 'h', displayName: 'Boss', slug: 'boss' });
      await users.grantRole(db, admin.id, 'admin');
      await users.grantRole(db, member.id, 'admin', { grantedBy: admin.id });
      expect(await users.revokeRole(db, member.id, 'admin')).toBe(true);
      expect(await users.getRoles(db, admin.id)).toEqual(['admin', 'user']);
      expect(await users.findById(db, member.id)).toMatchObject({ slug: 'member' });
      expect(await users.findByEmail(db, 'MEMBER@example.org')).toMatchObject({ id: member.id });
      expect(await users.findBySlug(db, 'boss')).toMatchObject({ id: admin.id });
      await users.updateProfile(db, member.id, { displayName: 'Member Ü' });
      await users.updatePassword(db, member.id, 'h2');
      expect(await users.isSlugAvailable(db, 'member', { excludeUserId: member.id })).toBe(true);

      // refreshTokens
      const login = await refreshTokens.issue(db, { userId: member.id, deviceInfo: { userAgent: 'app-role test' } });
      const rotated = await refreshTokens.rotate(db, login.token);
      expect(await refreshTokens.listSessions(db, member.id)).toHaveLength(1);
      expect(await refreshTokens.revoke(db, rotated.token)).toBe(true);
      await refreshTokens.issue(db, { userId: member.id });
      expect(await refreshTokens.revokeAllForUser(db, member.id)).toBe(1);
      await refreshTokens.issue(db, { userId: member.id });
      expect(await users.updatePassword(db, member.id, 'h3')).toBe(1);
      // Revoked by logout (2) and by the password change (1); the rotated first token stays while
      // its family could still be replayed.
      expect(await refreshTokens.purgeExpired(db, { revokedRetentionSeconds: 0 })).toBe(3);

      // incidentTimers
      const timer = await incidentTimers.create(db, { userId: member.id, notes: 'first' });
      await incidentTimers.update(db, { id: timer.id, userId: member.id }, { notes: 'second' });
      expect(await incidentTimers.listForUser(db, member.id)).toMatchObject({ total: 1 });
      expect(await incidentTimers.latestPublicBySlug(db, 'member')).toMatchObject({ displayName: 'Member Ü' });
      await incidentTimers.remove(db, { id: timer.id, userId: member.id });

      // phrases
      const phrase = await phrases.create(db, { text: 'Made by the app role', createdBy: admin.id });
      await phrases.update(db, { phraseId: phrase.id, adminId: admin.id }, { text: 'Edited by the app role' });
      await phrases.exclude(db, member.id, phrase.id);
      expect(await phrases.listExcluded(db, member.id)).toMatchObject({ total: 1 });
      await phrases.include(db, member.id, phrase.id);
      expect(await phrases.randomForUser(db, member.id)).not.toBeNull();
      expect(await phrases.randomForSlug(db, 'member')).not.toBeNull();
      expect((await phrases.listForUser(db, member.id, { search: 'app role' })).total).toBe(1);
      expect((await phrases.list(db, admin.id)).total).toBeGreaterThan(10);
      expect((await phrases.count(db)).active).toBeGreaterThan(10);

      // phraseSuggestions
      const first = await phraseSuggestions.submit(db, member.id, 'A suggestion to approve');
      const second = await phraseSuggestions.submit(db, member.id, 'A suggestion to reject');
      expect(await phraseSuggestions.countPending(db)).toBe(2);
      expect((await phraseSuggestions.listPending(db, admin.id)).total).toBe(2);
      await phraseSuggestions.approve(db, { suggestionId: first.id, adminId: admin.id, reason: 'Lovely' });
      await phraseSuggestions.reject(db, { suggestionId: second.id, adminId: admin.id });
      expect((await phraseSuggestions.listForUser(db, member.id)).total).toBe(2);

      await users.setActive(db, member.id, false);
    } finally {
      await db.destroy();
    }
  });
});
