import { withClient } from '../db/with-client.js';
import { AppRoleError, ConfigError } from '../errors.js';
import { migrationsTable } from '../migrations/migration-storage.js';
import { scramSha256Verifier } from './scram-verifier.js';

/** The application login role to create or update. */
export interface AppRoleOptions {
  /** The database, connected to as its owner (the role that runs migrations). */
  databaseUrl: string;
  /** `DB_APP_USER`: the role's name (lower-case letters, digits and `_`). */
  user: string;
  /** `DB_APP_PASSWORD`: its password; sent to the server only as a SCRAM-SHA-256 verifier. */
  password: string;
  /** Longest wait for a concurrent set-up or for locks on the tables it grants on (default 60 s). */
  lockTimeoutMs?: number;
}

/** What {@link ensureAppRole} did. */
export interface AppRoleResult {
  /** False when the role existed and was brought up to date (password, grants). */
  created: boolean;
}

// Serialises concurrent db:setup runs: CREATE ROLE has no IF NOT EXISTS.
export const appRoleLockKey = 0x6b77_6170; // 'kwap'

/**
 * The privileges, exactly: whatever the role held before is revoked first, so running it
 * again converges on this set. Rows only (no TRUNCATE, REFERENCES, TRIGGER, MAINTAIN), the
 * sequences behind defaults, the functions, and no CREATE on the schema (also revoked from
 * PUBLIC, which PostgreSQL before 15 granted it), so DROP, TRUNCATE, ALTER and CREATE TABLE
 * are refused. On the database only CONNECT: no CREATE (new schemas) and no TEMPORARY
 * (temporary tables, which no query needs and which let a session fill the disk).
 * PostgreSQL grants TEMPORARY to PUBLIC by default, so revoking it from the role alone would
 * change nothing: it is revoked from PUBLIC, i.e. from every role but the owner (and
 * superusers) in this database. The default privileges give the same rights on tables,
 * sequences and functions that the owner creates later, i.e. in later migrations.
 */
function grantStatements(role: string, database: string, hasMigrationsTable: boolean): string[] {
  return [
    `REVOKE ALL ON DATABASE ${database} FROM ${role}`,
    `REVOKE TEMPORARY ON DATABASE ${database} FROM PUBLIC`,
    `REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${role}`,
    `REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${role}`,
    `REVOKE ALL ON SCHEMA public FROM ${role}`,
    `REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
    `GRANT CONNECT ON DATABASE ${database} TO ${role}`,
    `GRANT USAGE ON SCHEMA public TO ${role}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`,
    // Services may read which migrations ran; only the owner records them.
    ...(hasMigrationsTable ? [`REVOKE INSERT, UPDATE, DELETE ON ${migrationsTable} FROM ${role}`] : []),
    `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
    `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO ${role}`,
  ];
}

// A role name as it can be typed in SQL: bare when that is unambiguous, quoted otherwise.
function sqlName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

interface ExistingRole {
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolcreatedb: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
}

/**
 * Creates (or updates) the least-privileged login role services connect as: it may read and
 * write rows of every table, use the sequences and functions, and nothing more; it cannot
 * create, alter, drop or truncate anything, including tables later migrations add (default
 * privileges of the owner that runs this, who must be the one that runs migrations).
 * Refuses a role that is a superuser, owns objects in the schema or the database, or is a
 * member of a role that does, of a predefined role (`pg_execute_server_program`,
 * `pg_read_all_data`, `pg_signal_backend` … every `pg_*` role) or of a role with attributes
 * (superuser, CREATEROLE …), since it would keep those powers; the error names the
 * membership. Idempotent: rerunning it
 * sets the password again and brings the grants back to exactly this set.
 *
 * @example
 * await ensureAppRole({ databaseUrl: ownerUrl, user: 'kennwilliamson_app', password: process.env.DB_APP_PASSWORD! })
 * // services then connect with postgresql://kennwilliamson_app:…@host/kennwilliamson
 */
export async function ensureAppRole(options: AppRoleOptions): Promise<AppRoleResult> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(options.user)) {
    throw new ConfigError('DB_APP_USER', `DB_APP_USER must be lower-case letters, digits and '_' (at most 63), got '${options.user}'`);
  }
  if (!options.password) throw new ConfigError('DB_APP_PASSWORD', 'DB_APP_PASSWORD must not be empty');

  return withClient(options.databaseUrl, async (client) => {
    const role = client.escapeIdentifier(options.user);
    try {
      await client.query('BEGIN');
      // No wait without an end: a stuck concurrent set-up (or a long transaction on a table
      // being granted on) fails this one with PostgreSQL's lock timeout instead of hanging.
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(options.lockTimeoutMs ?? 60_000))}`);
      await client.query('SELECT pg_advisory_xact_lock($1)', [appRoleLockKey]);
      const { rows: owner } = await client.query<{ current_user: string; database: string }>(
        'SELECT current_user, current_database() AS database',
      );
      if (owner[0]!.current_user === options.user) {
        throw new AppRoleError(options.user, `DB_APP_USER '${options.user}' is the owner connecting to set it up; the application role must be a different role`);
      }
      const { rows: existing } = await client.query<ExistingRole>(
        'SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1',
        [options.user],
      );
      const verifier = client.escapeLiteral(scramSha256Verifier(options.password));
      const found = existing[0];
      if (found?.rolsuper) {
        throw new AppRoleError(options.user, `role '${options.user}' is a superuser, which no grant can restrict; choose another DB_APP_USER`);
      }
      if (!found) {
        await client.query(`CREATE ROLE ${role} LOGIN NOCREATEDB NOCREATEROLE INHERIT PASSWORD ${verifier}`);
      } else {
        // Only name the attributes to take away: changing REPLICATION or BYPASSRLS needs more
        // than CREATEROLE, so a role without them is not touched there.
        const strip = [
          found.rolcreatedb ? 'NOCREATEDB' : '',
          found.rolcreaterole ? 'NOCREATEROLE' : '',
          found.rolreplication ? 'NOREPLICATION' : '',
          found.rolbypassrls ? 'NOBYPASSRLS' : '',
        ].filter(Boolean);
        await client.query(`ALTER ROLE ${role} LOGIN ${strip.join(' ')} PASSWORD ${verifier}`);
      }

      // Owning an object (or belonging to a role that does) carries DROP, ALTER and TRUNCATE.
      const { rows: owning } = await client.query<{ what: string }>(
        `SELECT 'database ' || datname AS what FROM pg_database
           WHERE datname = current_database() AND pg_has_role($1, datdba, 'MEMBER')
         UNION ALL
         SELECT 'schema public' FROM pg_namespace WHERE nspname = 'public' AND pg_has_role($1, nspowner, 'MEMBER')
         UNION ALL
         SELECT 'relation ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND pg_has_role($1, c.relowner, 'MEMBER')
         UNION ALL
         SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_has_role($1, p.proowner, 'MEMBER')
         LIMIT 5`,
        [options.user],
      );
      if (owning.length > 0) {
        throw new AppRoleError(
          options.user,
          `role '${options.user}' owns (or is a member of the owner of) ${owning.map((row) => row.what).join(', ')}; ` +
            'it could drop or alter them, so it cannot be the application role',
        );
      }

      // Membership carries a role's powers (inherited, or through SET ROLE): refuse every
      // predefined role (pg_*, which give server-wide powers: running programs and reading or
      // writing files on the server, reading or writing every table, signalling other
      // sessions, checkpoints, subscriptions to other servers, maintenance locks, reserved
      // connections, other sessions' statements and settings) and any role with attributes.
      // pg_database_owner is the database's owner, refused above.
      const { rows: memberOf } = await client.query<{ rolname: string }>(
        `SELECT r.rolname FROM pg_roles r
          WHERE r.rolname <> $1 AND r.rolname <> 'pg_database_owner' AND pg_has_role($1, r.oid, 'MEMBER')
            AND (r.rolname LIKE 'pg\\_%' OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)
          ORDER BY r.rolname`,
        [options.user],
      );
      if (memberOf.length > 0) {
        const names = memberOf.map((row) => row.rolname);
        throw new AppRoleError(
          options.user,
          `role '${options.user}' is a member of ${names.join(', ')}, which give${names.length === 1 ? 's' : ''} powers beyond rows ` +
            `(predefined roles reach the whole server; the others carry role attributes); revoke the membership ` +
            `(${names.map((name) => `REVOKE ${sqlName(name)} FROM ${options.user}`).join('; ')}) or choose another DB_APP_USER`,
        );
      }

      const { rows: tables } = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [
        `public.${migrationsTable}`,
      ]);
      for (const statement of grantStatements(role, client.escapeIdentifier(owner[0]!.database), tables[0]!.exists)) {
        await client.query(statement);
      }
      await client.query('COMMIT');
      return { created: !found };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (error instanceof AppRoleError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new AppRoleError(options.user, `could not set up the application role '${options.user}': ${message}`, { cause: error });
    }
  });
}
