import { createReadStream, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  acceptedStatementKinds,
  checkBackupStatement,
  loadBackupStatementParser,
  type AcceptedStatementKind,
} from '../../../src/operations/vetting/backup-statement-allow-list.js';
import { sqlScriptParts, vetSqlScript } from '../../../src/operations/vetting/sql-script.js';

// Real pg_dump output of this schema (plus one object of each accepted kind it lacks), made
// by fixtures/pg-dump/make-fixtures.ts: pg_dump 15 and pg_restore 15 (Debian), pg_dump 17.5
// (WebAssembly, pglite-tools 0.3.6) and pg_dump 18.3 (WebAssembly, the pinned pglite-tools).
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'pg-dump');
const dumps = readdirSync(fixtures).filter((file) => file.endsWith('.sql')).sort();

describe('the allow-list accepts what pg_dump writes', () => {
  // Every statement of every dump, by the kind the allow-list accepted it as.
  const examples = new Map<string, Map<AcceptedStatementKind, string[]>>();

  beforeAll(async () => {
    await loadBackupStatementParser();
    for (const dump of dumps) {
      const kinds = new Map<AcceptedStatementKind, string[]>();
      for await (const part of sqlScriptParts(createReadStream(path.join(fixtures, dump)), { database: 'kennwilliamson' })) {
        const verdict = checkBackupStatement(part.text);
        if (!('accepted' in verdict)) throw new Error(`${dump} line ${part.line}: ${verdict.refused}`);
        kinds.set(verdict.accepted, [...(kinds.get(verdict.accepted) ?? []), part.text]);
      }
      examples.set(dump, kinds);
    }
  });

  it('has the output of pg_dump 15, 17 and 18 and of pg_restore 15 to check', () => {
    expect(dumps).toEqual([
      'pg_dump-15-of-15.sql',
      'pg_dump-17.5-of-17.sql',
      'pg_dump-18.3-of-17.sql',
      'pg_dump-18.3-of-18.sql',
      'pg_restore-15-of-15.sql',
    ]);
  });

  it.each(dumps)('accepts the whole of %s, rows included', async (dump) => {
    await expect(vetSqlScript(createReadStream(path.join(fixtures, dump)), { database: 'kennwilliamson' })).resolves.toBe(statSync(path.join(fixtures, dump)).size);
  });

  it.each(acceptedStatementKinds)('accepts %s as every pg_dump writes it', (kind) => {
    for (const dump of dumps) {
      const statements = examples.get(dump)?.get(kind) ?? [];
      expect(statements.length, `${dump} holds no ${kind}`).toBeGreaterThan(0);
      for (const statement of statements) expect(checkBackupStatement(statement)).toMatchObject({ accepted: kind });
    }
  });
});

describe('the allow-list refuses the rest, naming the line', () => {
  const refusal = (sql: string) =>
    vetSqlScript(Readable.from([Buffer.from(`SET statement_timeout = 0;\n${sql}\n`)]), { database: 'kennwilliamson' }).then(
      () => 'accepted',
      (error: Error) => error.message,
    );

  it.each([
    ['DO', "DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id'''; END $$;", 'DO runs code'],
    ['CALL', 'CALL public.cleanup();', 'CALL runs a procedure'],
    ['SELECT of a function', 'SELECT public.run_me();', 'a SELECT other than'],
    ['SELECT of a built-in function', "SELECT pg_catalog.pg_read_file('/etc/passwd');", 'a SELECT other than'],
    ['SELECT set_config of another setting', "SELECT pg_catalog.set_config('role', 'postgres', false);", 'a SELECT other than'],
    ['SELECT setval of a computed sequence', "SELECT pg_catalog.setval(public.f()::regclass, 1, true);", 'a SELECT other than'],
    ['SELECT setval with a FROM', "SELECT pg_catalog.setval('public.s', 1, true) FROM public.users;", 'a SELECT other than'],
    ['COPY TO PROGRAM', "COPY public.users TO PROGRAM 'id';", 'COPY to or from a program runs that program'],
    ['COPY FROM PROGRAM', "COPY public.users FROM PROGRAM 'id';", 'COPY to or from a program runs that program'],
    ['COPY TO a file', "COPY public.users TO '/tmp/users';", "COPY to or from a file reads or writes the database server's files"],
    ['COPY FROM a file', "COPY public.users FROM '/etc/passwd';", "COPY to or from a file reads or writes the database server's files"],
    ['COPY TO stdout', 'COPY public.users TO stdout;', 'only COPY table (columns) FROM stdin'],
    ['COPY of a query', 'COPY (SELECT 1) TO stdout;', 'only COPY table (columns) FROM stdin'],
    ['COPY FROM stdin with WHERE', 'COPY public.users (id) FROM stdin WHERE public.f(id);', 'with options or WHERE'],
    ['SET ROLE', 'SET ROLE postgres;', 'SET ROLE changes the role'],
    ['RESET ROLE', 'RESET ROLE;', 'SET ROLE changes the role'],
    ['SET SESSION AUTHORIZATION', 'SET SESSION AUTHORIZATION postgres;', 'SET SESSION AUTHORIZATION changes the role'],
    ['SET of a setting pg_dump does not write', "SET search_path = public;", 'SET search_path is not one of the settings pg_dump writes'],
    ['SET standard_conforming_strings off', 'SET standard_conforming_strings = off;', "SET standard_conforming_strings to anything but 'on'"],
    ['SET client_encoding other than UTF8', "SET client_encoding = 'SJIS';", 'SET client_encoding to anything but'],
    ['ALTER ROLE', 'ALTER ROLE kennwilliamson_app SUPERUSER;', 'ALTER ROLE changes a role of the whole server'],
    ['ALTER SYSTEM', "ALTER SYSTEM SET archive_command = 'id';", "ALTER SYSTEM changes the server's configuration"],
    ['ALTER DATABASE', "ALTER DATABASE kennwilliamson SET search_path = evil;", 'ALTER DATABASE changes the database itself'],
    ['CREATE ROLE', "CREATE ROLE evil LOGIN SUPERUSER PASSWORD 'x';", 'CREATE ROLE makes a role of the whole server'],
    ['GRANT of a role', 'GRANT pg_execute_server_program TO kennwilliamson_app;', 'role membership'],
    ['CREATE EXTENSION of another extension', 'CREATE EXTENSION IF NOT EXISTS plpython3u;', 'CREATE EXTENSION plpython3u: only the extensions the migrations create'],
    ['CREATE EXTENSION in another schema', 'CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA evil;', 'other than WITH SCHEMA public'],
    ['CREATE SERVER', "CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.example.org');", 'CREATE SERVER reaches other servers'],
    ['CREATE SUBSCRIPTION', "CREATE SUBSCRIPTION s CONNECTION 'host=db.example.org' PUBLICATION p;", 'CREATE SUBSCRIPTION connects to other servers'],
    ['CREATE EVENT TRIGGER', 'CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION public.f();', 'CREATE EVENT TRIGGER runs code'],
    ['a function in C', "CREATE FUNCTION public.f() RETURNS int LANGUAGE c AS '/tmp/evil.so', 'f';", 'a function in language c'],
    ['a function in an untrusted language', "CREATE FUNCTION public.f() RETURNS int LANGUAGE plpython3u AS $$ import os $$;", 'a function in language plpython3u'],
    ['a SECURITY DEFINER function', 'CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;', 'SECURITY DEFINER makes a function run'],
    ['a function replaced', 'CREATE OR REPLACE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;', 'CREATE OR REPLACE of a function is not what pg_dump writes'],
    ['a function outside public', 'CREATE FUNCTION pg_catalog.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;', 'outside the public schema'],
    // Each SET clause is checked, not only the last one.
    [
      'a function that sets a bound before its search_path',
      "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SET lock_timeout = 0 SET search_path = '' AS $$ SELECT 1 $$;",
      'a function that sets lock_timeout when called is not part of this schema',
    ],
    ['ALTER TABLE … OWNER TO', 'ALTER TABLE public.users OWNER TO evil;', 'ALTER … OWNER TO hands objects to another role'],
    ['ALTER FUNCTION … OWNER TO', 'ALTER FUNCTION public.f() OWNER TO evil;', 'ALTER … OWNER TO hands objects to another role'],
    ['transaction control', 'COMMIT;', "transaction control would end the restore's one transaction"],
    ['a GRANT on a built-in function', 'GRANT ALL ON FUNCTION pg_catalog.pg_read_file(text) TO kennwilliamson_app;', 'outside the public schema'],
    ['a table outside public', 'CREATE TABLE pg_temp.t (id int);', 'CREATE TABLE outside the public schema'],
    ['INSERT', 'INSERT INTO public.users (email) VALUES (public.f());', 'INSERT can call any function'],
    ['CREATE TABLE AS', 'CREATE TABLE public.t AS SELECT public.f();', 'CREATE TABLE AS and CREATE MATERIALIZED VIEW run a query'],
    ['LOAD', "LOAD '/tmp/evil.so';", 'LOAD loads a shared library'],
    ['CREATE INDEX CONCURRENTLY', 'CREATE INDEX CONCURRENTLY users_email ON public.users (email);', "CREATE INDEX CONCURRENTLY is not what pg_dump writes, and cannot run in the restore's one transaction"],
  ])('refuses %s', async (_kind, sql, message) => {
    const result = await refusal(sql);
    expect(result).toContain(message);
    expect(result).toMatch(/^line 2 of the backup's SQL: /);
  });
});

describe('the allow-list grants only to the owner and the application role', () => {
  const grantees = { owner: 'kw_owner', applicationRoles: ['kw_app'] };
  const refusal = (sql: string, options: { grantees?: typeof grantees & { setsDefaultPrivileges?: boolean } } = { grantees }) =>
    // After the statement, one that makes something: a script of only what a restore leaves
    // out makes nothing, and is refused as such.
    vetSqlScript(Readable.from([Buffer.from(`SET statement_timeout = 0;\n${sql}\nCREATE TABLE public.made (id integer);\n`)]), { database: 'kennwilliamson', ...options }).then(
      () => 'accepted',
      (error: Error) => error.message,
    );

  beforeAll(() => loadBackupStatementParser());

  it.each(dumps)('accepts every grant of %s, given the owner and the application role it was made with', async (dump) => {
    const made = { owner: 'postgres', applicationRoles: ['kennwilliamson_app'] };
    await expect(vetSqlScript(createReadStream(path.join(fixtures, dump)), { database: 'kennwilliamson', grantees: made })).resolves.toBe(statSync(path.join(fixtures, dump)).size);
  });

  it.each([
    ['SELECT on a table to PUBLIC', 'GRANT SELECT ON TABLE public.users TO PUBLIC;', 'GRANT of SELECT on table to PUBLIC would give every role of the database server'],
    ['CREATE on public to PUBLIC', 'GRANT CREATE ON SCHEMA public TO PUBLIC;', 'GRANT of CREATE on schema to PUBLIC would give every role'],
    ['ALL on a function to PUBLIC', 'GRANT ALL ON FUNCTION public.f() TO PUBLIC;', 'GRANT of ALL on function to PUBLIC would give every role'],
    ['default privileges to PUBLIC', 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC;', 'ALTER DEFAULT PRIVILEGES … GRANT of SELECT on table to PUBLIC'],
    ['a grant to a predefined role', 'GRANT SELECT ON TABLE public.users TO pg_read_all_data;', "to the predefined role 'pg_read_all_data'"],
    ['a grant with grant option', 'GRANT SELECT ON TABLE public.users TO kw_app WITH GRANT OPTION;', "GRANT of SELECT on table to 'kw_app' WITH GRANT OPTION"],
    ['a grant to the role restoring, by CURRENT_USER', 'GRANT SELECT ON TABLE public.users TO CURRENT_USER;', 'CURRENT_USER, SESSION_USER or CURRENT_ROLE'],
    ['a grant to another role', 'GRANT SELECT ON TABLE public.users TO reporting;', "GRANT of SELECT on table to 'reporting', which is neither the database's owner 'kw_owner'"],
    ['a column grant to another role', 'GRANT SELECT(password_hash) ON TABLE public.users TO reporting;', "GRANT of SELECT on table to 'reporting', which is neither"],
    ['default privileges to another role', 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reporting;', "ALTER DEFAULT PRIVILEGES … GRANT of SELECT on table to 'reporting', which is neither"],
    ['default privileges of another role', 'ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO kw_app;', "ALTER DEFAULT PRIVILEGES FOR ROLE 'postgres' would set the default privileges of a role other than the database's owner 'kw_owner'"],
    ['TRUNCATE to the application role', 'GRANT TRUNCATE ON TABLE public.users TO kw_app;', "GRANT of TRUNCATE on table to the application role 'kw_app' goes beyond what the release step grants it (SELECT, INSERT, UPDATE, DELETE on a table)"],
    ['ALL on a table to the application role', 'GRANT ALL ON TABLE public.users TO kw_app;', "GRANT of ALL on table to the application role 'kw_app' goes beyond"],
    ['CREATE on public to the application role', 'GRANT CREATE ON SCHEMA public TO kw_app;', "GRANT of CREATE on schema to the application role 'kw_app' goes beyond"],
    ['writing the migrations record to the application role', 'GRANT INSERT ON TABLE public.schema_migrations TO kw_app;', "goes beyond what the release step grants it (SELECT on the migrations record)"],
  ])('refuses %s, naming the statement and the grantee', async (_kind, sql, message) => {
    const result = await refusal(sql);
    expect(result).toMatch(/^line 2 of the backup's SQL: /);
    expect(result).toContain(message);
  });

  it('refuses grants to PUBLIC and predefined roles even when it does not know the roles (at backup time)', async () => {
    expect(await refusal('GRANT SELECT ON TABLE public.users TO PUBLIC;', {})).toContain('to PUBLIC would give every role');
    expect(await refusal('GRANT SELECT ON TABLE public.users TO pg_read_all_data;', {})).toContain("the predefined role 'pg_read_all_data'");
    expect(await refusal('GRANT SELECT ON TABLE public.users TO reporting;', {})).toBe('accepted');
  });

  it("accepts another role's default privileges, and grants to another role by name, for the restore to leave out where it sets the application role's itself (DB_APP_USER)", async () => {
    const leavesOut = { grantees: { ...grantees, setsDefaultPrivileges: true } };
    const sql = 'ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO kw_app;';
    expect(await refusal(sql, leavesOut)).toBe('accepted');
    expect(await refusal(sql.replace('kw_app', 'reporting'), leavesOut)).toBe('accepted');
    expect(await refusal('GRANT SELECT ON TABLE public.users TO kw_prod_app;', leavesOut)).toBe('accepted');
    expect(await refusal('GRANT SELECT ON TABLE public.users TO kw_prod_app;', { grantees })).toContain("to 'kw_prod_app', which is neither");
    // Never PUBLIC, a predefined role or a grant option, whoever the restore leaves out.
    expect(await refusal('GRANT SELECT ON TABLE public.users TO PUBLIC;', leavesOut)).toContain('to PUBLIC would give every role');
    expect(await refusal('GRANT SELECT ON TABLE public.users TO pg_monitor;', leavesOut)).toContain("the predefined role 'pg_monitor'");
    expect(await refusal('GRANT SELECT ON TABLE public.users TO kw_prod_app WITH GRANT OPTION;', leavesOut)).toContain('WITH GRANT OPTION');
  });

  it.each([
    ['USAGE on public to PUBLIC, as PostgreSQL grants it', 'GRANT USAGE ON SCHEMA public TO PUBLIC;'],
    ['anything to the owner', 'GRANT ALL ON TABLE public.users TO kw_owner;'],
    ["the release step's grants to the application role", 'GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.users TO kw_app;'],
    ['sequences to the application role', 'GRANT SELECT,USAGE ON SEQUENCE public.phrases_draw_no_seq TO kw_app;'],
    ['functions to the application role', 'GRANT ALL ON FUNCTION public.f() TO kw_app;'],
    ['reading the migrations record to the application role', 'GRANT SELECT ON TABLE public.schema_migrations TO kw_app;'],
    ["the owner's default privileges for the application role", 'ALTER DEFAULT PRIVILEGES FOR ROLE kw_owner IN SCHEMA public GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES TO kw_app;'],
    ['a REVOKE from anyone, which only takes away', 'REVOKE ALL ON TABLE public.users FROM reporting;'],
    ['a REVOKE from PUBLIC', 'REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;'],
  ])('accepts %s', async (_kind, sql) => {
    expect(await refusal(sql)).toBe('accepted');
  });
});
