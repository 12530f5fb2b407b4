import type * as pg from 'pg';
import { answeredWithin, answeringWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { databaseTarget } from '../db/database-target.js';
import { requireDirectConnection } from '../db/direct-connection.js';
import { loadStatementBounds, type StatementBounds } from '../db/db-config.js';
import { silentClientBoundsLocal } from '../db/silent-client-bounds.js';
import { withClient } from '../db/with-client.js';
import { AppRoleError, ConfigError } from '../errors.js';
import { migrationUrlName } from '../migrations/migration-settings.js';
import { migrationsTable, qualifiedMigrationsTable } from '../migrations/migration-storage.js';
import { adminUrlVariable } from './admin-database-url.js';
import { applicationPrivileges } from './application-privileges.js';
import { newTableGrantees } from './new-table-grantees.js';
import { ensureLoginRole, type LoginRoleChange, sharedRoleRefusal } from './login-role.js';
import { describePowers, roleAttributes, rolePowers } from './role-powers.js';
import { setRoleStatementBounds } from './role-bounds.js';
import { optionMs } from '../db/option-ms.js';

/** The application login role whose grants to bring back to exactly the set below. */
export interface AppRoleOptions {
  /** The database, connected to as its owner (the role that runs migrations). */
  databaseUrl: string;
  /** `DB_APP_USER`: the role's name (lower-case letters, digits and `_`); `setup --admin` creates it. */
  user: string;
  /** Longest wait for a concurrent set-up or for locks on the tables it grants on (default 60 s). */
  lockTimeoutMs?: number | undefined;
  /**
   * `false`: checks the role as the grant would (it exists, has no powers, owns nothing) and
   * grants nothing, for a database about to be dropped (a reset's check before the drop): a
   * grant there stayed whenever the drop did not happen. Its other application role, which
   * goes with it, is no reason to refuse. Default `true`.
   */
  grant?: boolean | undefined;
}

/** What {@link provisionAppRole} did to the role itself. */
export type AppRoleChange = LoginRoleChange;

// Serialises concurrent db:setup runs: CREATE ROLE has no IF NOT EXISTS.
export const appRoleLockKey = 0x6b77_6170; // 'kwap'

// How long the admin's step waits for another's hold of that lock.
const appRoleLockWaitMs = 60_000;

/**
 * The privileges, exactly ({@link applicationPrivileges}): whatever the role held before is
 * revoked first, so running it again converges on this set. Rows only (no TRUNCATE,
 * REFERENCES, TRIGGER, MAINTAIN), the sequences behind defaults, the functions, and no
 * CREATE on the schema (also revoked from PUBLIC, which PostgreSQL before 15 granted it), so
 * DROP, TRUNCATE, ALTER and CREATE TABLE are refused. On the database only CONNECT: no
 * CREATE (new schemas) and no TEMPORARY (temporary tables, which no query needs and which
 * let a session fill the disk). PostgreSQL grants TEMPORARY to PUBLIC by default, so
 * revoking it from the role alone would change nothing: it is revoked from PUBLIC, i.e. from
 * every role but the owner (and superusers) in this database. The default privileges give
 * the same rights on tables, sequences and functions that the owner creates later, i.e. in
 * later migrations. `role` and `database` are quoted identifiers.
 */
function appRoleGrantStatements(role: string, database: string, hasMigrationsTable: boolean): string[] {
  const { schema, tables, migrationsRecord, sequences, routines } = applicationPrivileges;
  const list = (privileges: readonly string[]) => privileges.join(', ');
  const recordRevoked = tables.filter((privilege) => !migrationsRecord.includes(privilege));
  return [
    `REVOKE ALL ON DATABASE ${database} FROM ${role}`,
    `REVOKE TEMPORARY ON DATABASE ${database} FROM PUBLIC`,
    `REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${role}`,
    `REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${role}`,
    `REVOKE ALL ON SCHEMA public FROM ${role}`,
    `REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
    `GRANT CONNECT ON DATABASE ${database} TO ${role}`,
    `GRANT ${list(schema)} ON SCHEMA public TO ${role}`,
    `GRANT ${list(tables)} ON ALL TABLES IN SCHEMA public TO ${role}`,
    // Services may read which migrations ran; only the owner records them.
    ...(hasMigrationsTable && recordRevoked.length > 0 ? [`REVOKE ${list(recordRevoked)} ON ${qualifiedMigrationsTable} FROM ${role}`] : []),
    `GRANT ${list(sequences)} ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
    `GRANT ${list(routines)} ON ALL FUNCTIONS IN SCHEMA public TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ${list(tables)} ON TABLES TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ${list(sequences)} ON SEQUENCES TO ${role}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ${list(routines)} ON FUNCTIONS TO ${role}`,
  ];
}

/**
 * Gives `user` exactly the application role's privileges in `database` (see
 * appRoleGrantStatements), on `client`, in whatever transaction it has open: the release
 * step's, or a restore's.
 *
 * @example await grantAppRole(client, 'kennwilliamson_app', 'kennwilliamson')
 */
export async function grantAppRole(client: pg.ClientBase, user: string, database: string): Promise<void> {
  const { rows } = await client.query<{ exists: boolean }>('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS exists', [`public.${migrationsTable}`]);
  for (const statement of appRoleGrantStatements(client.escapeIdentifier(user), client.escapeIdentifier(database), rows[0]!.exists)) {
    await client.query(statement);
  }
  // Views only read: `ON ALL TABLES` granted writes on them too, and a view writes with its
  // owner's rights (security_invoker is off by default): a view over the migrations record,
  // which a restored backup may bring, would let the services write it.
  const { rows: views } = await client.query<{ name: string }>(
    `SELECT pg_catalog.format('public.%I', c.relname) AS name FROM pg_catalog.pg_class c
      WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1`,
  );
  if (views.length > 0) {
    await client.query(`REVOKE INSERT, UPDATE, DELETE ON ${views.map((view) => view.name).join(', ')} FROM ${client.escapeIdentifier(user)}`);
  }
}

const superuserAppRole = (user: string) =>
  new AppRoleError(user, `role '${user}' is a superuser, which no grant can restrict; choose another DB_APP_USER`);

/** Refuses a role name that is not lower-case letters, digits and `_`, naming the variable it came from. */
export function requireRoleName(variable: string, name: string): void {
  if (name === '') throw new ConfigError(variable, `${variable} is not set: it names the role`);
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name) || name.startsWith('pg_')) {
    throw new ConfigError(variable, `${variable} must be lower-case letters, digits and '_' (at most 63, not starting with pg_), got '${name}'`);
  }
}

/**
 * The admin's half of the application role (`setup --admin`, as a superuser or a role with
 * CREATEROLE): creates it as a plain login role with the password, or, when it exists, takes
 * away attributes it must not have and sets the password only when it changed, keeping its
 * verifier otherwise (`ensureLoginRole`, as for the owner). Its sessions in this database
 * start with the statement bounds (`statementBounds`, default `DB_STATEMENT_TIMEOUT`,
 * `DB_LOCK_TIMEOUT`, `DB_IDLE_IN_TRANSACTION_TIMEOUT` as the pool reads them): what holds behind
 * a transaction-mode pooler, which refuses the pool's own startup parameters; setting a role's
 * defaults needs the admin's CREATEROLE, which the owner lacks. Grants are
 * {@link ensureAppRole}'s, which the owner runs.
 *
 * @example await provisionAppRole({ adminUrl, user: 'kennwilliamson_app', password }) // 'unchanged' the second time
 */
export async function provisionAppRole(options: {
  adminUrl: string;
  user: string;
  password: string;
  statementBounds?: StatementBounds | undefined;
  /** Told each of the role's bounds in the database that this changes. */
  log?: ((line: string) => void) | undefined;
  /** Lets the password change although the role serves other databases of the server too (see `provisionDatabase`). */
  sharedRoles?: boolean | undefined;
}): Promise<AppRoleChange> {
  const { adminUrl, user, password } = options;
  requireRoleName('DB_APP_USER', user);
  if (!password) throw new ConfigError('DB_APP_PASSWORD', 'DB_APP_PASSWORD must not be empty');
  const bounds = options.statementBounds ?? loadStatementBounds();
  const { change, changedBounds } = await inAppRoleTransaction(adminUrl, user, 'create or update the application role', async (client, database) => {
    // Before the role is made (as the admin: the database owner's default privileges): the
    // release step would refuse it, and leave it behind.
    await requireSoleApplicationRole(client, undefined, user);
    const refuseShared = options.sharedRoles === true ? undefined : sharedRoleRefusal(user, 'DB_APP_PASSWORD', 'DB_APP_USER');
    const change = await ensureLoginRole(client, adminUrl, { user, password }, () => superuserAppRole(user), refuseShared);
    return { change, changedBounds: await setRoleStatementBounds(client, user, database, bounds) };
  });
  // Said once committed: a failure after them would have taken them back.
  for (const line of changedBounds) options.log?.(line);
  return change;
}

/**
 * The admin's half of the application role without its password: writes the role's bounds in
 * this database again (the statement bounds and TCP keepalive, as {@link provisionAppRole}
 * does), for a database recreated without them (`db:reset`). The role must exist.
 *
 * @example await writeAppRoleBounds({ adminUrl, user: 'kennwilliamson_app', statementBounds: loadStatementBounds() })
 */
export async function writeAppRoleBounds(options: { adminUrl: string; user: string; statementBounds: StatementBounds; log?: ((line: string) => void) | undefined }): Promise<void> {
  requireRoleName('DB_APP_USER', options.user);
  const changedBounds = await inAppRoleTransaction(options.adminUrl, options.user, "write the application role's bounds for", (client, database) =>
    setRoleStatementBounds(client, options.user, database, options.statementBounds),
  );
  for (const line of changedBounds) options.log?.(line);
}

/** Refuses an application role that is the owner role itself, naming both variables. */
export function requireAppRoleApart(appUser: string | undefined, ownerUser: string): void {
  if (appUser === ownerUser) {
    throw new ConfigError('DB_APP_USER', `DB_APP_USER and DB_OWNER_USER are both '${ownerUser}'; the application role must be another role than the owner`);
  }
}

// One transaction of the admin on the application role, serialised with concurrent set-ups,
// all or nothing; `work` gets the database it runs in.
async function inAppRoleTransaction<T>(
  adminUrl: string,
  user: string,
  doing: string,
  work: (client: pg.Client, database: string) => Promise<T>,
): Promise<T> {
  // As provisionDatabase: a URL that names no database would set the role's bounds in the
  // one the login lands in (the admin's own, `postgres`), and through a pooler they would be
  // written where the services' sessions never read them.
  databaseTarget(adminUrl, process.env, adminUrlVariable);
  return withClient(
    adminUrl,
    async (connection) => {
      await requireDirectConnection(connection, { operation: 'setup', variable: adminUrlVariable });
      // Short statements, or a wait for a lock under lock_timeout: each answered within it and
      // a round trip, or the connection is closed (a server that stopped answering).
      const client = answeringWithin(connection, appRoleLockWaitMs + roundTripDeadlineMs);
      try {
        // As the admin (a superuser, or CREATEROLE) in a database whose public schema the
        // owner, and any backup restored as it, may fill: every name resolves in pg_catalog
        // only, so no function or operator planted in public runs with the admin's powers
        // (a public.pg_advisory_xact_lock(text) outranked pg_catalog's for the untyped key).
        // A host that goes silent is ended by the server within about 10 s; an answer that a
        // silent network never brings ends the call at its deadline.
        // BEGIN does no work: a round trip's deadline, on the connection itself (the client's
        // own deadline, for statements that wait for a lock, is longer).
        await answeredWithin(connection, roundTripDeadlineMs, 'BEGIN and its settings', () =>
          connection.query(`BEGIN; ${silentClientBoundsLocal} SET LOCAL search_path = pg_catalog; SET LOCAL lock_timeout = ${appRoleLockWaitMs}`),
        );
        await client.query('SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)', [appRoleLockKey]);
        const { rows } = await client.query<{ database: string }>('SELECT current_database() AS database');
        const result = await work(client, rows[0]!.database);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await answeredWithin(connection, roundTripDeadlineMs, 'ROLLBACK', () => connection.query('ROLLBACK')).catch(() => undefined);
        if (error instanceof AppRoleError) throw error;
        const message = error instanceof Error ? error.message : String(error);
        const createRole = (error as { code?: string }).code === '42501' ? ' (creating or altering a role needs CREATEROLE, or a superuser)' : '';
        throw new AppRoleError(user, `could not ${doing} '${user}': ${message}${createRole}`, { cause: error });
      }
    },
    'kennwilliamson-setup',
  );
}

// The owner's default privileges give every table a later migration creates to the application
// role the release step set up before: granting a second one as well (a release.env copied from
// another service beside this one) would give it every row, the password hashes included,
// without a word. Moving to a new role is a step of its own.
async function requireSoleApplicationRole(client: pg.ClientBase, owner: string | undefined, user: string): Promise<void> {
  const others = (await newTableGrantees(client, owner)).applicationRoles.filter((role) => role !== user);
  if (others.length === 0) return;
  const named = others.map((role) => `'${role}'`).join(', ');
  const old = client.escapeIdentifier(others[0]!);
  throw new AppRoleError(
    user,
    `the owner's default privileges in public already give ${named} the rows of every new table: ${others.length === 1 ? 'that is' : 'those are'} ` +
      `this database's application role${others.length === 1 ? '' : 's'}, and granting '${user}' as well would let a second role read and write ` +
      "every table (a DB_APP_USER from another service?). Set DB_APP_USER to it; to move to a new role, first take the old one's away as the owner " +
      `(ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM ${old}; the same ON SEQUENCES and ON FUNCTIONS; ` +
      `REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${old}; the same ON ALL SEQUENCES and ON ALL FUNCTIONS)`,
  );
}

/**
 * The release step's half of the application role (run as the owner, who needs no
 * CREATEROLE for it): brings its grants back to exactly this set. It may read and write rows
 * of every table, use the sequences and functions, and nothing more; it cannot create,
 * alter, drop or truncate anything, including tables later migrations add (default
 * privileges of the owner that runs this, who must be the one that runs migrations).
 * It creates no role and never touches a password: the role must exist (`setup --admin`
 * creates it, see {@link provisionAppRole}). Refuses a role that is a superuser, owns
 * objects in the schema or the database, or is a member of a role that does, of a
 * predefined role (`pg_execute_server_program`, `pg_read_all_data`, `pg_signal_backend` …
 * every `pg_*` role) or of a role with attributes (superuser, CREATEROLE …), since it would
 * keep those powers; the error names the membership. Idempotent.
 *
 * @example
 * await ensureAppRole({ databaseUrl: ownerUrl, user: 'kennwilliamson_app' })
 * // services then connect with postgresql://kennwilliamson_app:…@host/kennwilliamson
 */
export async function ensureAppRole(options: AppRoleOptions): Promise<void> {
  requireRoleName('DB_APP_USER', options.user);
  const variable = migrationUrlName(options.databaseUrl);
  databaseTarget(options.databaseUrl, process.env, variable);

  const lockTimeoutMs = optionMs('lockTimeoutMs', options.lockTimeoutMs ?? 60_000);
  return withClient(options.databaseUrl, async (connection) => {
    await requireDirectConnection(connection, { operation: 'setup', variable });
    // Short statements, or a wait for a lock under lock_timeout: each answered within it and a
    // round trip, or the connection is closed (a server that stopped answering).
    const client = answeringWithin(connection, lockTimeoutMs + roundTripDeadlineMs);
    try {
      await client.query('BEGIN');
      // No wait without an end: a stuck concurrent set-up (or a long transaction on a table
      // being granted on) fails this one with PostgreSQL's lock timeout instead of hanging.
      await client.query(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
      // Names resolve in pg_catalog only: a release step run as a superuser (a DATABASE_URL
      // that is one) would otherwise run with its powers what a restored backup planted in
      // public (a public.pg_has_role(text, oid, text) outranks pg_catalog's for an untyped name).
      await client.query('SET LOCAL search_path = pg_catalog');
      await client.query('SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)', [appRoleLockKey]);
      const { rows: owner } = await client.query<{ current_user: string; database: string }>(
        'SELECT current_user, current_database() AS database',
      );
      if (owner[0]!.current_user === options.user) {
        throw new AppRoleError(options.user, `DB_APP_USER '${options.user}' is the owner connecting to set it up; the application role must be a different role`);
      }
      const attributes = await roleAttributes(client, options.user);
      if (attributes === undefined) {
        throw new AppRoleError(
          options.user,
          `role '${options.user}' does not exist; the release step creates no role and sets no password: ` +
            'create it once with kennwilliamson-db setup --admin (ADMIN_DATABASE_URL, DB_APP_USER, DB_APP_PASSWORD)',
        );
      }
      if (attributes.powerful.includes('SUPERUSER')) throw superuserAppRole(options.user);

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

      // Powers beyond rows, its own or through membership (inherited, or by SET ROLE): every
      // predefined role (running programs and reading or writing files on the server, reading
      // or writing every table, signalling other sessions, subscriptions to other servers …)
      // and any role with attributes. The same check as for the role that restores a backup.
      // pg_database_owner is the database's owner, refused above.
      const powers = await rolePowers(client, options.user);
      if (powers.length > 0) {
        const names = powers.map((power) => power.carrier);
        throw new AppRoleError(
          options.user,
          `role '${options.user}' ${describePowers(powers)}: ` +
            `${names.length === 1 ? 'that gives' : 'those give'} powers beyond rows (predefined roles reach the whole server; ` +
            `the others carry role attributes); take ${names.length === 1 ? 'it' : 'them'} away ` +
            `(${powers.map((power) => power.fix).join('; ')}) or choose another DB_APP_USER`,
        );
      }

      if (options.grant === false) {
        await client.query('ROLLBACK');
        return;
      }
      await requireSoleApplicationRole(client, owner[0]!.current_user, options.user);
      await grantAppRole(client, options.user, owner[0]!.database);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (error instanceof AppRoleError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new AppRoleError(options.user, `could not set up the application role '${options.user}': ${message}`, { cause: error });
    }
  }, 'kennwilliamson-setup');
}
