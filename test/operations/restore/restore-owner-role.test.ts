import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withClient } from '../../../src/db/with-client.js';
import { RestoreError } from '../../../src/errors.js';
import { backupDatabase, type BackupResult } from '../../../src/operations/backup/backup.js';
import { restoreDatabase } from '../../../src/operations/restore/restore.js';
import { verifyBackupFile } from '../../../src/operations/vetting/verify-backup-file.js';
import { databaseUrlAs } from '../../../src/provisioning/database-admin.js';
import { powersBeyondDatabase } from '../../../src/provisioning/role-powers.js';
import { debianPostgresPrograms, startDebianPostgres, type DebianPostgres } from '../../support/debian-postgres.js';
import { debianPostgresBinDir } from '../../support/postgres-majors.js';
import { toolsAvailable } from '../../support/required-tools.js';
import { migrationsDefining } from '../../support/migration-sandbox.js';
import { runCli } from '../../support/run-cli.js';
import { execute, tableContents } from '../../support/table-contents.js';

const available = toolsAvailable(debianPostgresPrograms, 'the restore-as-owner tests (a PostgreSQL 15 that pg_dump 15 can dump into a custom archive)');

// Issue 17, row 5: a genuine `pg_dump -Fc` archive of a database whose CHECK constraint calls a
// plpgsql function that tries, while the rows load, to create a superuser role, write a file
// on the server and run a program there. pg_dump's own output, so no allow-list refuses it:
// only the restoring role's privileges stand between it and the server.
describe.skipIf(!available)('a restore never runs with powers beyond the database', { timeout: 120_000 }, () => {
  let server: DebianPostgres;
  let outside: string;
  let attack: BackupResult;
  let otherData: string;
  const evilRole = `kw_evil_${randomBytes(4).toString('hex')}`;
  let ran: string;
  let written: string;
  let migrationsDir: string;

  beforeAll(async () => {
    server = await startDebianPostgres();
    // Where the server's OS account could write, were it allowed to: the attack's targets.
    outside = await mkdtemp(path.join(os.tmpdir(), 'kw-attack-'));
    await chmod(outside, 0o777);
    ran = path.join(outside, 'program-ran');
    written = path.join(outside, 'file-written');

    const source = await server.createEmptyDatabase();
    // Harmless while the rows go in, armed afterwards: the archive holds the armed function,
    // the table with its CHECK, and the rows, which the CHECK sees again when they load. The
    // program reads what COPY pipes to it: one that does not (touch) may exit before the row is
    // written, and COPY then fails on the broken pipe, which failed the superuser control now and then.
    const armed = `
       BEGIN
         BEGIN EXECUTE 'CREATE ROLE ${evilRole} LOGIN SUPERUSER'; EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN NULL; END;
         BEGIN EXECUTE 'RESET ROLE'; EXECUTE format('COPY (SELECT 1) TO %L', '${written}'); EXCEPTION WHEN insufficient_privilege THEN NULL; END;
         EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'cat > ${ran}');
         RETURN x > 0;
       END `;
    await execute(
      server.ownerUrlOf(source),
      `CREATE FUNCTION public.plausible(x int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RETURN x > 0; END $$;
       CREATE TABLE public.readings (x int CHECK (public.plausible(x)));
       INSERT INTO public.readings SELECT generate_series(1, 3);
       CREATE OR REPLACE FUNCTION public.plausible(x int) RETURNS boolean LANGUAGE plpgsql AS $fn$${armed}$fn$;`,
    );
    // The armed function as a migration of the service's would define it, so that it runs while
    // the rows load (a function no migration defines is refused before it is made, below).
    migrationsDir = await migrationsDefining(`CREATE FUNCTION plausible(x int) RETURNS boolean LANGUAGE plpgsql AS $fn$${armed}$fn$;\n`, outside);
    attack = await backupDatabase({ databaseUrl: server.ownerUrlOf(source), backupDir: path.join(outside, 'backups'), environment: 'test', keep: 1 });
    otherData = await server.createMigratedDatabase();
    await execute(server.ownerUrlOf(otherData), "INSERT INTO roles (name, description) VALUES ('kept', 'data the restore must not lose')");
  });
  afterAll(async () => {
    await server?.stop();
    await rm(outside, { recursive: true, force: true });
  });

  /** Nothing reached the server: no program ran, no file was written, no role was created. */
  async function expectNoEffectOutside(): Promise<void> {
    expect(existsSync(ran)).toBe(false);
    expect(existsSync(written)).toBe(false);
    const roles = await withClient(server.urlOf('postgres'), async (client) => (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [evilRole])).rowCount);
    expect(roles).toBe(0);
  }

  it('is a real custom-format archive of pg_dump, whose SQL passes the check before any restore', async () => {
    expect(path.basename(attack.file)).toMatch(/\.dump$/);
    const verified = await verifyBackupFile(attack.file);
    expect(verified.format).toBe('custom');
  });

  it('refuses a superuser URL without the owner\'s password, naming the owner role and why, before running anything', async () => {
    const target = await server.cloneDatabase(otherData);
    const before = await tableContents(server.urlOf(target));

    const result = await runCli('db-restore', [attack.file, '--yes'], { DATABASE_URL: server.urlOf(target), DB_OWNER_PASSWORD: '' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to restore as 'postgres': it is a superuser.");
    expect(result.stderr).toContain("could run programs, read and write files or create roles on the database server");
    expect(result.stderr).toContain(`Restore as the database's owner '${server.owner.user}', which has no such powers: set MIGRATION_DATABASE_URL to its URL, or DB_OWNER_PASSWORD`);
    expect(result.stderr).toContain('The database was not touched.');
    expect(result.stderr + result.stdout).not.toContain(server.password);
    expect(await tableContents(server.urlOf(target))).toEqual(before);
    await expectNoEffectOutside();
  });

  it('given the superuser URL and the owner\'s password, runs the archive as the owner: nothing escapes, and the database is unchanged', async () => {
    const target = await server.cloneDatabase(otherData);
    const before = await tableContents(server.urlOf(target));

    const result = await runCli('db-restore', [attack.file, '--yes', '--migrations-dir', migrationsDir], {
      DATABASE_URL: server.urlOf(target),
      DB_OWNER_PASSWORD: server.owner.password,
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`restoring as the database's owner '${server.owner.user}', not as 'postgres'`);
    expect(result.stderr).toMatch(/must be superuser or (a member|have privileges) of the pg_execute_server_program role to COPY to or from an external program/);
    expect(result.stderr).toContain('(SQLSTATE 42501)');
    expect(result.stderr).toContain('restore failed and was rolled back; the database was not changed');
    expect(result.stderr + result.stdout).not.toContain(server.owner.password);
    expect(await tableContents(server.urlOf(target))).toEqual(before);
    await expectNoEffectOutside();
  });

  it('through the owner\'s own URL, the same: the attempt fails as the owner and is rolled back', async () => {
    const target = server.ownerUrlOf(await server.cloneDatabase(otherData));
    const before = await tableContents(target);

    const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(attack.file), migrationsDir }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('restore failed and was rolled back; the database was not changed');
    expect(await tableContents(target)).toEqual(before);
    await expectNoEffectOutside();
  });

  // Where no migration defines the function as the archive holds it, its body never runs: it
  // is refused before it is made, and the CHECK that would call it is never reached.
  it("refuses the archive's function before it is made, where no migration defines it so", async () => {
    const target = server.ownerUrlOf(await server.cloneDatabase(otherData));
    const before = await tableContents(target);

    const error = await restoreDatabase({ databaseUrl: target, backup: await verifyBackupFile(attack.file) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toMatch(
      /^restore failed and was rolled back; the database was not changed:\nfunction public\.plausible, which no migration defines so \(the same name, body and language\): .* at line \d+ of the backup's SQL$/,
    );
    expect(await tableContents(target)).toEqual(before);
    await expectNoEffectOutside();
  });

  it('refuses a URL whose role is a member of pg_execute_server_program, even when that role owns the database', async () => {
    const member = `kw_member_${randomBytes(4).toString('hex')}`;
    const target = await server.cloneDatabase(otherData);
    await execute(server.urlOf('postgres'), `CREATE ROLE ${member} LOGIN PASSWORD 'member-pw'; GRANT pg_execute_server_program TO ${member}; ALTER DATABASE ${target} OWNER TO ${member}`);
    const before = await tableContents(server.urlOf(target));

    const error = await restoreDatabase({
      databaseUrl: databaseUrlAs(server.urlOf(target), member, 'member-pw'),
      backup: await verifyBackupFile(attack.file),
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`refusing to restore as '${member}': it is a member of pg_execute_server_program, which runs programs on the server.`);
    expect((error as Error).message).toContain(`The database's owner '${member}' is a member of pg_execute_server_program`);
    expect((error as Error).message).toContain('setup --admin');
    expect(await tableContents(server.urlOf(target))).toEqual(before);
    await expectNoEffectOutside();
  });

  it('names every power that reaches beyond the database: superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, any predefined role, through groups too', async () => {
    const suffix = randomBytes(3).toString('hex');
    const [plain, files, creator, databases, replication, bypass, signal, group, viaGroup, reading, viaReading] = [
      'plain', 'files', 'creator', 'databases', 'replication', 'bypass', 'signal', 'group', 'via_group', 'reading', 'via_reading',
    ].map((name) => `kw_${name}_${suffix}`);
    await execute(
      server.urlOf('postgres'),
      `CREATE ROLE ${plain} LOGIN; CREATE ROLE ${files} LOGIN IN ROLE pg_read_server_files, pg_write_server_files;
       CREATE ROLE ${creator} LOGIN CREATEROLE; CREATE ROLE ${databases} LOGIN CREATEDB; CREATE ROLE ${replication} LOGIN REPLICATION;
       CREATE ROLE ${bypass} LOGIN BYPASSRLS; CREATE ROLE ${signal} LOGIN IN ROLE pg_signal_backend;
       CREATE ROLE ${group} NOLOGIN CREATEROLE; CREATE ROLE ${viaGroup} LOGIN IN ROLE ${group};
       CREATE ROLE ${reading} NOLOGIN IN ROLE pg_read_all_data; CREATE ROLE ${viaReading} LOGIN NOINHERIT IN ROLE ${reading}`,
    );
    const powers = await withClient(server.urlOf('postgres'), async (client) => {
      const of = (role: string) => powersBeyondDatabase(client, role);
      return {
        postgres: await of('postgres'),
        owner: await of(server.owner.user),
        plain: await of(plain!),
        files: await of(files!),
        creator: await of(creator!),
        databases: await of(databases!),
        replication: await of(replication!),
        bypass: await of(bypass!),
        signal: await of(signal!),
        viaGroup: await of(viaGroup!),
        viaReading: await of(viaReading!),
      };
    });
    // However long the chain: 40 roles, each a member of the next, the last of
    // pg_execute_server_program.
    const chain = Array.from({ length: 40 }, (_, index) => `kw_chain_${index}_${suffix}`);
    await execute(
      server.urlOf('postgres'),
      [...chain].reverse().map((role, index) => `CREATE ROLE ${role} ${index === 0 ? 'NOLOGIN IN ROLE pg_execute_server_program' : `NOLOGIN IN ROLE ${chain[chain.length - index]}`}`).join(';'),
    );
    const chained = await withClient(server.urlOf('postgres'), (client) => powersBeyondDatabase(client, chain[0]!));
    expect(chained).toEqual([expect.stringMatching(new RegExp(`^is a member of pg_execute_server_program \\(through ${chain[1]}\\)`))]);

    expect(powers).toEqual({
      postgres: ['is a superuser'],
      owner: [],
      plain: [],
      files: ['is a member of pg_read_server_files, which reads or writes files on the server', 'is a member of pg_write_server_files, which reads or writes files on the server'],
      creator: ['has CREATEROLE'],
      databases: ['has CREATEDB'],
      replication: ['has REPLICATION'],
      bypass: ['has BYPASSRLS'],
      signal: ["is a member of pg_signal_backend, which cancels and terminates other sessions, the services' among them"],
      viaGroup: [`is a member of ${group}, which has CREATEROLE`],
      // NOINHERIT: SET ROLE still reaches it, and a backup's function could run SET ROLE.
      viaReading: [`is a member of pg_read_all_data (through ${reading}), which reads every table of every database`],
    });
  });

  it('refuses to restore as an owner with CREATEDB, saying how to take it away', async () => {
    const owner = `kw_createdb_${randomBytes(4).toString('hex')}`;
    const target = await server.cloneDatabase(otherData);
    await execute(server.urlOf('postgres'), `CREATE ROLE ${owner} LOGIN CREATEDB PASSWORD 'createdb-pw'; ALTER DATABASE ${target} OWNER TO ${owner}`);

    const error = await restoreDatabase({ databaseUrl: databaseUrlAs(server.urlOf(target), owner, 'createdb-pw'), backup: await verifyBackupFile(attack.file) }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`refusing to restore as '${owner}': it has CREATEDB.`);
    expect((error as Error).message).toContain(`ALTER ROLE "${owner}" NOCREATEDB;`);
    expect((error as Error).message).toContain('The database was not touched.');
  });

  // S1 for custom archives: pg_restore writes an archive's ACL entries as GRANTs, and those
  // go through the same check, before anything runs.
  it.each(['PUBLIC', 'another role'])('refuses at check time a genuine pg_dump archive whose ACL grants to %s, naming the grantee', async (who) => {
    const reader = `kw_reader_${randomBytes(4).toString('hex')}`;
    const grantee = who === 'PUBLIC' ? 'PUBLIC' : reader;
    await execute(server.urlOf('postgres'), `CREATE ROLE ${reader}`);
    const source = await server.createEmptyDatabase();
    await execute(server.ownerUrlOf(source), `CREATE TABLE public.secrets (v text); INSERT INTO public.secrets VALUES ('hush'); GRANT SELECT ON public.secrets TO ${grantee}`);
    const archive = path.join(outside, `grants-${reader}.dump`);
    const url = new URL(server.ownerUrlOf(source));
    const dumped = spawnSync(
      path.join(debianPostgresBinDir, 'pg_dump'),
      ['--format=custom', `--file=${archive}`, '--host', url.hostname, '--port', url.port, '--username', server.owner.user, '--dbname', source],
      { env: { ...process.env, PGPASSWORD: server.owner.password }, encoding: 'utf8' },
    );
    expect(dumped.status, dumped.stderr).toBe(0);
    const target = await server.cloneDatabase(otherData);
    const before = await tableContents(server.urlOf(target));

    const result = await runCli('db-restore', [archive, '--yes', '--without-checksum'], { DATABASE_URL: server.urlOf(target), DB_OWNER_PASSWORD: server.owner.password });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(`refusing to restore grants-${reader}\\.dump: it holds what a restore refuses: line \\d+ of the backup's SQL: GRANT of SELECT on table to ${who === 'PUBLIC' ? 'PUBLIC' : `'${reader}'`}`),
    );
    expect(result.stderr).toContain('the database was not touched');
    expect(result.stderr).not.toContain('hush');
    expect(await tableContents(server.urlOf(target))).toEqual(before);
  });

  it('never publishes a backup that grants to PUBLIC: the backup refuses it', async () => {
    const source = await server.createEmptyDatabase();
    await execute(server.ownerUrlOf(source), 'CREATE TABLE public.secrets (v text); GRANT SELECT ON public.secrets TO PUBLIC');

    const error = await backupDatabase({ databaseUrl: server.ownerUrlOf(source), backupDir: path.join(outside, 'public-grant'), environment: 'test', keep: 1 }).catch(
      (e: unknown) => e,
    );

    expect((error as Error).message).toContain('GRANT of SELECT on table to PUBLIC would give every role of the database server');
  });

  // The control, last (it leaves the effects behind until it removes them): the same archive,
  // restored by pg_restore as the superuser, does escape; so the tests above cannot pass by accident.
  it('would otherwise escape: pg_restore of the same archive as the superuser runs the program, writes the file and creates the role', async () => {
    const target = await server.createEmptyDatabase();
    const url = new URL(server.urlOf(target));
    const restored = spawnSync(
      path.join(debianPostgresBinDir, 'pg_restore'),
      ['--no-owner', '--single-transaction', '--host', url.hostname, '--port', url.port, '--username', 'postgres', '--dbname', target, attack.file],
      { env: { ...process.env, PGPASSWORD: server.password }, encoding: 'utf8' },
    );

    expect(restored.status, restored.stderr).toBe(0);
    expect(existsSync(ran)).toBe(true);
    expect(existsSync(written)).toBe(true);
    await execute(server.urlOf('postgres'), `DROP ROLE ${evilRole}`);
    await rm(ran);
    await rm(written);
  });

});
