import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withClient } from '../../../src/db/with-client.js';
import { RestoreError } from '../../../src/errors.js';
import { migrate } from '../../../src/migrations/migrator.js';
import { backupDatabase, type BackupResult } from '../../../src/operations/backup/backup.js';
import { restoreDatabase } from '../../../src/operations/restore/restore.js';
import { verifyBackupFile } from '../../../src/operations/vetting/verify-backup-file.js';
import { ensureAppRole, provisionAppRole } from '../../../src/provisioning/app-role.js';
import { provisionDatabase } from '../../../src/provisioning/provision-database.js';
import { startPgUuidv7Server, type PgUuidv7Server } from '../../support/pg-uuidv7-server.js';
import { execute, fillEveryTable, migrationsRecord, tableContents } from '../../support/table-contents.js';

// The compose image's set-up: pg_uuidv7 in public, created by setup --admin as the superuser
// (only a superuser may), the schema migrated and restored as the non-superuser owner. The
// server is PostgreSQL 18 with a stand-in pg_uuidv7 (see startPgUuidv7Server); its databases
// made `withoutPgUuidv7` stand for a server without it, such as the embedded default.
// A few backups and restores, each small: give them room on a busy machine.
describe('restoring as the owner where a superuser created pg_uuidv7 in public', { timeout: 120_000 }, () => {
  let server: PgUuidv7Server;
  let workDir: string;
  // Set up as on the compose server: pg_uuidv7 is the superuser's.
  let source: string;
  let backup: BackupResult;
  let sourceContents: Awaited<ReturnType<typeof tableContents>>;
  // Set up where the server lacks pg_uuidv7: the first migration defined uuid_generate_v7() itself.
  let plain: string;
  let plainBackup: BackupResult;
  let plainContents: Awaited<ReturnType<typeof tableContents>>;
  const app = { user: 'kw_app', password: 'app-password-for-tests' };

  // setup --admin as the superuser, then the release step as the owner, as the CLI runs them.
  async function setUp(database: string): Promise<string[]> {
    const lines: string[] = [];
    await provisionDatabase({ adminUrl: server.urlOf(database), owner: server.owner, log: (line) => lines.push(line) });
    await provisionAppRole({ adminUrl: server.urlOf(database), ...app });
    await migrate({ databaseUrl: server.ownerUrlOf(database) });
    await ensureAppRole({ databaseUrl: server.ownerUrlOf(database), user: app.user });
    return lines;
  }

  // As the default set-up runs a restore: the superuser's URL, the SQL run as the owner, DB_APP_USER set.
  async function restore(database: string, from: BackupResult, log: string[] = []): Promise<void> {
    await restoreDatabase({
      databaseUrl: server.urlOf(database),
      backup: await verifyBackupFile(from.file),
      owner: { password: server.owner.password },
      // As the release step's environment has it: a database that setup --admin just made
      // has no default privileges yet that would name the application role.
      appRole: app.user,
      log: (line) => log.push(line),
    });
  }

  const failureOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'restored',
      (error: Error) => (error instanceof RestoreError ? error.message : `not a RestoreError: ${error.stack}`),
    );

  // The extension as it stands: the same row (oid) means it was kept, not made again.
  async function pgUuidv7(database: string) {
    return withClient(server.urlOf(database), async (client) => {
      const { rows } = await client.query<{ oid: string; owner: string; superuser: boolean; defaults_calling_it: number }>(
        `SELECT e.oid::text, r.rolname AS owner, r.rolsuper AS superuser,
                (SELECT count(*)::int FROM pg_depend d
                  WHERE d.classid = 'pg_attrdef'::regclass AND d.refobjid = 'public.uuid_generate_v7()'::regprocedure) AS defaults_calling_it
           FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner WHERE e.extname = 'pg_uuidv7'`,
      );
      return rows[0];
    });
  }

  beforeAll(async () => {
    server = await startPgUuidv7Server();
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-restore-extension-'));
    [source, plain] = await Promise.all([server.createDatabase(), server.createDatabase({ withoutPgUuidv7: true })]);
    // One at a time: both create the application role.
    expect(await setUp(source)).toContain('created the extension pg_uuidv7 (only a superuser may)');
    await setUp(plain);
    await Promise.all([fillEveryTable(server.ownerUrlOf(source), { users: 40 }), fillEveryTable(server.ownerUrlOf(plain), { users: 30, tag: 'plain' })]);
    [sourceContents, plainContents] = await Promise.all([tableContents(server.urlOf(source)), tableContents(server.urlOf(plain))]);
    [backup, plainBackup] = await Promise.all([
      backupDatabase({ databaseUrl: server.ownerUrlOf(source), backupDir: path.join(workDir, 'compose'), environment: 'test', keep: 1 }),
      backupDatabase({ databaseUrl: server.ownerUrlOf(plain), backupDir: path.join(workDir, 'embedded'), environment: 'test', keep: 1 }),
    ]);
  });
  afterAll(async () => {
    await server?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('replaces everything in public but pg_uuidv7, which stays the superuser\'s: identical tables, later objects gone', async () => {
    const target = await server.createDatabase({ template: source });
    const before = await pgUuidv7(target);
    await fillEveryTable(server.ownerUrlOf(target), { users: 10, tag: 'other' });
    await execute(
      server.ownerUrlOf(target),
      'CREATE TABLE later_feature (id uuid PRIMARY KEY DEFAULT uuid_generate_v7()); CREATE FUNCTION later_function() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
    );
    // Made by hand as the superuser: the schema's owner may drop it all the same.
    await execute(server.urlOf(target), 'CREATE TABLE public.made_by_hand (id int)');
    const log: string[] = [];

    await restore(target, backup, log);

    expect(await tableContents(server.urlOf(target))).toEqual(sourceContents);
    expect(await migrationsRecord(server.urlOf(target))).toEqual(await migrationsRecord(server.urlOf(source)));
    await expect(execute(server.urlOf(target), 'SELECT * FROM later_feature')).rejects.toThrow('relation "later_feature" does not exist');
    await expect(execute(server.urlOf(target), 'SELECT later_function()')).rejects.toThrow('function later_function() does not exist');
    await expect(execute(server.urlOf(target), 'SELECT * FROM made_by_hand')).rejects.toThrow('relation "made_by_hand" does not exist');
    // The same extension, the superuser's still, and the restored tables' defaults call it as the backup's did.
    expect(await pgUuidv7(target)).toEqual({ ...before, owner: 'postgres', superuser: true, defaults_calling_it: (await pgUuidv7(source))!.defaults_calling_it });
    expect(log).toContain("keeping the extension pg_uuidv7 in public as it is: 'postgres' created it, and only a superuser may create it again");
  });

  it("gives the schema's grants and the owner's default privileges back as the backup has them", async () => {
    const privileges = (database: string) =>
      withClient(server.urlOf(database), async (client) => {
        const { rows } = await client.query(
          `SELECT (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public') AS schema,
                  (SELECT json_agg(json_build_array(pg_get_userbyid(defaclrole), defaclobjtype, defaclacl::text) ORDER BY defaclobjtype)
                     FROM pg_default_acl WHERE defaclnamespace = 'public'::regnamespace) AS defaults,
                  (SELECT json_object_agg(relname, relacl::text ORDER BY relname)
                     FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')) AS tables`,
        );
        return rows[0];
      });
    const target = await server.createDatabase({ template: source });
    await execute(
      server.ownerUrlOf(target),
      `GRANT CREATE ON SCHEMA public TO ${app.user}; ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT TRUNCATE ON TABLES TO ${app.user};
       ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON TYPES TO ${app.user}`,
    );

    await restore(target, backup);

    expect(await privileges(target)).toEqual(await privileges(source));
  });

  it("fails, rolled back, where the owner does not own public, saying that setup --admin makes it the schema's owner", async () => {
    const target = await server.createDatabase({ template: source });
    await execute(server.urlOf(target), 'ALTER SCHEMA public OWNER TO postgres');

    const failure = await failureOf(restore(target, backup));

    expect(failure).toContain('restore failed and was rolled back; the database was not changed');
    expect(failure).toContain('must be owner of schema public (SQLSTATE 42501) while emptying the public schema');
    expect(failure).toContain('run setup --admin on this server');
    expect(await tableContents(server.urlOf(target))).toEqual(sourceContents);
  });

  it('fails in a database of that server where setup --admin never created pg_uuidv7, saying to run it; after setup --admin it restores', async () => {
    const target = await server.createDatabase();
    const tablesIn = (database: string) =>
      withClient(server.urlOf(database), async (client) =>
        Number((await client.query("SELECT count(*) AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace")).rows[0].n),
      );

    const failure = await failureOf(restore(target, backup));

    expect(failure).toContain('restore failed and was rolled back; the database was not changed');
    expect(failure).toContain('permission denied to create extension "pg_uuidv7" (SQLSTATE 42501)');
    expect(failure).toContain('run setup --admin on this server first');
    expect(await tablesIn(target)).toBe(0);

    expect((await provisionDatabase({ adminUrl: server.urlOf(target), owner: server.owner })).extensionsCreated).toEqual(['pg_uuidv7']);
    await restore(target, backup);
    expect(await tableContents(server.urlOf(target))).toEqual(sourceContents);
  });

  it('restored where the server lacks pg_uuidv7 (the embedded default), it fails and is rolled back, saying where it restores', async () => {
    const target = await server.createDatabase({ template: plain, withoutPgUuidv7: true });

    const failure = await failureOf(restore(target, backup));

    expect(failure).toContain('restore failed and was rolled back; the database was not changed');
    expect(failure).toContain('extension "pg_uuidv7" is not available (SQLSTATE 0A000)');
    expect(failure).toContain('restore it on a server with pg_uuidv7 installed');
    expect(await tableContents(server.urlOf(target))).toEqual(plainContents);
  });

  it("a backup made without pg_uuidv7 fails on a database that keeps it, naming it; once a superuser drops it, the restore and setup --admin go through", async () => {
    const target = await server.createDatabase({ template: source });

    const failure = await failureOf(restore(target, plainBackup));

    expect(failure).toContain('function "uuid_generate_v7" already exists with same argument types (SQLSTATE 42723)');
    expect(failure).toContain('in this database that function belongs to the extension pg_uuidv7');
    expect(failure).toContain('DROP EXTENSION pg_uuidv7 CASCADE');
    expect(await tableContents(server.urlOf(target))).toEqual(sourceContents);

    await execute(server.urlOf(target), 'DROP EXTENSION pg_uuidv7 CASCADE');
    await restore(target, plainBackup);
    expect(await tableContents(server.urlOf(target))).toEqual(plainContents);
    const lines: string[] = [];
    expect((await provisionDatabase({ adminUrl: server.urlOf(target), owner: server.owner, log: (line) => lines.push(line) })).extensionsCreated).toEqual([]);
    expect(lines.join('\n')).toContain('left out the extension pg_uuidv7: this database already defines a function of it');
    expect(await pgUuidv7(target)).toBeUndefined();
  });
});
