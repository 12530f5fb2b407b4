import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { withClient } from '../../../src/db/with-client.js';
import { RestoreError } from '../../../src/errors.js';
import { migrationFunctions } from '../../../src/operations/restore/migration-functions.js';
import { restoreDatabase } from '../../../src/operations/restore/restore.js';
import { verifyBackupFile } from '../../../src/operations/vetting/verify-backup-file.js';
import { sqlScriptParts } from '../../../src/operations/vetting/sql-script.js';
import { ensureAppRole, provisionAppRole } from '../../../src/provisioning/app-role.js';
import { holdAdvisoryLock } from '../../support/advisory-lock-holder.js';
import { eventually } from '../../support/eventually.js';
import { migrationsDefining } from '../../support/migration-sandbox.js';
import { withMigrationsRecord } from '../../support/migrations-record.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// A backup is untrusted input, and its functions run while it is restored, as the owner: a
// CHECK as its rows load, a trigger, an index expression. Whatever they do must neither
// outlive the catalog's check nor wait for a more powerful session of the project's own
// tooling (setup --admin, the next restore given the superuser's URL) to run it.
describe('code a backup plants while it is restored', () => {
  let workDir: string;
  const suffix = randomBytes(3).toString('hex');
  const bystander = `kw_planted_other_${suffix}`;
  const evil = `kw_planted_evil_${suffix}`;
  const setupApp = `kw_planted_setup_app_${suffix}`;
  const app = `kw_planted_app_${suffix}`;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'kw-planted-'));
    await chmod(workDir, 0o711);
    await withClient(inject('serverUrl'), (client) => client.query(`CREATE ROLE ${bystander} LOGIN; CREATE ROLE ${app} LOGIN`));
  });
  afterAll(async () => {
    await withClient(inject('serverUrl'), async (client) => {
      for (const role of [bystander, evil, setupApp, app]) await client.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    });
    await rm(workDir, { recursive: true, force: true });
  });

  // Each crafted backup's SQL, for the functions it makes (see restoreAsDefault).
  const craftedSql = new WeakMap<object, string>();
  async function crafted(name: string, sql: string) {
    const file = path.join(workDir, name);
    const dump =
      `--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n` +
      `SET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n${sql}\n` +
      '--\n-- PostgreSQL database dump complete\n--\n\n';
    await writeFile(file, gzipSync(Buffer.from(withMigrationsRecord(dump))));
    const backup = await verifyBackupFile(file);
    craftedSql.set(backup, dump);
    return backup;
  }
  // The CREATE FUNCTION statements of a crafted backup, as far as its text is read.
  async function functionsMadeBy(backup: object): Promise<string> {
    const made: string[] = [];
    try {
      for await (const part of sqlScriptParts(Readable.from([Buffer.from(craftedSql.get(backup) ?? '')]), {})) {
        if (part.kind === 'sql' && part.statement === 'CREATE FUNCTION') made.push(`${part.text}\n`);
      }
    } catch {
      // Refused further on: the restore says so.
    }
    return made.join('');
  }
  /** A file the server would write, if anything made it run a program: in a folder it may write to. */
  async function marker(): Promise<string> {
    const folder = path.join(workDir, `markers-${randomBytes(4).toString('hex')}`);
    await mkdir(folder);
    await chmod(folder, 0o777);
    return path.join(folder, 'ran');
  }
  async function target(): Promise<TestDatabase> {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    return database;
  }
  // As the documented default runs it: the superuser's URL, logging in as the owner. A function
  // no migration defines is refused before it is made, so that its body never runs: the
  // backup's functions are here the service's own migrations' (unless `ownFunctions` is false,
  // or the test gives the migrations), so that they run while rows load, as a migration's may,
  // and what the checks before COMMIT refuse of what they did is what these tests show.
  const restoreAsDefault = async (
    database: TestDatabase,
    backup: Awaited<ReturnType<typeof crafted>>,
    options: { signal?: AbortSignal; migrationsDir?: string; ownFunctions?: false; alsoMigrated?: string } = {},
  ) => {
    const { ownFunctions, alsoMigrated = '', ...given } = options;
    const functions = given.migrationsDir === undefined && ownFunctions !== false ? await functionsMadeBy(backup) : '';
    const migrated = `${functions}${alsoMigrated}`;
    const migrationsDir = migrated === '' ? given.migrationsDir : await migrationsDefining(migrated, workDir);
    return restoreDatabase({ databaseUrl: database.url, owner: { password: inject('ownerPassword') }, backup, ...given, ...(migrationsDir ? { migrationsDir } : {}) });
  };
  // How the restore refuses a function of the backup's that no migration defines, before it is made.
  const refusedBeforeMade = (fn: string) => `function ${fn}, which no migration defines so (the same name, body and language)`;
  const superuserProgram = (file: string) => `IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L', 'touch ${file}');
  END IF;`;

  // A table of one row whose rows load while the backup's function runs: its CHECK calls `fn`.
  const seededCheck = (fn: string) =>
    `CREATE TABLE public.seed (id integer);\nCOPY public.seed (id) FROM stdin;\n1\n\\.\nALTER TABLE public.seed ADD CONSTRAINT seed_ok CHECK (public.${fn}(id));\n`;
  // A backup whose one row runs `body` (PL/pgSQL) in its CHECK's function as it loads, after `before`.
  const whileRowsLoad = (name: string, body: string, before = '') => crafted(name, `${before}${beyondFunction(body)}${seededCheck('beyond')}`);
  const beyondFunction = (body: string) => `CREATE FUNCTION public.beyond(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN ${body} RETURN true; END $$;
`;
  // How the restore refuses a function of public that no migration defines as it is.
  const noMigrationDefines = (fn: string) =>
    `function ${fn}, which no migration defines so (it would run the backup's code for whoever calls it, the owner at the next migration among them)`;
  // A table of password hashes, with `between` (its triggers) before its one row loads.
  const secrets = (between: string) =>
    `CREATE TABLE public.secrets (id integer, password_hash text);\n${between}COPY public.secrets (id, password_hash) FROM stdin;\n1\ta-hash\n\\.\n`;
  const secretsRestored = async (database: TestDatabase) =>
    withClient(database.url, async (client) => (await client.query("SELECT pg_catalog.to_regclass('public.secrets') IS NOT NULL AS restored")).rows[0]);

  it('a constraint trigger deferred to COMMIT fires before the catalog is asked, and what it grants is refused', async () => {
    const database = await target();
    const backup = await crafted(
      'deferred.sql.gz',
      secrets(`CREATE FUNCTION public.at_commit() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN EXECUTE 'GRANT SELECT ON TABLE public.secrets TO PUBLIC'; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON public.secrets DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.at_commit();
`),
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('SELECT on table public.secrets to PUBLIC');
    expect(await secretsRestored(database)).toEqual({ restored: false });
  });

  it('a trigger that can be deferred, which could defer itself again past the check, is refused', async () => {
    const database = await target();
    const backup = await crafted(
      'redefer.sql.gz',
      secrets(`CREATE TABLE public.queued (id integer);
CREATE FUNCTION public.first() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN EXECUTE 'SET CONSTRAINTS ALL DEFERRED'; INSERT INTO public.queued VALUES (1); RETURN NULL; END $$;
CREATE FUNCTION public.last() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN EXECUTE 'GRANT SELECT ON TABLE public.secrets TO PUBLIC'; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER first AFTER INSERT ON public.secrets DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.first();
CREATE CONSTRAINT TRIGGER last AFTER INSERT ON public.queued DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.last();
`),
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('the backup left a trigger or constraint that can be deferred to COMMIT, after this check: first on public.secrets; last on public.queued');
    expect(await secretsRestored(database)).toEqual({ restored: false });
  });

  // Its recheck at COMMIT runs its index expression, a function of the backup's, which could
  // defer a second such constraint past the check (SET CONSTRAINTS ALL DEFERRED) to act then.
  it('a constraint that can be deferred is refused', async () => {
    const database = await target();
    const backup = await crafted(
      'deferred-constraint.sql.gz',
      secrets('ALTER TABLE ONLY public.secrets ADD CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED;\n'),
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('the backup left a trigger or constraint that can be deferred to COMMIT, after this check: constraint once on public.secrets');
    expect(await secretsRestored(database)).toEqual({ restored: false });
  });

  it('a deferred trigger that turns search_path to its own operators before the check is asked blinds nothing', async () => {
    const database = await target();
    const backup = await crafted(
      'blind.sql.gz',
      secrets(`CREATE FUNCTION public.blind() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE 'CREATE FUNCTION public.never(oid, oid) RETURNS boolean LANGUAGE sql AS ''SELECT false''';
  EXECUTE 'CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.never)';
  EXECUTE 'GRANT SELECT ON TABLE public.secrets TO PUBLIC';
  PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', true);
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER blind AFTER INSERT ON public.secrets DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.blind();
`),
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('SELECT on table public.secrets to PUBLIC');
  });

  it("the release step given a superuser's URL never runs a function the owner planted in public with the superuser's powers", async () => {
    const database = await target();
    await ensureAppRole({ databaseUrl: database.ownerUrl, user: app });
    await withClient(database.ownerUrl, (client) =>
      client.query(`CREATE FUNCTION public.pg_has_role(a text, b oid, c text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN EXECUTE 'CREATE ROLE ${evil}'; END IF;
  RETURN pg_catalog.pg_has_role(a::name, b, c);
END $$`),
    );

    await ensureAppRole({ databaseUrl: database.url, user: app });

    const made = await withClient(inject('serverUrl'), async (client) => (await client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [evil])).rowCount);
    expect(made).toBe(0);
  });

  it('restores a backup made where the release step granted a view as a table (writes included), and leaves the application role only reading it', async () => {
    const database = await target();
    await ensureAppRole({ databaseUrl: database.ownerUrl, user: app });
    const backup = await crafted(
      'old-view.sql.gz',
      `CREATE TABLE public.notes (id integer);
CREATE VIEW public.recent_notes AS SELECT id FROM public.notes;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.notes TO ${app};
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.recent_notes TO ${app};
`,
    );

    await restoreDatabase({ databaseUrl: database.url, owner: { password: inject('ownerPassword') }, appRole: app, backup });

    const privileges = await withClient(database.url, async (client) =>
      (
        await client.query(
          "SELECT pg_catalog.has_table_privilege($1, 'public.recent_notes', 'SELECT') AS reads, pg_catalog.has_table_privilege($1, 'public.recent_notes', 'INSERT, UPDATE, DELETE') AS writes",
          [app],
        )
      ).rows[0],
    );
    expect(privileges).toEqual({ reads: true, writes: false });
  });

  it("database-wide default privileges a CHECK's function sets while rows load are refused", async () => {
    const database = await target();
    const backup = await whileRowsLoad('global-defaults.sql.gz', "EXECUTE 'ALTER DEFAULT PRIVILEGES GRANT SELECT, TRUNCATE ON TABLES TO PUBLIC';");

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`TRUNCATE on new tables of ${inject('ownerUser')} to PUBLIC (default privileges in every schema)`);
    const defaults = await withClient(database.url, async (client) => (await client.query('SELECT 1 FROM pg_catalog.pg_default_acl WHERE defaclnamespace = 0')).rowCount);
    expect(defaults).toBe(0);
  });

  // A restore refuses a function no migration defines (below); the owner may still make one
  // itself, with its own login, in the database it owns.
  it("setup --admin never runs a function planted in public with the admin's powers, and a restore refuses it", async () => {
    const database = await target();
    const ran = await marker();
    const trap = `CREATE FUNCTION public.pg_advisory_xact_lock(key text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  ${superuserProgram(ran)}
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN EXECUTE 'CREATE ROLE ${evil} LOGIN SUPERUSER'; END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(key::bigint);
END $$;
`;
    const refused = await restoreDatabase({ databaseUrl: database.ownerUrl, backup: await crafted('setup-trap.sql.gz', trap) }).catch((e: unknown) => e);
    await withClient(database.ownerUrl, (client) => client.query(trap));

    // The admin step, as the README says to run it (to change a password, say).
    await provisionAppRole({ adminUrl: database.url, user: setupApp, password: 'setup-app-pw' });

    expect(refused).toBeInstanceOf(RestoreError);
    expect((refused as Error).message).toContain(refusedBeforeMade('public.pg_advisory_xact_lock'));
    expect(existsSync(ran)).toBe(false);
    const role = await withClient(inject('serverUrl'), async (client) => (await client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [evil])).rowCount);
    expect(role).toBe(0);
  });

  // A restore refuses an operator its backup's code makes (below); the owner may still make one
  // itself, with its own login, in the database it owns.
  it("the next restore, given the superuser's URL, never runs an operator the owner planted in public with the superuser's powers", async () => {
    const database = await target();
    const ran = await marker();
    // With DB_APP_USER, as a new server's first restore: the owner's default privileges then
    // name the application role, which the next restore reads (grantee <> 0) as the superuser.
    await restoreDatabase({
      databaseUrl: database.url,
      owner: { password: inject('ownerPassword') },
      appRole: app,
      backup: await crafted('first.sql.gz', 'CREATE TABLE public.t (id integer);\n'),
    });
    await withClient(database.ownerUrl, (client) =>
      client.query(`CREATE FUNCTION public.differs(a oid, b integer) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  ${superuserProgram(ran)}
  RETURN a <> b::oid;
END $$;
CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.differs)`),
    );

    await restoreAsDefault(database, await crafted('benign.sql.gz', 'CREATE TABLE public.t (id integer);\n'));

    expect(existsSync(ran)).toBe(false);
  });

  it('a view over the migrations record gives the application role no way to write it', async () => {
    const database = await target();
    const backup = await crafted(
      'view.sql.gz',
      `CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text);
CREATE VIEW public.migration_log AS SELECT name FROM public.schema_migrations;
`,
    );
    await restoreDatabase({ databaseUrl: database.url, owner: { password: inject('ownerPassword') }, appRole: app, backup });

    const forged = await withClient(database.url, async (client) => {
      await client.query('BEGIN');
      await client.query(`SET LOCAL ROLE ${app}`);
      return client.query("INSERT INTO public.migration_log VALUES ('99990101000000_forged')").then(
        () => 'written',
        (error: { code?: string }) => error.code,
      );
    });
    expect(forged).toBe('42501');
  });

  it("a rule or a SECURITY DEFINER function that the backup's own code made while it ran is refused", async () => {
    const database = await target();
    const backup = await crafted(
      'rule.sql.gz',
      `CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text);
CREATE TABLE public.notes (body text);
CREATE FUNCTION public.forge(name text) RETURNS void LANGUAGE sql AS $$ INSERT INTO public.schema_migrations (name) VALUES (name) $$;
CREATE FUNCTION public.plant(id integer) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  EXECUTE 'CREATE RULE forge AS ON INSERT TO public.notes DO ALSO INSERT INTO public.schema_migrations (name) VALUES (NEW.body)';
  EXECUTE 'ALTER FUNCTION public.forge(text) SECURITY DEFINER';
  RETURN true;
END $$;
${seededCheck('plant')}`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('the backup left what it may not hold, in its statements or made by its own code while they ran: SECURITY DEFINER function public.forge(text); ');
    expect((error as Error).message).toContain('; rule forge on public.notes');
  });

  // The extension's owner (the role restoring, which created a trusted one) may add members
  // to it; the catalog checks pass over an extension's members.
  it("a function or a table the backup's own code made a member of an extension is refused", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) => client.query('CREATE SCHEMA IF NOT EXISTS reports; CREATE TABLE IF NOT EXISTS reports.audit (line text)'));
    const backup = await whileRowsLoad(
      'extension-member.sql.gz',
      `EXECUTE 'ALTER FUNCTION public.backdoor(pg_catalog.text) SECURITY DEFINER';
  EXECUTE 'ALTER EXTENSION pg_trgm ADD FUNCTION public.backdoor(pg_catalog.text)';
  EXECUTE 'ALTER EXTENSION pg_trgm ADD TABLE reports.audit';
  EXECUTE 'ALTER EXTENSION pg_trgm ADD SCHEMA reports';`,
      'CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;\n' +
        'CREATE FUNCTION public.backdoor(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$;\n',
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('function public.backdoor(text) as a member of extension pg_trgm');
    expect((error as Error).message).toContain('table reports.audit as a member of extension pg_trgm');
    expect((error as Error).message).toContain('schema reports as a member of extension pg_trgm');
  });

  // The owner writes every table at some migration (a backfill, a seed), which runs the
  // table's triggers, CHECKs and defaults as the owner, and so does a foreign key's action on
  // the application role's behalf: a function of public that no migration defines, or a call
  // of PostgreSQL's own that runs SQL text, would run the backup's code with the owner's rights.
  it.each([
    [
      'a trigger whose function no migration defines',
      'CREATE TABLE public.commands (sql text);\n' +
        'CREATE FUNCTION public.run_commands() RETURNS trigger LANGUAGE plpgsql AS $$\n' +
        'DECLARE queued record;\nBEGIN FOR queued IN SELECT sql FROM public.commands LOOP EXECUTE queued.sql; END LOOP; RETURN NEW; END $$;\n' +
        'CREATE TRIGGER run_commands BEFORE UPDATE ON public.notes FOR EACH ROW EXECUTE FUNCTION public.run_commands();\n',
      refusedBeforeMade('public.run_commands'),
    ],
    [
      "a function that would stand in for PostgreSQL's own in a migration's call by name",
      "CREATE FUNCTION public.lower(v character varying) RETURNS text LANGUAGE sql AS $$ SELECT 'planted' $$;\n",
      refusedBeforeMade('public.lower'),
    ],
    [
      "the migrations' uuid_generate_v7() with a body of its own, which a default calls",
      'CREATE FUNCTION public.uuid_generate_v7() RETURNS uuid LANGUAGE sql AS $$ SELECT pg_catalog.gen_random_uuid() $$;\n' +
        'CREATE TABLE public.refs (ref uuid DEFAULT public.uuid_generate_v7());\n',
      refusedBeforeMade('public.uuid_generate_v7'),
    ],
    [
      "a trigger's WHEN condition that runs SQL text",
      'CREATE TRIGGER sneaky BEFORE UPDATE ON public.notes FOR EACH ROW ' +
        "WHEN (pg_catalog.query_to_xml('SELECT 1', false, false, '') IS NOT NULL) EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger();\n",
      'the WHEN condition of trigger sneaky on public.notes, which runs SQL text',
    ],
    [
      'a CHECK that runs SQL text',
      "ALTER TABLE ONLY public.notes ADD CONSTRAINT sneaky CHECK (id IS NOT NULL OR pg_catalog.query_to_xml('SELECT 1', false, false, '') IS NOT NULL);\n",
      'constraint sneaky on public.notes, which runs SQL text',
    ],
    [
      'a default that runs SQL text',
      "ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT pg_catalog.query_to_xml('SELECT 1', false, false, '')::text;\n",
      'the default or expression of column body of public.notes, which runs SQL text',
    ],
    [
      "a default that changes the session's settings (the migrator's search_path)",
      "ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT pg_catalog.set_config('search_path', 'public, pg_catalog', false);\n",
      'the default or expression of column body of public.notes, which calls a function that acts beyond its row (on the session, other sessions or the server)',
    ],
    [
      "a default that seeds the session's random()",
      'ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT (pg_catalog.setseed((0.5)::double precision))::text;\n',
      'the default or expression of column body of public.notes, which calls a function that acts beyond its row (on the session, other sessions or the server)',
    ],
    [
      'a default that writes a message to the write-ahead log, for whatever reads the changes',
      "ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT (pg_catalog.pg_logical_emit_message(false, 'kw', 'planted'::text))::text;\n",
      'the default or expression of column body of public.notes, which calls a function that acts beyond its row (on the session, other sessions or the server)',
    ],
    [
      'a CHECK that takes an advisory lock',
      'ALTER TABLE ONLY public.notes ADD CONSTRAINT sneaky CHECK (pg_catalog.pg_try_advisory_lock(id::bigint) OR true);\n',
      'constraint sneaky on public.notes, which calls a function that acts beyond its row (on the session, other sessions or the server)',
    ],
    [
      'a default that checks a value against a type named as text (a domain whose CHECK runs its code)',
      "ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT (pg_catalog.pg_input_is_valid('x'::text, 'public.notes'::text))::text;\n",
      'the default or expression of column body of public.notes, which names a type or function where the catalog records no dependency (as text, or in SQL/JSON\'s RETURNING)',
    ],
    [
      'a default that converts to a type only named in its RETURNING clause',
      "ALTER TABLE ONLY public.notes ALTER COLUMN body SET DEFAULT (JSON_VALUE('\"x\"'::jsonb, '$' RETURNING text));\n",
      'the default or expression of column body of public.notes, which names a type or function where the catalog records no dependency (as text, or in SQL/JSON\'s RETURNING)',
    ],
    [
      'a view that reads a record of a type named as text',
      "CREATE VIEW public.typed AS\n SELECT (pg_catalog.record_in('(1,x)'::cstring, (('public.notes'::text)::regtype)::oid, '-1'::integer) IS NOT NULL) AS ok;\n",
      'view public.typed, which names a type or function where the catalog records no dependency (as text, or in SQL/JSON\'s RETURNING)',
    ],
    [
      'a view that runs SQL text',
      "CREATE VIEW public.report AS SELECT pg_catalog.query_to_xml('SELECT 1', false, false, '') AS x;\n",
      'view public.report, which runs SQL text',
    ],
  ])('%s is refused, on any table', async (_what, sql, message) => {
    const database = await target();
    // A function is the backup's own, and refused before it is made; an expression that calls
    // such a function of PostgreSQL's is refused in the backup's text before it runs (below), so
    // here a function a migration defines makes it while the rows load, as the catalog's check
    // before COMMIT must then find it.
    const makesFunction = sql.includes('CREATE FUNCTION');
    const made = makesFunction ? sql : `${beyondFunction(`EXECUTE $ddl$${sql}$ddl$;`)}${seededCheck('beyond')}`;
    const backup = await crafted('owner-runs.sql.gz', `CREATE TABLE public.notes (id integer PRIMARY KEY, body text);\n${made}`);

    const error = await restoreAsDefault(database, backup, makesFunction ? { ownFunctions: false } : {}).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(message);
  });

  // In the backup's own text, such a call is refused before it runs: a CHECK runs for each row as
  // it loads, and what it did beyond the transaction (another session ended, here) stayed done
  // when the check before COMMIT refused it.
  it.each([
    ['ends another session', (pid: number) => `CHECK ((pg_catalog.pg_terminate_backend(${pid}) OR true))`, 'pg_terminate_backend'],
    ['sleeps for an hour', () => 'CHECK ((pg_catalog."pg_sleep"((3600)::double precision) IS NOT NULL))', 'pg_sleep'],
    ['runs SQL text', () => "CHECK ((pg_catalog.query_to_xml('SELECT 1'::text, false, false, ''::text) IS NOT NULL))", 'query_to_xml'],
  ])('a CHECK in the backup that %s is refused before it runs', async (_what, check, called) => {
    const database = await target();
    const bystander = await holdAdvisoryLock(database.url, 4242, 'kw-bystander');
    try {
      const backup = await crafted(
        'calls-before-check.sql.gz',
        `CREATE TABLE public.notes (id integer, CONSTRAINT sneaky ${check(bystander.pid)});\nCOPY public.notes (id) FROM stdin;\n1\n\\.\n`,
      );

      const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

      expect(error).toBeInstanceOf(RestoreError);
      expect((error as Error).message).toContain(
        `an expression that calls ${called}, which acts beyond its row (on the session, other sessions or the server) or runs SQL text: refused before it could run, at line 10 of the backup's SQL`,
      );
      const alive = await withClient(database.url, async (client) =>
        (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [bystander.pid])).rows[0]!.n,
      );
      expect(alive).toBe(1);
    } finally {
      await bystander.release().catch(() => undefined);
    }
  });

  // Any other computation that no migration makes may take the server's time or memory for as
  // long as the backup likes, row after row, with every table of public held (a few hundred
  // bytes of gzip held them for minutes, or took 2 GB of the server's memory; an operator, 25 s
  // for four rows): refused before it runs.
  it.each([
    ["spends the server's time", 'CHECK ((pg_catalog.factorial(((id + 20000))::bigint) IS NOT NULL))', 'calls factorial'],
    ["spends the server's memory", "CHECK ((pg_catalog.length(pg_catalog.repeat('x'::text, (100000000 + id))) > 0))", 'calls repeat'],
    ["spends the server's time through an operator", 'CHECK ((((7)::numeric ^ ((150000 + id))::numeric) IS NOT NULL))', 'applies the operator ^'],
    ['parses XML', "CHECK ((XMLPARSE(CONTENT ('<a/>'::text || (id)::text)) IS NOT NULL))", 'uses SQL/XML or SQL/JSON (XmlExpr)'],
  ])('a CHECK in the backup that %s, doing what no migration does, is refused before it runs', async (_what, check, called) => {
    const database = await target();
    const backup = await crafted('calls-no-migration-makes.sql.gz', `CREATE TABLE public.notes (id integer, CONSTRAINT costly ${check});\nCOPY public.notes (id) FROM stdin;\n1\n\\.\n`);

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`an expression that ${called}, as no migration's SQL does`);
    expect((error as Error).message).toContain("refused before it could run, at line 10 of the backup's SQL");
    const notes = await withClient(database.ownerUrl, (client) => client.query("SELECT pg_catalog.to_regclass('public.notes') AS notes"));
    expect(notes.rows).toEqual([{ notes: null }]);
  });

  // nextval is a serial column's default, on a sequence of public named as a constant; any
  // other advances a sequence no rollback resets, at every row.
  it("a CHECK in the backup that advances a sequence outside public is refused before it runs", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) => client.query('CREATE SCHEMA counted; CREATE SEQUENCE counted.rows'));
    const backup = await crafted(
      'nextval-check.sql.gz',
      "CREATE TABLE public.notes (id integer, CONSTRAINT counted CHECK ((nextval('counted.rows'::regclass) > 0)));\nCOPY public.notes (id) FROM stdin;\n1\n\\.\n",
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect((error as Error).message).toContain('an expression that calls nextval, which acts beyond its row');
    const counted = await withClient(database.ownerUrl, (client) => client.query('SELECT is_called FROM counted.rows'));
    expect(counted.rows).toEqual([{ is_called: false }]);
  });

  // A function with a migration's name and a body of the backup's own ran as the owner while
  // the rows loaded (here it counts a sequence outside public, which no rollback takes back;
  // a review's made database-wide default privileges), then put the migration's body in its
  // place: the check before COMMIT saw the migration's function. Refused before it is made.
  it("a function that acts while rows load, then puts a migration's body in its place, is refused before it is made: its body never runs", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) => client.query('CREATE SCHEMA outside; CREATE SEQUENCE outside.ran'));
    const { body } = (await migrationFunctions()).find((each) => each.name === 'update_updated_at_column')!;
    const backup = await crafted(
      'self-erasing.sql.gz',
      `CREATE FUNCTION public.update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_catalog.nextval('outside.ran');
  EXECUTE 'CREATE OR REPLACE FUNCTION public.update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS ' || pg_catalog.quote_literal('${body.replaceAll("'", "''")}');
  RETURN NEW;
END $fn$;
CREATE TABLE public.seed (id integer, updated_at timestamp with time zone);
CREATE TRIGGER seeded BEFORE INSERT ON public.seed FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
COPY public.seed (id, updated_at) FROM stdin;
1\t\\N
\\.
`,
    );

    const error = await restoreAsDefault(database, backup, { ownFunctions: false }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(refusedBeforeMade('public.update_updated_at_column'));
    const ran = await withClient(database.ownerUrl, (client) => client.query('SELECT is_called FROM outside.ran'));
    expect(ran.rows).toEqual([{ is_called: false }]);
  });

  // Its name and body are not enough: a SET search_path would let the body's now() be a
  // function of the backup's.
  it("a migration's own trigger function restores as the migration made it, and is refused with a setting of its own", async () => {
    const { name, body } = (await migrationFunctions()).find((each) => each.name === 'update_updated_at_column')!;
    const made = (options: string) =>
      crafted(
        'known-function.sql.gz',
        'CREATE TABLE public.notes (id integer PRIMARY KEY, updated_at timestamptz);\n' +
          `CREATE FUNCTION public.${name}() RETURNS trigger LANGUAGE plpgsql${options} AS $fn$${body}$fn$;\n` +
          `CREATE TRIGGER touched BEFORE UPDATE ON public.notes FOR EACH ROW EXECUTE FUNCTION public.${name}();\n`,
      );

    await restoreAsDefault(await target(), await made(''));
    const error = await restoreAsDefault(await target(), await made(' SET search_path = public, pg_catalog')).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(noMigrationDefines('public.update_updated_at_column()'));
  });

  // A migration's function declared otherwise: IMMUTABLE, a default folded into one id for a
  // whole INSERT; STRICT; returning a set or another type; a procedure.
  it.each([
    ['IMMUTABLE', (body: string) => `CREATE FUNCTION public.uuid_generate_v7() RETURNS uuid LANGUAGE plpgsql IMMUTABLE AS $fn$${body}$fn$;`],
    ['STRICT', (body: string) => `CREATE FUNCTION public.uuid_generate_v7() RETURNS uuid LANGUAGE plpgsql STRICT AS $fn$${body}$fn$;`],
    ['returning a set', (body: string) => `CREATE FUNCTION public.uuid_generate_v7() RETURNS SETOF uuid LANGUAGE plpgsql AS $fn$${body}$fn$;`],
    ['returning text', (body: string) => `CREATE FUNCTION public.uuid_generate_v7() RETURNS text LANGUAGE plpgsql AS $fn$${body}$fn$;`],
    ['as a procedure', (body: string) => `CREATE PROCEDURE public.uuid_generate_v7() LANGUAGE plpgsql AS $fn$${body}$fn$;`],
  ])("the migrations' uuid_generate_v7() declared %s is refused", async (_what, declared) => {
    const { body } = (await migrationFunctions()).find((each) => each.name === 'uuid_generate_v7' && each.language === 'plpgsql')!;
    const backup = await crafted('declared.sql.gz', `SET check_function_bodies = false;\n${declared(body)}\n`);

    const error = await restoreAsDefault(await target(), backup, { ownFunctions: false }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(noMigrationDefines('public.uuid_generate_v7()'));
  });

  it("a service's function restores with the argument types its migration gives it, and is refused with others", async () => {
    const migrationsDir = await migrationsDefining('CREATE FUNCTION shout(t text, times integer[]) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) $$;\n');
    const made = (types: string) => crafted('typed.sql.gz', `CREATE FUNCTION public.shout(${types}) RETURNS text\n    LANGUAGE sql\n    AS $$ SELECT upper(t) $$;\n`);

    await restoreAsDefault(await target(), await made('t text, times integer[]'), { migrationsDir });
    const error = await restoreAsDefault(await target(), await made('t character varying, times integer[]'), { migrationsDir }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(noMigrationDefines('public.shout(character varying,integer[])'));
  });

  // Read with PostgreSQL's parser: statements inside a DO block (found by the parser's byte
  // offsets, past any non-ASCII text), and a RETURNS TABLE function's input arguments only.
  it("restores a service's functions as its migrations define them: one a DO block makes after non-ASCII text, one that returns a table", async () => {
    const migrationsDir = await migrationsDefining(
      "-- Café ☕: the service's own.\nDO $do$ BEGIN\n  CREATE FUNCTION greet() RETURNS text LANGUAGE sql AS 'SELECT ''hé''';\nEND $do$;\n" +
        "CREATE FUNCTION pairs(a integer) RETURNS TABLE (x integer, y integer) LANGUAGE sql AS 'SELECT a, a';\n",
    );
    const database = await target();
    const backup = await crafted(
      'service-functions.sql.gz',
      "CREATE FUNCTION public.greet() RETURNS text\n    LANGUAGE sql\n    AS $$SELECT 'hé'$$;\n" +
        'CREATE FUNCTION public.pairs(a integer) RETURNS TABLE(x integer, y integer)\n    LANGUAGE sql\n    AS $$SELECT a, a$$;\n',
    );

    await restoreAsDefault(database, backup, { migrationsDir });

    const calls = await withClient(database.url, async (client) => (await client.query('SELECT public.greet() AS greet, (SELECT x + y FROM public.pairs(2)) AS sum')).rows[0]);
    expect(calls).toEqual({ greet: 'hé', sum: 4 });
  });

  // A policy's expression may hold a subquery (a CHECK's may not), and runs for whoever reads
  // or writes the table: where row-level security is forced, for the owner, at every migration.
  it("a row-level security policy the backup's code leaves behind is refused, made by a function a migration defines", async () => {
    const database = await target();
    const makesPolicy = `EXECUTE 'CREATE POLICY planted ON public.notes USING ((SELECT pg_catalog.pg_notify(''kw'', CURRENT_USER)) IS NOT NULL)';
  EXECUTE 'ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY';
  EXECUTE 'ALTER TABLE public.notes FORCE ROW LEVEL SECURITY';`;
    const backup = await whileRowsLoad('policy.sql.gz', makesPolicy, 'CREATE TABLE public.notes (id integer);\n');

    const error = await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(beyondFunction(makesPolicy)) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('row-level security on public.notes');
    expect((error as Error).message).toContain('row-level security policy planted on public.notes');
  });

  // A service's migrations that call a function (and apply an operator) of that name: the
  // backup's call then passes the check of its text (which knows names only), and it is the
  // catalog's check before COMMIT that sees whose function it is.
  const callsRun = "SELECT run('SELECT 1');\nSELECT OPERATOR(ops.!!!) 'SELECT 1';\n";

  // Code of a schema the restore neither replaces nor checks: the owner's function that runs any
  // SQL it is given, called by a CHECK at the owner's next insert.
  it('a CHECK calling a function outside the public schema is refused', async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) =>
      client.query('CREATE SCHEMA ops; CREATE FUNCTION ops.run(q text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN true; END $$'),
    );
    const backup = await crafted(
      'outside-function.sql.gz',
      "CREATE TABLE public.notes (id integer, body text);\nALTER TABLE public.notes ADD CONSTRAINT planted CHECK (ops.run('SELECT 1')) NOT VALID;\n",
    );

    const error = await restoreAsDefault(database, backup, { alsoMigrated: callsRun }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    // Named in the backup's text: refused before the statement runs.
    expect((error as Error).message).toContain(
      'the function ops.run, code outside the public schema, which would run as the restoring role while the rows load: refused before it could run',
    );
  });

  // Set by the backup's own code while the rows load, where no statement of its text names it:
  // the catalog's check before COMMIT sees it.
  it("a default using code outside the public schema that the backup's code sets while the rows load is refused", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) =>
      client.query('CREATE SCHEMA ops; CREATE FUNCTION ops.run(q text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN true; END $$'),
    );
    const sets = "EXECUTE 'ALTER TABLE public.notes ALTER COLUMN ok SET DEFAULT ops.run(''SELECT 1'')';";
    const backup = await whileRowsLoad('outside-default-late.sql.gz', sets, 'CREATE TABLE public.notes (id integer, ok boolean);\n');

    const error = await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(`${beyondFunction(sets)}${callsRun}`) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('default value for column ok of table public.notes, which uses function ops.run(text), outside the public schema');
  });

  // An implicit cast from text to a type of public would change how a later migration's
  // `column = 'literal'` or call resolves.
  it("a cast to a type of public that the backup's code made is refused", async () => {
    const makesCast = "EXECUTE 'CREATE CAST (pg_catalog.text AS public.mood) WITH INOUT AS IMPLICIT';";
    const backup = await whileRowsLoad('cast.sql.gz', makesCast, "CREATE TYPE public.mood AS ENUM ('calm');\n");

    const error = await restoreAsDefault(await target(), backup, { migrationsDir: await migrationsDefining(beyondFunction(makesCast)) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('cast from text to public.mood');
  });

  // A cast has no owner: one added to an allowed extension, or to a type the owner has in
  // another schema, is no less the backup's.
  it.each([
    [
      'added to an allowed extension',
      "EXECUTE 'CREATE CAST (pg_catalog.text AS public.mood) WITH INOUT AS IMPLICIT'; EXECUTE 'ALTER EXTENSION pg_trgm ADD CAST (pg_catalog.text AS public.mood)';",
      "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;\nCREATE TYPE public.mood AS ENUM ('calm');\n",
      'cast from text to public.mood',
    ],
    ["to the owner's type in another schema", "EXECUTE 'CREATE CAST (pg_catalog.text AS ops.mood) WITH INOUT AS IMPLICIT';", '', 'cast from text to ops.mood'],
  ])("a cast the backup's code made %s is refused", async (_where, makesCast, before, message) => {
    const database = await target();
    await withClient(database.ownerUrl, (client) => client.query("CREATE SCHEMA ops; CREATE TYPE ops.mood AS ENUM ('calm')"));
    const backup = await whileRowsLoad('cast-elsewhere.sql.gz', makesCast, before);

    const error = await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(beyondFunction(makesCast)) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(message);
  });

  it("a collation, a text search configuration or statistics the backup's code made in public are refused", async () => {
    const makes = `EXECUTE $q$CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)$q$;
  EXECUTE 'CREATE TEXT SEARCH CONFIGURATION public.english (COPY = pg_catalog.english)';
  EXECUTE 'CREATE STATISTICS public.seed_stats (dependencies) ON id, n FROM public.seed';`;
    const backup = await crafted(
      'made-objects.sql.gz',
      `${beyondFunction(makes)}CREATE TABLE public.seed (id integer, n integer);\nCOPY public.seed (id, n) FROM stdin;\n1\t1\n\\.\nALTER TABLE public.seed ADD CONSTRAINT seed_ok CHECK (public.beyond(id));\n`,
    );

    const error = await restoreAsDefault(await target(), backup, { migrationsDir: await migrationsDefining(beyondFunction(makes)) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    for (const made of ['collation public.ci', 'text search configuration public.english', 'statistics public.seed_stats']) expect((error as Error).message).toContain(made);
  });

  // A view reads its tables with the owner's rights, and the application role may read the view.
  it("a view that reads the owner's table in another schema is refused", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) => client.query('CREATE SCHEMA reports; CREATE TABLE reports.audit (line text)'));
    const backup = await crafted('outside-view.sql.gz', 'CREATE VIEW public.audit_copy AS\n SELECT audit.line\n   FROM reports.audit;\n');

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("view public.audit_copy, which reads reports.audit, outside the public schema, with the owner's rights");
  });

  // Another schema's function called from public (the owner's that runs any SQL it is given,
  // another role's that it may rewrite after COMMIT), as pg_dump would write each, in the
  // backup's text: the owner's next insert, or a read of the view, would run it.
  it.each([
    ['a default', 'CREATE TABLE public.notes (id integer, ok boolean);\nALTER TABLE ONLY public.notes ALTER COLUMN ok SET DEFAULT ops.run(\'SELECT 1\');\n', 'function ops.run'],
    ['a trigger', 'CREATE TABLE public.notes (id integer);\nCREATE TRIGGER hook BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION ops.hook();\n', 'trigger function ops.hook'],
    ['a view', "CREATE VIEW public.ran AS\n SELECT ops.run('SELECT 1'::text) AS run;\n", 'function ops.run'],
    ["a function's argument default", "CREATE FUNCTION public.add_one(a boolean DEFAULT ops.run('SELECT 1'::text)) RETURNS boolean\n    LANGUAGE sql\n    AS $$SELECT a$$;\n", 'function ops.run'],
    // Through an operator of that schema over its function, and a domain of it whose CHECK calls one.
    ['an operator in a default', "CREATE TABLE public.notes (id integer, ok boolean);\nALTER TABLE ONLY public.notes ALTER COLUMN ok SET DEFAULT (OPERATOR(ops.!!!) 'SELECT 1'::text);\n", 'operator ops.!!!'],
    ['a column of a domain', 'CREATE TABLE public.notes (id integer, cmd ops.sql);\n', 'type ops.sql'],
  ])("%s using code outside the public schema is refused before it runs", async (_what, sql, named) => {
    const database = await target();
    await withClient(database.ownerUrl, (client) =>
      client.query(
        'CREATE SCHEMA ops; CREATE FUNCTION ops.run(q text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN true; END $$; ' +
          'CREATE FUNCTION ops.hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; ' +
          'CREATE OPERATOR ops.!!! (RIGHTARG = text, FUNCTION = ops.run); CREATE DOMAIN ops.sql AS text CHECK (ops.run(VALUE))',
      ),
    );

    const error = await restoreAsDefault(database, await crafted('outside-call.sql.gz', sql), { alsoMigrated: callsRun }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`the ${named}, code outside the public schema, which would run as the restoring role while the rows load: refused before it could run`);
  });

  // A trusted extension's script makes its objects wherever it is told, for the owner: the
  // catalog's and information_schema are watched as any other schema.
  it.each(['information_schema', 'pg_catalog'])("an extension the backup's code made in %s is refused", async (schema) => {
    const database = await target();
    const makesExtension = `EXECUTE 'CREATE EXTENSION fuzzystrmatch SCHEMA ${schema}';`;
    const backup = await whileRowsLoad('extension-elsewhere.sql.gz', makesExtension);

    const error = await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(beyondFunction(makesExtension)) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('made extension fuzzystrmatch');
  });

  // A view over a table the application role writes would let it say what was applied; an
  // unlogged table forgets what was, at a crash or a failover.
  it.each([
    [
      'a view over a table of its rows',
      'CREATE TABLE public.migration_rows (name text NOT NULL, checksum text NOT NULL);\nCREATE VIEW public.schema_migrations AS\n SELECT migration_rows.name, migration_rows.checksum\n   FROM public.migration_rows;\n',
      'the migrations record public.schema_migrations as no table but a relation of kind v',
    ],
    ['an unlogged table', 'CREATE UNLOGGED TABLE public.schema_migrations (name text NOT NULL, checksum text NOT NULL);\n', 'the migrations record public.schema_migrations as an unlogged table'],
  ])('the migrations record as %s is refused', async (_what, sql, message) => {
    const error = await restoreAsDefault(await target(), await crafted('record-kind.sql.gz', sql)).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(message);
  });

  it("a service's function with an argument default of its own, or one that runs SQL text, is refused", async () => {
    const migrationsDir = await migrationsDefining("CREATE FUNCTION add_one(a integer DEFAULT 1) RETURNS integer LANGUAGE sql AS 'SELECT a + 1';\n");
    const made = (argument: string) => crafted('argument-default.sql.gz', `CREATE FUNCTION public.add_one(${argument}) RETURNS integer\n    LANGUAGE sql\n    AS $$SELECT a + 1$$;\n`);

    await restoreAsDefault(await target(), await made('a integer DEFAULT 1'), { migrationsDir });
    const none = await restoreAsDefault(await target(), await made('a integer'), { migrationsDir }).catch((e: unknown) => e);
    const sqlText = await restoreAsDefault(await target(), await made("a integer DEFAULT pg_catalog.length(pg_catalog.query_to_xml('SELECT 1', false, false, '')::text)"), {
      migrationsDir,
    }).catch((e: unknown) => e);

    expect((none as Error).message).toContain(noMigrationDefines('public.add_one(integer)'));
    expect((sqlText as Error).message).toContain('an expression that calls query_to_xml, which acts beyond its row (on the session, other sessions or the server) or runs SQL text: refused before it could run');
  });

  // The same argument default made while rows load, by a function a migration defines: the
  // catalog's check before COMMIT is what finds it then.
  it("an argument default that runs SQL text, made while rows load, is refused before COMMIT", async () => {
    const makes =
      "EXECUTE $ddl$CREATE FUNCTION public.add_two(a integer DEFAULT pg_catalog.length(pg_catalog.query_to_xml('SELECT 1', false, false, '')::text)) " +
      'RETURNS integer LANGUAGE sql AS $f$SELECT a + 2$f$ $ddl$;';
    const backup = await crafted('argument-default-made.sql.gz', `${beyondFunction(makes)}${seededCheck('beyond')}`);

    const error = await restoreAsDefault(await target(), backup).catch((e: unknown) => e);

    expect((error as Error).message).toContain('the argument defaults of function public.add_two(integer), which runs SQL text');
  });

  it.each([
    [
      "a function a service's migration makes in another schema is none of public's",
      "CREATE SCHEMA audit;\nCREATE FUNCTION audit.stamp() RETURNS integer LANGUAGE sql AS 'SELECT 1';\n",
      'CREATE FUNCTION public.stamp() RETURNS integer\n    LANGUAGE sql\n    AS $$SELECT 1$$;\n',
      refusedBeforeMade('public.stamp'),
    ],
    // Not resolved, so none of the migrations' (and no failure of the check itself).
    [
      "a service's function whose migration declares an argument by another's %TYPE is refused as none of the migrations'",
      "CREATE TABLE notes (body text);\nCREATE FUNCTION note_length(b notes.body%TYPE) RETURNS integer LANGUAGE sql AS 'SELECT length(b)';\n",
      'CREATE TABLE public.notes (body text);\nCREATE FUNCTION public.note_length(b text) RETURNS integer\n    LANGUAGE sql\n    AS $$SELECT length(b)$$;\n',
      noMigrationDefines('public.note_length(text)'),
    ],
  ])('%s', async (_case, migration, sql, refused) => {
    const migrationsDir = await migrationsDefining(migration);
    const backup = await crafted('not-the-migrations-function.sql.gz', sql);

    const error = await restoreAsDefault(await target(), backup, { migrationsDir }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(refused);
  });

  // A table and a function of the backup's that ANALYZE would call on it.
  const keyedTable = 'CREATE TABLE public.keyed (id integer);\nCREATE FUNCTION public.key_of(id integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT id $$;\n';

  // ANALYZE computes expression statistics, and a range type's subtype difference, as the owner.
  it.each([
    [
      'expression statistics',
      "EXECUTE 'CREATE STATISTICS public.keyed_stats ON (public.key_of(id)) FROM public.keyed';",
      keyedTable,
      "statistics public.keyed_stats on expressions of public.keyed (ANALYZE computes them as the table's owner)",
    ],
    [
      'a range type with a subtype difference of its own',
      "EXECUTE 'CREATE TYPE public.span AS RANGE (subtype = integer, subtype_diff = public.diff_of)';",
      'CREATE FUNCTION public.diff_of(a integer, b integer) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT (a - b)::float8 $$;\n',
      "range type public.span, whose functions are not PostgreSQL's (ANALYZE runs them as the owner)",
    ],
  ])("%s that the backup's code made is refused", async (_what, body, before, message) => {
    const database = await target();
    const backup = await whileRowsLoad('analyzed.sql.gz', body, before);

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(message);
  });

  // ANALYZE and VACUUM (autovacuum's too) run an index's expressions as the table's owner.
  it('an index whose expression calls a function of public is refused', async () => {
    const database = await target();
    const backup = await crafted('index-function.sql.gz', `${keyedTable}CREATE INDEX keyed_key ON public.keyed USING btree (public.key_of(id));\n`);

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("index public.keyed_key, whose expression calls public.key_of(integer) (ANALYZE and VACUUM run it as the table's owner)");
  });

  // Only the owner writes the migrations record: a cascade from a table the application role
  // writes would rewrite it with the owner's rights, a trigger on it run the backup's code at
  // the next migration. Both in the backup's text, as pg_dump would write them.
  it('a foreign key from, or a trigger on, the migrations record is refused', async () => {
    const database = await target();
    const backup = await crafted(
      'record-links.sql.gz',
      `CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text NOT NULL);
CREATE TABLE public.notes (name text NOT NULL, checksum text NOT NULL);
ALTER TABLE ONLY public.notes ADD CONSTRAINT notes_key UNIQUE (name, checksum);
ALTER TABLE ONLY public.schema_migrations ADD CONSTRAINT forged FOREIGN KEY (name, checksum) REFERENCES public.notes(name, checksum) ON UPDATE CASCADE ON DELETE CASCADE;
CREATE FUNCTION public.on_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER on_record AFTER INSERT ON public.schema_migrations FOR EACH ROW EXECUTE FUNCTION public.on_record();
`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('foreign key forged on public.schema_migrations');
    expect((error as Error).message).toContain('trigger on_record on public.schema_migrations');
  });

  // The record's CHECKs, defaults and index expressions run at every migration too, as the
  // owner, with the migration lock held: the backup's own may refuse every later migration (a
  // CHECK its own rows pass), or take its time over each, with releases queued behind it.
  it("a CHECK, default or index expression of the backup's own on the migrations record is refused; the migrator's own are kept", async () => {
    const database = await target();
    const backup = await crafted(
      'record-checks.sql.gz',
      `CREATE TABLE public.schema_migrations (
    name text NOT NULL,
    checksum text DEFAULT 'x'::text NOT NULL,
    applied_at timestamp with time zone DEFAULT '2000-01-01 00:00:00+00'::timestamp with time zone NOT NULL,
    duration_ms integer NOT NULL,
    CONSTRAINT schema_migrations_checksum_check CHECK ((checksum ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT schema_migrations_duration_ms_check CHECK ((duration_ms >= 0)),
    CONSTRAINT no_later CHECK ((name <= '20261204210000_index_refresh_tokens_by_user'::text))
);
ALTER TABLE ONLY public.schema_migrations ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (name);
CREATE INDEX by_lower_name ON public.schema_migrations USING btree (lower(name));
`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    const message = (error as Error).message;
    expect(message).toContain('constraint no_later on the migrations record public.schema_migrations');
    expect(message).toContain('the default of column checksum of the migrations record public.schema_migrations');
    expect(message).toContain('the default of column applied_at of the migrations record public.schema_migrations');
    expect(message).toContain('index public.by_lower_name on the migrations record public.schema_migrations, with an expression or a predicate');
    expect(message).not.toContain('schema_migrations_checksum_check');
    expect(message).not.toContain('schema_migrations_duration_ms_check');
  });

  // Turned off, autovacuum never comes back by itself: dead rows pile up, and the table drifts
  // towards transaction-ID wraparound, without a word; as with thresholds it never reaches (a
  // backup audit: 200,000 dead rows kept). Other storage parameters are kept.
  it("a table whose autovacuum the backup turns off, its own or its TOAST table's, is refused; other storage parameters are kept", async () => {
    const database = await target();
    const backup = await crafted(
      'autovacuum-off.sql.gz',
      `CREATE TABLE public.notes (id integer, body text) WITH (autovacuum_enabled='false', toast.autovacuum_enabled='off');
CREATE TABLE public.tuned (id integer, body text) WITH (fillfactor='90', autovacuum_vacuum_scale_factor='0.01', autovacuum_vacuum_threshold='100000', autovacuum_enabled='on');
CREATE TABLE public.never (id integer) WITH (autovacuum_vacuum_threshold='2147483647');
CREATE TABLE public.seldom (id integer, body text) WITH (toast.autovacuum_vacuum_scale_factor='100');
`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('public.notes, whose autovacuum the backup turns off');
    expect((error as Error).message).toContain("public.notes, whose TOAST table's autovacuum the backup turns off");
    // Off in effect: a vacuum that waits for a billion dead rows, or a hundred times the table's.
    expect((error as Error).message).toContain('public.never, whose autovacuum the backup turns off');
    expect((error as Error).message).toContain("public.seldom, whose TOAST table's autovacuum the backup turns off");
    expect((error as Error).message).not.toContain('public.tuned');
  });

  // A query of a parent reads and writes its children's rows on the parent's privileges alone.
  it("the migrations record made a child of a table the application role may write, by the backup's own code, is refused", async () => {
    const database = await target();
    const backup = await crafted(
      'inherit.sql.gz',
      `CREATE TABLE public.schema_migrations (name text NOT NULL, checksum text);
CREATE TABLE public.notes (name text NOT NULL, checksum text);
CREATE FUNCTION public.adopt(id integer) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  EXECUTE 'ALTER TABLE public.schema_migrations INHERIT public.notes';
  RETURN true;
END $$;
${seededCheck('adopt')}`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('; public.schema_migrations as a partition or child of public.notes');
  });

  // Each is refused in the backup's text; a database's owner may still make them from code (a
  // trusted extension such as pgcrypto, with its C functions, among them).
  it("an extension, an operator, an aggregate or a domain that the backup's own code made in public while it ran is refused", async () => {
    const database = await target();
    const backup = await whileRowsLoad(
      'made-in-public.sql.gz',
      `EXECUTE 'CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public';
  EXECUTE 'CREATE OPERATOR public.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texteq)';
  EXECUTE 'CREATE AGGREGATE public.planted_sum (integer) (SFUNC = pg_catalog.int4pl, STYPE = integer)';
  EXECUTE 'CREATE DOMAIN public.planted_email AS text';`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(
      'the backup left what it may not hold, in its statements or made by its own code while they ran: aggregate public.planted_sum(integer); domain public.planted_email; extension pgcrypto; ',
    );
    expect((error as Error).message).toContain('; operator public.===(text,text)');
    const extensions = await withClient(database.url, async (client) => (await client.query('SELECT extname FROM pg_catalog.pg_extension ORDER BY extname')).rows);
    expect(extensions.map((row) => row.extname)).not.toContain('pgcrypto');
  });

  // The catalog checks ask what the current role's roles own and did: a backup's code that
  // switched the role to one that owns nothing would have them look at nothing of the owner's.
  it("a role the backup's code switched to, to blind the checks, is the session's own again before they run", async () => {
    const database = await target();
    const backup = await whileRowsLoad(
      'switched-role.sql.gz',
      `EXECUTE 'GRANT SELECT ON TABLE public.secrets TO PUBLIC';
  PERFORM pg_catalog.set_config('role', 'pg_database_owner', false);`,
      secrets(''),
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('SELECT on table public.secrets to PUBLIC');
    expect(await secretsRestored(database)).toEqual({ restored: false });
  });

  // The session's temporary schema comes first for types and tables wherever search_path does
  // not name it: a domain pg_temp.text, which the owner may make from code, would stand in for
  // every unqualified `text` of the restore's own catalog checks, and its CHECK would run the
  // backup's function in the middle of them, after what it granted was looked for.
  it("a temporary domain named after a catalog type, made while rows load, runs none of the backup's code in the restore's checks", async () => {
    const database = await target();
    const makesDomain = `IF pg_catalog.to_regtype('pg_temp.text') IS NULL THEN
    EXECUTE 'CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (public.hijack(VALUE))';
    INSERT INTO public.planted SELECT t.typtype = 'd' AND t.typnamespace = pg_catalog.pg_my_temp_schema() FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.to_regtype('pg_temp.text');
  END IF;`;
    const hijack = `CREATE FUNCTION public.hijack(value pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.current_setting('kw.hijacked', true) IS DISTINCT FROM 'yes' THEN
    PERFORM pg_catalog.set_config('kw.hijacked', 'yes', false);
    EXECUTE 'GRANT SELECT ON TABLE public.secrets TO PUBLIC';
    EXECUTE 'CREATE FUNCTION public.backdoor(q pg_catalog.text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $b$ BEGIN EXECUTE q; END $b$';
  END IF;
  RETURN true;
END $$;
`;
    const backup = await whileRowsLoad('temporary-domain.sql.gz', makesDomain, `${secrets('')}CREATE TABLE public.planted (temporary_domain boolean);\n${hijack}`);

    // Its functions a service's migrations define: the check of public's functions passes them.
    await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(`${beyondFunction(makesDomain)}${hijack}`) });

    const left = await withClient(database.url, async (client) =>
      (
        await client.query(
          "SELECT pg_catalog.has_table_privilege('public', 'public.secrets', 'SELECT') AS readable, pg_catalog.to_regprocedure('public.backdoor(text)') IS NOT NULL AS backdoor, " +
            "(SELECT pg_catalog.array_agg(temporary_domain) FROM public.planted) AS planted",
        )
      ).rows[0],
    );
    expect(left).toEqual({ readable: false, backdoor: false, planted: [true] });
  });

  // What the owner may change beyond public, done by a CHECK's function as the rows load (the
  // statement as a PL/pgSQL string expression).
  it.each([
    [
      'a schema named after the application role, first in its search path, with its own users table',
      `'CREATE SCHEMA ${app}; CREATE TABLE ${app}.users (email text, password_hash text); GRANT USAGE ON SCHEMA ${app} TO PUBLIC; GRANT ALL ON ${app}.users TO PUBLIC'`,
      `made schema ${app}`,
    ],
    [
      "the database's search path",
      "'ALTER DATABASE ' || pg_catalog.quote_ident(pg_catalog.current_database()) || ' SET search_path = planted, public'",
      'wrote 1 row of pg_catalog.pg_db_role_setting (settings of roles and databases: ALTER ROLE/DATABASE … SET)',
    ],
    [
      "the database's privileges",
      "'GRANT CREATE ON DATABASE ' || pg_catalog.quote_ident(pg_catalog.current_database()) || ' TO PUBLIC'",
      'wrote 1 row of pg_catalog.pg_database (databases: privileges, connection limit or name)',
    ],
    ["the owner's password", "'ALTER ROLE CURRENT_USER PASSWORD ''planted'''", 'wrote 1 row of pg_catalog.pg_authid (roles: a password or an attribute)'],
  ])('a change beyond the public schema made while rows load is refused: %s', async (_what, statement, said) => {
    const database = await target();
    // Should the owner's password change all the same, the other files' connections need it back.
    onTestFinished(async () => {
      await withClient(inject('serverUrl'), (client) => client.query(`ALTER ROLE ${inject('ownerUser')} PASSWORD ${client.escapeLiteral(inject('ownerPassword'))}`));
    });
    const backup = await whileRowsLoad('beyond.sql.gz', `EXECUTE ${statement};`);

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(`this changed beyond the public schema, which a restore leaves as it is: ${said}`);
    const left = await withClient(database.url, async (client) => {
      const { rows } = await client.query(
        `SELECT pg_catalog.to_regnamespace($1) IS NOT NULL AS schema,
                (SELECT pg_catalog.count(*) FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                  WHERE d.datname = pg_catalog.current_database())::int AS settings,
                pg_catalog.has_database_privilege('public', pg_catalog.current_database(), 'CREATE') AS public_creates`,
        [app],
      );
      return rows[0];
    });
    expect(left).toEqual({ schema: false, settings: 0, public_creates: false });
    // The owner still logs in with its own password.
    await withClient(database.ownerUrl, (client) => client.query('SELECT 1'));
  });

  it("rows a backup's function writes to (or truncates of) the owner's table in another schema, or a partition of it in public, are refused, and a backup that leaves that schema alone restores", async () => {
    const database = await target();
    await withClient(database.ownerUrl, (client) =>
      client.query(
        'CREATE SCHEMA reports; CREATE TABLE reports.audit (line text); CREATE TABLE reports.events (kind integer) PARTITION BY LIST (kind); ' +
          'CREATE TABLE reports.events_1 PARTITION OF reports.events FOR VALUES IN (1)',
      ),
    );
    const partition = await whileRowsLoad(
      'partition.sql.gz',
      "EXECUTE 'ALTER TABLE reports.events ATTACH PARTITION public.planted DEFAULT';",
      'CREATE TABLE public.planted (kind integer);\n',
    );
    const truncates = await whileRowsLoad('truncate.sql.gz', "EXECUTE 'TRUNCATE reports.audit';");
    const truncated = await restoreAsDefault(database, truncates).catch((e: unknown) => e);
    expect(truncated).toBeInstanceOf(RestoreError);
    expect((truncated as Error).message).toContain('which a restore leaves as it is: changed table reports.audit');
    const attached = await restoreAsDefault(database, partition).catch((e: unknown) => e);
    expect(attached).toBeInstanceOf(RestoreError);
    expect((attached as Error).message).toContain('which a restore leaves as it is: made public.planted as a partition or child of reports.events');

    const writes = await whileRowsLoad('writes.sql.gz', "INSERT INTO reports.audit VALUES ('planted');");

    const error = await restoreAsDefault(database, writes).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain('which a restore leaves as it is: wrote 1 row of reports.audit');
    await restoreAsDefault(database, await crafted('benign.sql.gz', 'CREATE TABLE public.t (id integer);\nCOPY public.t (id) FROM stdin;\n1\n\\.\n'));
    const rows = await withClient(database.ownerUrl, async (client) => (await client.query('SELECT (SELECT pg_catalog.count(*) FROM reports.audit)::int AS audit, (SELECT pg_catalog.count(*) FROM public.t)::int AS t')).rows[0]);
    expect(rows).toEqual({ audit: 0, t: 1 });
  });

  it("restores while another role works in a schema of its own, and with a foreign key to the owner's table in another schema", async () => {
    const database = await target();
    const theirs = `${bystander}_work`;
    await withClient(database.url, (client) => client.query(`CREATE SCHEMA ${theirs} AUTHORIZATION ${bystander}`));
    await withClient(database.ownerUrl, (client) => client.query('CREATE SCHEMA reports; CREATE TABLE reports.kinds (id integer PRIMARY KEY); INSERT INTO reports.kinds VALUES (1)'));
    // The backup's rows wait at a gate the test holds, while the other role makes a table.
    const gateKey = 73_100_078;
    const gate = await holdAdvisoryLock(database.url, gateKey, 'gate');
    const atGate = `CREATE FUNCTION public.at_gate(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(${gateKey}); RETURN true; END $$;
`;
    const backup = await crafted(
      'meanwhile.sql.gz',
      `${atGate}${seededCheck('at_gate')}ALTER TABLE ONLY public.seed ADD CONSTRAINT seed_kind FOREIGN KEY (id) REFERENCES reports.kinds(id);\n`,
    );
    const restoring = restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(atGate) });
    let released = false;
    try {
      await eventually(
        async () => (await withClient(database.url, (client) => client.query("SELECT 1 FROM pg_catalog.pg_stat_activity WHERE datname = current_database() AND application_name = 'kennwilliamson-restore' AND wait_event = 'advisory'"))).rowCount === 1,
        'the restore waits at the gate',
      );
      await withClient(database.url, (client) => client.query(`SET ROLE ${bystander}; CREATE TABLE ${theirs}.log (line text)`));
      await gate.release();
      released = true;
      await restoring;
    } finally {
      if (!released) await gate.release();
    }
    const restored = await withClient(database.ownerUrl, async (client) => (await client.query("SELECT pg_catalog.to_regclass('public.seed') IS NOT NULL AS seed")).rows[0]);
    expect(restored).toEqual({ seed: true });
  });

  it("is refused where track_counts is off, which would hide the backup's writes beyond public, and leaves the database as it was", async () => {
    const database = await target();
    await withClient(database.url, async (client) => {
      await client.query('CREATE TABLE public.kept (id integer)');
      await client.query(`ALTER DATABASE ${client.escapeIdentifier(database.name)} SET track_counts = off`);
    });

    const error = await restoreAsDefault(database, await crafted('benign.sql.gz', 'CREATE TABLE public.t (id integer);\n')).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain("track_counts is off on this server, and a restore counts with it what the backup's code writes beyond the public schema");
    const kept = await withClient(database.url, async (client) => (await client.query("SELECT pg_catalog.to_regclass('public.kept') IS NOT NULL AS kept")).rows[0]);
    expect(kept).toEqual({ kept: true });
  });

  it("the bounds for a silent host that a function lifts while rows load are back before the backup's next statement", async () => {
    const database = await target();
    const bounds = ['tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'client_connection_check_interval', 'tcp_user_timeout'];
    const functions = `CREATE FUNCTION public.lift(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
${bounds.map((name) => `  PERFORM pg_catalog.set_config('${name}', '0', false);`).join('\n')}
  RETURN true;
END $$;
CREATE FUNCTION public.look(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.seen SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.unnest(ARRAY['${bounds.join("', '")}']) AS name;
  RETURN true;
END $$;
`;
    const backup = await crafted(
      'silent.sql.gz',
      `CREATE TABLE public.seen (name text, setting text);
${functions}${seededCheck('lift')}CREATE TABLE public.probe (id integer);
COPY public.probe (id) FROM stdin;
1
\\.
ALTER TABLE public.probe ADD CONSTRAINT probe_looks CHECK (public.look(id));
`,
    );

    await restoreAsDefault(database, backup, { migrationsDir: await migrationsDefining(functions) });

    const seen = await withClient(database.url, async (client) => (await client.query('SELECT name, setting FROM public.seen ORDER BY name')).rows);
    expect(seen).toEqual([
      { name: 'client_connection_check_interval', setting: '1s' },
      { name: 'tcp_keepalives_count', setting: '5' },
      { name: 'tcp_keepalives_idle', setting: '5' },
      { name: 'tcp_keepalives_interval', setting: '1' },
      { name: 'tcp_user_timeout', setting: '10000' },
    ]);
  });

  // Inside one statement the backup's code may turn the server's check of the connection off
  // and keep running: closing the restore's end of the connection then ended nothing, and its
  // session held every table of public (AccessExclusive) until the function returned. It may
  // rename the session too, so the restore knows its own by process and start time.
  it("an interrupted restore leaves no session holding the tables, though the backup's code turned the server's connection check off", async () => {
    const database = await target();
    const backup = await crafted(
      'stall.sql.gz',
      `CREATE FUNCTION public.stall(id integer) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pg_catalog.set_config('client_connection_check_interval', '0', true);
  PERFORM pg_catalog.set_config('application_name', 'not-the-restore', true);
  PERFORM pg_catalog.pg_sleep(60);
  RETURN true;
END $$;
CREATE TABLE public.seed (id integer CHECK (public.stall(id)));
COPY public.seed (id) FROM stdin;
1
\\.
`,
    );
    // Every session of the database (the code renames the restore's own, as any role may).
    const restoreSessions = () =>
      withClient(inject('serverUrl'), async (client) =>
        (await client.query('SELECT wait_event FROM pg_catalog.pg_stat_activity WHERE datname = $1', [database.name])).rows,
      );
    // Where sessions write times in a style that reads back as another time (IST as Israel's),
    // the restore still knows its session.
    await withClient(database.url, (client) =>
      client.query(`ALTER DATABASE "${database.name}" SET DateStyle = 'SQL, DMY'; ALTER DATABASE "${database.name}" SET TimeZone = 'Asia/Kolkata'`),
    );
    const interrupt = new AbortController();
    const restoring = restoreAsDefault(database, backup, { signal: interrupt.signal }).catch((e: unknown) => e);
    await eventually(async () => (await restoreSessions()).some((session) => session.wait_event === 'PgSleep'), "the backup's function runs");

    interrupt.abort();

    const error = await restoring;
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toBe('restore interrupted before its COMMIT; the database was not changed');
    // The restore's connection that ended the session may take a moment to close its own.
    await eventually(async () => (await restoreSessions()).length === 0, 'no session of the database is left', { timeoutMs: 5_000 });
    expect(await withClient(database.url, async (client) => (await client.query("SELECT pg_catalog.to_regclass('public.seed') AS seed")).rows[0])).toEqual({ seed: null });
  });

  it("a function that turns standard_conforming_strings off while rows load does not change how the next statement is read", async () => {
    const database = await target();
    const backup = await crafted(
      'strings.sql.gz',
      `CREATE FUNCTION public.strings_off(id integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_catalog.set_config('standard_conforming_strings', 'off', false); RETURN true; END $$;
${seededCheck('strings_off')}CREATE FUNCTION public.who() RETURNS text LANGUAGE sql SET search_path = 'x\\', ' SECURITY DEFINER AS $b$ SELECT current_user::text $b$ --' AS $c$ SELECT current_user::text $c$;
`,
    );

    const error = await restoreAsDefault(database, backup).catch((e: unknown) => e);

    // Read as the vetting read it: SECURITY DEFINER was inside a string, and stays there. (No
    // migration defines the function, which is refused for that, as a plain function.)
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).message).toContain(noMigrationDefines('public.who()'));
    expect((error as Error).message).not.toContain('SECURITY DEFINER function public.who()');
  });
});
