import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/free-port.js';
import { withClient } from '../../src/db/with-client.js';
import { runCli } from '../support/run-cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// Issue 21 §4: each message names what to fix. The commands run as the operator runs them,
// in their own process; what they print on stderr is what is checked.
describe('the messages of the operations commands', () => {
  const migrate = (url: string, extra: NodeJS.ProcessEnv = {}) =>
    runCli('migrate', [], { DATABASE_URL: '', MIGRATION_DATABASE_URL: url, ...extra });

  it('names the host and port tried when the connection is refused (ECONNREFUSED)', async () => {
    const port = await freePort();
    const result = await migrate(`postgresql://owner:secret@127.0.0.1:${port}/kennwilliamson`);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`The database connection to 127.0.0.1:${port} failed (ECONNREFUSED)`);
    expect(result.stderr).not.toContain('secret');
  });

  it('names the variable whose port is bad, instead of "Invalid URL"', async () => {
    const result = await migrate('postgresql://owner:secret@127.0.0.1:99999/kennwilliamson');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[CONFIG_INVALID]: the port of MIGRATION_DATABASE_URL must be one number from 1 to 65535');
    expect(result.stderr).not.toContain('Invalid URL');
    expect(result.stderr).not.toContain('secret');
  });

  it('reports a bad MIGRATION_DATABASE_URL under that name, not as DATABASE_URL', async () => {
    const result = await migrate('postgresql://owner:secret@127.0.0.1:5432/', {
      DATABASE_URL: 'postgresql://app:secret@127.0.0.1:6432/kennwilliamson',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[CONFIG_INVALID]: MIGRATION_DATABASE_URL names no database');
    expect(result.stderr).not.toMatch(/(?<!MIGRATION_)DATABASE_URL/);
  });

  it('says to percent-encode a # in the password, instead of ENOTFOUND', async () => {
    // Unencoded, the '#' starts a fragment: the host becomes 'owner' and the port '12'.
    const result = await migrate('postgresql://owner:12#secret@127.0.0.1:5432/kennwilliamson');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("MIGRATION_DATABASE_URL holds a '#'");
    expect(result.stderr).toContain("percent-encode it in the password or user name ('#' as %23");
    expect(result.stderr).not.toContain('ENOTFOUND');
    expect(result.stderr).not.toContain('secret');
  });

  // The admin step reads its own URL: each fault is reported under ADMIN_DATABASE_URL, before
  // any connection, and never as `Invalid URL`, ENOTFOUND or DATABASE_URL.
  describe.each([
    ['setup --admin', 'setup', ['--admin']],
    ['db:reset --admin', 'db-reset', ['--admin']],
  ] as const)('%s with a bad ADMIN_DATABASE_URL', (_, command, args) => {
    const admin = (url: string) =>
      runCli(command, [...args], {
        DATABASE_URL: '',
        MIGRATION_DATABASE_URL: '',
        ADMIN_DATABASE_URL: url,
        DB_OWNER_USER: 'kw_owner',
        DB_OWNER_PASSWORD: 'owner-secret',
      });

    it.each([
      ['a bad port', 'postgresql://admin:secret@127.0.0.1:99999/kennwilliamson', 'the port of ADMIN_DATABASE_URL must be one number from 1 to 65535'],
      ['a # in the password', 'postgresql://admin:12#secret@127.0.0.1:5432/kennwilliamson', "ADMIN_DATABASE_URL holds a '#'"],
      ['no database', 'postgresql://admin:secret@127.0.0.1:5432/', 'ADMIN_DATABASE_URL names no database'],
      // An admin's URL ends in /postgres by habit: the owner role would own it, with the schema in it.
      ['the maintenance database', 'postgresql://admin:secret@127.0.0.1:5432/postgres', "ADMIN_DATABASE_URL names 'postgres', the server's own maintenance database"],
      ['a template', 'postgresql://admin:secret@127.0.0.1:5432/template1', "ADMIN_DATABASE_URL names 'template1', the server's own template"],
    ])('names ADMIN_DATABASE_URL for %s', async (_fault, url, message) => {
      const result = await admin(url);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`[CONFIG_INVALID]: ${message}`);
      expect(result.stderr).not.toMatch(/Invalid URL|ENOTFOUND|ECONNREFUSED|(?<!(MIGRATION|ADMIN)_)DATABASE_URL/);
      expect(result.stderr).not.toContain('secret');
    });
  });

  describe('setup --postgres-database, for a hosted server whose only database is postgres', () => {
    // A URL for the release step too: without one, `npm run db:setup` is the local server's admin step.
    const setup = async (args: string[], database: string) => {
      const url = `postgresql://admin:secret@127.0.0.1:${await freePort()}/${database}`;
      return runCli('setup', args, { DATABASE_URL: '', MIGRATION_DATABASE_URL: url, ADMIN_DATABASE_URL: url, DB_OWNER_USER: 'kw_owner', DB_OWNER_PASSWORD: 'owner-secret' });
    };

    it('lets setup --admin go on to connect to a database named postgres', async () => {
      // Past the refusal, to the connection: nothing listens on the port.
      const result = await setup(['--admin', '--postgres-database'], 'postgres');
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('[CONNECTION_FAILED]');
      expect(result.stderr).not.toContain('maintenance database');
    });

    it('leaves a template refused', async () => {
      const result = await setup(['--admin', '--postgres-database'], 'template1');
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("[CONFIG_INVALID]: ADMIN_DATABASE_URL names 'template1'");
    });

    it('goes with --admin only', async () => {
      const result = await setup(['--postgres-database'], 'postgres');
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('[CONFIG_INVALID]: setup --postgres-database goes with --admin only');
    });
  });

  describe('a restore onto a server that lacks the role the backup grants to', () => {
    let database: TestDatabase;
    let backupDir: string;
    const role = `kw_gone_${randomBytes(4).toString('hex')}`;

    beforeAll(async () => {
      database = await createTestDatabase();
      backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-missing-role-'));
      await withClient(database.url, (client) => client.query(`CREATE ROLE ${role}; GRANT SELECT ON users TO ${role}`));
    });
    afterAll(async () => {
      await database?.drop();
      await withClient(database.url.replace(/\/[^/?]*(\?|$)/, '/postgres$1'), (client) => client.query(`DROP ROLE IF EXISTS ${role}`));
      await rm(backupDir, { recursive: true, force: true });
    });

    it('says to run the provisioning step first', async () => {
      const env = { DATABASE_URL: '', MIGRATION_DATABASE_URL: database.ownerUrl, BACKUP_DIR: backupDir };
      const backup = await runCli('db-backup', [], env);
      expect(backup.code, backup.stderr).toBe(0);
      // As on a new server: the role the backup grants to was never created.
      await withClient(database.url, (client) => client.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`));

      // Refused before anything runs: the role is neither the owner nor a known application role.
      const restore = await runCli('db-restore', [backup.stdout.trim(), '--yes'], env);
      expect(restore.code).toBe(1);
      expect(restore.stderr).toContain(`GRANT of SELECT on table to '${role}', which is neither the database's owner`);
      expect(restore.stderr).toContain(`set DB_APP_USER=${role} and restore again (on a new server, run the provisioning step first`);
      expect(restore.stderr).toContain('the database was not touched');
      // Named as the application role, it is found missing, before anything runs.
      const named = await runCli('db-restore', [backup.stdout.trim(), '--yes'], { ...env, DB_APP_USER: role });
      expect(named.code).toBe(1);
      expect(named.stderr).toContain(`the application role '${role}' (DB_APP_USER) does not exist on this server`);
      expect(named.stderr).toContain('run the provisioning step (setup --admin, with DB_APP_USER and DB_APP_PASSWORD) on this server first, then restore again');
      expect(named.stderr).toContain('The database was not touched.');
    }, 120_000);
  });

  // A backup is untrusted input, and its names reach the terminal: a table or a role named with
  // escape sequences erased the lines above and printed a forged "restored" line in green.
  describe("a backup's names with control characters", () => {
    let database: TestDatabase;
    let backupDir: string;
    const suffix = randomBytes(4).toString('hex');
    const forged = '\x1b[1A\x1b[2K\r\x1b[32mrestored OK\x1b]0;pwned\x07\u202e';
    // A line break too, in the progress: the terminal keeps those, and a new line may say anything.
    const table = `t_${suffix}${forged}\nforged`;
    const role = `kw_r_${suffix}${forged}`;
    const escaped = '\\x1b[1A\\x1b[2K\\x0d\\x1b[32mrestored OK\\x1b]0;pwned\\x07\\u202e';

    beforeAll(async () => {
      database = await createTestDatabase();
      backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-control-names-'));
    });
    afterAll(async () => {
      await database?.drop();
      await withClient(database.url.replace(/\/[^/?]*(\?|$)/, '/postgres$1'), (client) => client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`));
      await rm(backupDir, { recursive: true, force: true });
    });

    it('are printed with those characters escaped, in the progress and in a refusal', async () => {
      const env = { DATABASE_URL: '', MIGRATION_DATABASE_URL: database.ownerUrl, BACKUP_DIR: backupDir };
      await withClient(database.ownerUrl, (client) => client.query(`CREATE TABLE ${client.escapeIdentifier(table)} (id int); INSERT INTO ${client.escapeIdentifier(table)} VALUES (1)`));
      const backup = await runCli('db-backup', [], env);
      expect(backup.code, backup.stderr).toBe(0);

      const restored = await runCli('db-restore', [backup.stdout.trim(), '--yes'], env);
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.stderr).toContain(`restoring table public.t_${suffix}${escaped}\\nforged (`);
      expect(restored.stderr).not.toMatch(/^forged/m);
      expect(restored.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/);

      await withClient(database.url, (client) => client.query(`CREATE ROLE ${client.escapeIdentifier(role)}; GRANT SELECT ON users TO ${client.escapeIdentifier(role)}`));
      const granting = await runCli('db-backup', [], env);
      expect(granting.code, granting.stderr).toBe(0);
      const refused = await runCli('db-restore', [granting.stdout.trim(), '--yes'], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`GRANT of SELECT on table to 'kw_r_${suffix}${escaped}'`);
      expect(refused.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/);
    }, 120_000);
  });

  describe('application_name', () => {
    let database: TestDatabase;
    let backupDir: string;

    // The release step's grants to the application role too, on a connection of their own.
    const appUser = `kw_named_app_${randomBytes(4).toString('hex')}`;

    beforeAll(async () => {
      database = await createTestDatabase();
      backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-application-name-'));
      await withClient(database.url, (client) => client.query(`CREATE ROLE ${appUser} LOGIN`));
    });
    afterAll(async () => {
      await database?.drop();
      await withClient(database.url.replace(/\/[^/?]*(\?|$)/, '/postgres$1'), (client) => client.query(`DROP ROLE IF EXISTS ${appUser}`));
      await rm(backupDir, { recursive: true, force: true });
    });

    it('is set on every connection the commands open to the database', async () => {
      const env = { DATABASE_URL: '', MIGRATION_DATABASE_URL: database.ownerUrl, BACKUP_DIR: backupDir, DB_APP_USER: appUser };
      // The backup to restore is made before the recording starts, so it holds none of it.
      const first = await runCli('db-backup', [], env);
      expect(first.code, first.stderr).toBe(0);
      // A login event trigger (PostgreSQL 17) records every connection to this database,
      // pg_dump's included, in a schema the restore leaves alone.
      await withClient(database.url, async (client) => {
        const { rows } = await client.query<{ major: number }>("SELECT current_setting('server_version_num')::int / 10000 AS major");
        expect(rows[0]!.major, 'login event triggers need PostgreSQL 17 or later').toBeGreaterThanOrEqual(17);
        await client.query(`
          CREATE SCHEMA observed;
          CREATE TABLE observed.logins (application_name text NOT NULL);
          CREATE FUNCTION observed.record_login() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO observed.logins VALUES (current_setting('application_name')); END $$;
          CREATE EVENT TRIGGER record_login ON login EXECUTE FUNCTION observed.record_login();
          -- The commands log in as the owner role: the trigger records its logins, its backup reads them.
          GRANT USAGE ON SCHEMA observed TO PUBLIC; GRANT SELECT, INSERT ON observed.logins TO PUBLIC;`);
      });

      for (const [command, args] of [
        ['migrate', []],
        ['migrate', ['status']],
        ['db-setup', []],
        ['db-backup', []],
        ['db-restore', [first.stdout.trim(), '--yes']],
      ] as const) {
        const result = await runCli(command, [...args], env);
        if (command === 'db-backup') {
          // The recording itself (a schema besides public, an event trigger) is what a restore
          // refuses (issue 17): this backup connects, dumps, and is refused before it is published.
          expect(result.code, result.stderr).toBe(1);
          expect(result.stderr).toContain('the new backup holds what a restore refuses');
        } else expect(result.code, `${command}: ${result.stderr}`).toBe(0);
      }

      const names = await withClient(
        database.url,
        async (client) => {
          await client.query('DROP EVENT TRIGGER record_login');
          const { rows } = await client.query<{ application_name: string }>(
            "SELECT application_name FROM observed.logins WHERE application_name <> 'the-test-itself'",
          );
          return rows.map((row) => row.application_name);
        },
        'the-test-itself',
      );
      expect(names.filter((name) => !name.startsWith('kennwilliamson-'))).toEqual([]);
      expect(new Set(names)).toEqual(
        new Set(['kennwilliamson-migrate', 'kennwilliamson-migrate-lock', 'kennwilliamson-setup', 'kennwilliamson-backup', 'kennwilliamson-restore']),
      );
    }, 120_000);
  });
});
