import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import { loadStatementBounds } from '../../src/db/db-config.js';
import { openClient, withClient } from '../../src/db/with-client.js';
import { DirectConnectionRequiredError, MigrationRecordLockedError } from '../../src/errors.js';
import { migrationLockKey } from '../../src/migrations/migration-lock.js';
import { migrate, migrationStatus } from '../../src/migrations/migrator.js';
import { restoreDatabase } from '../../src/operations/restore/restore.js';
import { ensureAppRole, provisionAppRole } from '../../src/provisioning/app-role.js';
import { provisionDatabase } from '../../src/provisioning/provision-database.js';
import { verifyBackupFile } from '../../src/operations/vetting/verify-backup-file.js';
import * as users from '../../src/queries/users.js';
import { holdAdvisoryLock } from '../support/advisory-lock-holder.js';
import { holdTableLock } from '../support/table-lock-holder.js';
import { newUser } from '../support/factories.js';
import { type PgBouncer, pgBouncerPath, startPgBouncer } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { runCli } from '../support/run-cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// Issue 21: pg_dump empties search_path with a session-level set_config; PgBouncer in
// transaction mode then handed that server connection to the services, whose queries failed
// with `relation "users" does not exist` until the connections were terminated by hand.
describe.skipIf(!toolsAvailable([pgBouncerPath], 'the refusals of a connection pooler'))(
  'backup, restore, setup and migrate through PgBouncer in transaction mode',
  () => {
    let database: TestDatabase;
    let pooler: PgBouncer;
    let pooledUrl: string;
    let backupDir: string;

    beforeAll(async () => {
      database = await createTestDatabase();
      // Two server connections: whatever the operations would leave on one, the traffic meets.
      pooler = await startPgBouncer({ serverUrl: inject('serverUrl'), poolSize: 2 });
      pooledUrl = pooler.url(database.url);
      backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-pooled-backups-'));
    });
    afterAll(async () => {
      await pooler?.stop();
      await database?.drop();
      await rm(backupDir, { recursive: true, force: true });
    });

    const env = (overrides: NodeJS.ProcessEnv) => ({ DATABASE_URL: '', MIGRATION_DATABASE_URL: '', BACKUP_DIR: backupDir, ...overrides });

    it('refuses a backup through the pooler, and service traffic running meanwhile sees no error', async () => {
      const db: Kysely<DB> = createDb({ databaseUrl: pooledUrl, minConnections: 0, maxConnections: 4 });
      try {
        const { email } = await newUser(db);
        const failures: unknown[] = [];
        let served = 0;
        let backingUp = true;
        const worker = async () => {
          while (backingUp) {
            await users.findByEmail(db, email).then(
              (user) => (user ? (served += 1) : failures.push(new Error('user not found'))),
              (error: unknown) => failures.push(error),
            );
          }
        };
        const traffic = Promise.all(Array.from({ length: 4 }, worker));
        const backup = await runCli('db-backup', [], env({ MIGRATION_DATABASE_URL: pooledUrl }));
        const servedDuring = served;
        // And afterwards: a session setting left on a pooled server connection would fail these.
        for (let i = 0; i < 50; i += 1) {
          await users.findByEmail(db, email).catch((error: unknown) => failures.push(error));
        }
        backingUp = false;
        await traffic;

        expect(backup.code, backup.stderr).toBe(1);
        expect(backup.stderr).toContain('[DIRECT_CONNECTION_REQUIRED]');
        expect(backup.stderr).toContain("Set MIGRATION_DATABASE_URL to the owner's direct connection");
        expect(await readdir(backupDir)).toEqual([]);
        expect(servedDuring).toBeGreaterThan(0);
        expect(failures).toEqual([]);
      } finally {
        await db.destroy();
      }
    });

    it('no longer falls back to a pooled DATABASE_URL, and says that MIGRATION_DATABASE_URL is missing', async () => {
      const backup = await runCli('db-backup', [], env({ DATABASE_URL: pooledUrl }));
      expect(backup.code, backup.stderr).toBe(1);
      expect(backup.stderr).toContain('MIGRATION_DATABASE_URL is not set, and DATABASE_URL, which backup falls back to, reaches a connection pooler');
      expect(await readdir(backupDir)).toEqual([]);
    });

    it('refuses a restore through the pooler before reading the backup', async () => {
      // The file is never opened: the refusal comes first.
      const restore = await runCli('db-restore', ['/nonexistent/backup.dump', '--yes'], env({ MIGRATION_DATABASE_URL: pooledUrl }));
      expect(restore.code, restore.stderr).toBe(1);
      expect(restore.stderr).toContain('[DIRECT_CONNECTION_REQUIRED]: restore refused: MIGRATION_DATABASE_URL reaches a connection pooler');
    });

    it('refuses setup through the pooler before it creates or changes anything', async () => {
      const setup = await runCli('db-setup', [], env({ MIGRATION_DATABASE_URL: pooledUrl }));
      expect(setup.code, setup.stderr).toBe(1);
      expect(setup.stderr).toContain('[DIRECT_CONNECTION_REQUIRED]: setup refused: MIGRATION_DATABASE_URL reaches a connection pooler');
      expect(setup.stdout).toBe('');
    });

    // A reset through the pooler dropped and recreated the database there, and only the
    // migrations then refused the pooler: the database was left empty. And with DB_APP_USER
    // set, the refusal came from the application role's step, named 'setup'.
    it.each([
      { run: 'as the owner', args: [], variable: 'MIGRATION_DATABASE_URL', overrides: {} },
      { run: 'as the owner, with DB_APP_USER', args: [], variable: 'MIGRATION_DATABASE_URL', overrides: { DB_APP_USER: 'kw_pooled_reset_app' } },
      {
        run: 'as the admin',
        args: ['--admin'],
        variable: 'ADMIN_DATABASE_URL',
        overrides: { DB_OWNER_USER: 'kw_pooled_reset_owner', DB_OWNER_PASSWORD: 'owner-password-1' },
      },
    ])('refuses db:reset through the pooler before it drops anything ($run)', async ({ args, variable, overrides }) => {
      const reset = await runCli('db-reset', [...args, '--yes'], env({ [variable]: pooledUrl, ...overrides }));
      expect(reset.code, reset.stderr).toBe(1);
      expect(reset.stderr).toContain(`[DIRECT_CONNECTION_REQUIRED]: reset refused: ${variable} reaches a connection pooler`);
      expect(reset.stdout).toBe('');
      const applied = await withClient(database.url, async (client) =>
        (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations')).rows[0]!.n,
      );
      expect(applied).toBeGreaterThan(0);
    });

    // The library's provisioning too, not only the command: a role's settings and a hand-over
    // done on a pooled server connection reach whoever borrows it next, and the application
    // role's bounds would go unset where the services' sessions read them.
    it("refuses the library's provisioning calls through the pooler before they change anything", async () => {
      const suffix = randomBytes(4).toString('hex');
      const [owner, app] = [`kw_pooled_owner_${suffix}`, `kw_pooled_app_${suffix}`];
      const calls = [
        () => provisionDatabase({ adminUrl: pooledUrl, owner: { user: owner, password: 'owner-password-1' } }),
        () => provisionAppRole({ adminUrl: pooledUrl, user: app, password: 'app-password-1', statementBounds: loadStatementBounds({}) }),
        () => ensureAppRole({ databaseUrl: pooledUrl, user: app }),
      ];
      for (const call of calls) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DirectConnectionRequiredError);
        expect(error).toMatchObject({ operation: 'setup' });
      }
      const roles = await withClient(database.url, async (client) =>
        (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY ($1)', [[owner, app]])).rows[0]!.n,
      );
      expect(roles).toBe(0);
    });

    it('refuses migrate through the pooler, applying nothing', async () => {
      const empty = await createTestDatabase({ empty: true });
      try {
        const migrate = await runCli('migrate', [], env({ MIGRATION_DATABASE_URL: pooler.url(empty.url) }));
        expect(migrate.code, migrate.stderr).toBe(1);
        expect(migrate.stderr).toContain('[DIRECT_CONNECTION_REQUIRED]: migrate refused: MIGRATION_DATABASE_URL reaches a connection pooler');
        const tables = await withClient(empty.url, async (client) =>
          (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")).rows[0]!.n,
        );
        expect(tables).toBe(0);
      } finally {
        await empty.drop();
      }
    });

    it('still backs up through the same server reached directly', async () => {
      const backup = await runCli('db-backup', [], env({ MIGRATION_DATABASE_URL: database.url }));
      expect(backup.code, backup.stderr).toBe(0);
      expect(await readdir(backupDir)).toHaveLength(2);
    });

    it('refuses in the library too: restoreDatabase and migrate given a pooled URL', async () => {
      const [file] = (await readdir(backupDir)).filter((name) => !name.endsWith('.sha256'));
      const backup = await verifyBackupFile(path.join(backupDir, file!), { database: database.name });
      await expect(restoreDatabase({ databaseUrl: pooledUrl, backup })).rejects.toBeInstanceOf(DirectConnectionRequiredError);
      await expect(migrate({ databaseUrl: pooledUrl })).rejects.toMatchObject({
        code: 'DIRECT_CONNECTION_REQUIRED',
        message: expect.stringContaining('migrate refused: its database URL reaches a connection pooler'),
      });
    });

    // A setting as each of the pooler's two server connections has it: both at once, each in a
    // transaction of its own.
    async function onBothServerConnections(setting: string): Promise<string[]> {
      const clients = await Promise.all([0, 1].map(() => openClient(pooledUrl)));
      try {
        await Promise.all(clients.map((client) => client.query('BEGIN')));
        return await Promise.all(clients.map(async (client) => (await client.query<{ value: string }>('SELECT current_setting($1) AS value', [setting])).rows[0]!.value));
      } finally {
        await Promise.all(clients.map((client) => client.query('ROLLBACK').finally(() => client.end())));
      }
    }

    // `migrate status` only reads, and works through a pooler: its lock_timeout (the run's,
    // 5 min by default) was a session SET, which the pooler then handed to the services with the
    // server connection, until the pooler closed it (an hour by default). Their 2 s bound on a
    // locked row became the statement's.
    it('reads migrate status through the pooler, leaving no setting on the server connections it used', async () => {
      const states = await migrationStatus({ databaseUrl: pooledUrl, lockTimeoutMs: 123_000 });
      expect(states.length).toBeGreaterThan(0);
      expect(states.every((state) => state.state === 'applied')).toBe(true);
      expect(await onBothServerConnections('lock_timeout')).toEqual(['0', '0']);
    });

    // Waiting for a record a restore holds, it names the holder, and leaves nothing behind: a
    // look from a session of its own with a session SET, and the waiting backend's pid (the
    // pooler's own, through it), named nobody and left search_path on a server connection.
    it('says who holds the record while migrate status waits through the pooler, leaving no setting behind', async () => {
      const holder = await holdTableLock(database.url, 'schema_migrations');
      const warnings: string[] = [];
      let error: unknown;
      try {
        error = await migrationStatus({ databaseUrl: pooledUrl, lockTimeoutMs: 1_500, warn: (line) => warnings.push(line) }).catch((e: unknown) => e);
      } finally {
        await holder.release();
      }

      expect(error).toBeInstanceOf(MigrationRecordLockedError);
      expect(error).toMatchObject({ blockers: [expect.objectContaining({ pid: holder.pid })] });
      expect(warnings).toEqual([expect.stringContaining(`waits for the migrations record's table, blocked by pid ${holder.pid} (`)]);
      expect(await onBothServerConnections('search_path')).toEqual(['"$user", public', '"$user", public']);
    });

    it('refuses migrate through the pooler at once, even while another run holds the migration lock', async () => {
      // Were the check made once the lock is held, this migrate would say it waits, then fail
      // with MigrationLockTimeoutError after 15 s.
      const holder = await holdAdvisoryLock(database.url, migrationLockKey, 'release-step-on-host-a');
      try {
        const lines: string[] = [];
        const run = migrate({ databaseUrl: pooledUrl, lockTimeoutMs: 15_000, log: (line) => lines.push(line) });
        await expect(run).rejects.toBeInstanceOf(DirectConnectionRequiredError);
        expect(lines).toEqual([]);
      } finally {
        await holder.release();
      }
    });
  },
);
