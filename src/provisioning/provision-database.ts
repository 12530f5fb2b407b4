import type pg from 'pg';
import { answeringWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { databaseTarget } from '../db/database-target.js';
import { requireDirectDatabase } from '../db/direct-connection.js';
import { silentClientBoundsLocal } from '../db/silent-client-bounds.js';
import { withClient } from '../db/with-client.js';
import { ConfigError, ProvisioningError } from '../errors.js';
import { adminUrlVariable } from './admin-database-url.js';
import { requireRoleName } from './app-role.js';
import { ensureDatabase } from './database-admin.js';
import { ensureLoginRole, type LoginRoleChange, sharedRoleRefusal } from './login-role.js';
import { defaultLockWait, withLockRetries } from '../migrations/lock-retries.js';
import { migrationsTable } from '../migrations/migration-storage.js';
import { adminLockRetries, type AdminLockWait } from './admin-lock-wait.js';
import { describePowers, powerFixes, rolePowers } from './role-powers.js';

/** A login role and its password, as `DB_OWNER_USER`/`DB_OWNER_PASSWORD` or `DB_APP_USER`/`DB_APP_PASSWORD` give them. */
export interface RoleCredentials {
  user: string;
  password: string;
}

/** What the one-time admin step provisions; `lockTimeoutMs` bounds the wait for a concurrent set-up or for locks on the objects handed over. */
export interface ProvisionOptions extends AdminLockWait {
  /** An admin's direct URL (a superuser, or a role with CREATEDB and CREATEROLE), naming the database to provision. */
  adminUrl: string;
  /** The database's owner: the role migrations and restores run as (not a superuser, no CREATEROLE). */
  owner: RoleCredentials;
  /** Receives one line per change made. */
  log?: ((line: string) => void) | undefined;
  /**
   * Lets the owner's password change although the owner role serves other databases of the
   * server too (owns one, has settings or privileges on one): a role's password is the
   * server's. Without it, such a change is refused, naming them.
   */
  sharedRoles?: boolean | undefined;
}

/** What {@link provisionDatabase} did. */
export interface ProvisionResult {
  databaseCreated: boolean;
  owner: LoginRoleChange;
  /** Objects in `public` that another role owned and that now belong to the owner (`TABLE public.users` …). */
  handedOver: string[];
  /** Extensions that only a superuser may create, created here so that migrations need not. */
  extensionsCreated: string[];
}

// Serialises concurrent admin steps: CREATE ROLE has no IF NOT EXISTS.
export const provisionLockKey = 0x6b77_7076; // 'kwpv'

/**
 * Extensions the migrations use that are not trusted (only a superuser may create them):
 * created by {@link provisionDatabase}, before migrations run as the owner, where the server
 * has them. A restore keeps them (see `clearPublicSchema`).
 */
export const superuserExtensions: readonly string[] = ['pg_uuidv7'];

/**
 * Refuses owner credentials that {@link provisionDatabase} would refuse, without connecting:
 * for a command that must check them before it asks or destroys anything (`db:reset --admin`).
 *
 * @example requireOwnerCredentials({ user: process.env.DB_OWNER_USER ?? '', password: process.env.DB_OWNER_PASSWORD ?? '' })
 */
export function requireOwnerCredentials(owner: RoleCredentials): void {
  if (typeof owner !== 'object' || owner === null) throw new ConfigError('DB_OWNER_USER', 'the owner role (owner: { user, password }) is missing');
  requireRoleName('DB_OWNER_USER', owner.user);
  if (!owner.password) throw new ConfigError('DB_OWNER_PASSWORD', 'DB_OWNER_PASSWORD must not be empty');
}

/**
 * The one-time admin step (`kennwilliamson-db setup --admin`): run with an admin's URL, it
 * creates the database if missing and the owner role with its password, and makes the owner the owner of the database, of the `public` schema (through
 * `pg_database_owner`, as PostgreSQL 15 creates it) and of every
 * object in it, so that migrations and restores run as that role and never as a superuser.
 * A backup's SQL then runs with powers that end at the database: no program, file or role
 * on the server is within its reach.
 *
 * - The owner is a plain login role: not a superuser, no CREATEROLE, CREATEDB, REPLICATION
 *   or BYPASSRLS, and a member of no role that runs programs or touches the server's files.
 *   An existing role with such attributes has them taken away; one that is a superuser or a
 *   member of such a role is refused, naming the REVOKE that fixes it.
 * - Objects in `public` owned by another role (an installation that migrated as a superuser)
 *   are handed over with `ALTER … OWNER TO`, one by one (`REASSIGN OWNED` cannot move a
 *   bootstrap superuser's objects); extension members stay the extension's.
 * - Extensions only a superuser may create (pg_uuidv7, where the server has it) are created
 *   here; trusted ones (pg_trgm) the owner's migrations create. A restore keeps them as they
 *   are. One is left out, saying so, where the database already defines its functions itself
 *   (migrated, or restored from a backup made, where the server lacked it).
 * - A password is written only when it changed: the stored SCRAM verifier is checked against
 *   it with its own salt, so running this again keeps verifiers (and a PgBouncer auth_file).
 * Idempotent, safe to run again and from several machines at once.
 *
 * @example
 * await provisionDatabase({ adminUrl, owner: { user: 'kennwilliamson', password } })
 * await migrate({ databaseUrl: databaseUrlAs(adminUrl, 'kennwilliamson', password) })
 */
export async function provisionDatabase(options: ProvisionOptions): Promise<ProvisionResult> {
  const log = options.log ?? (() => undefined);
  requireOwnerCredentials(options.owner);
  const { database } = databaseTarget(options.adminUrl, process.env, adminUrlVariable);
  // Before it creates the database: the role's settings and the hand-over would otherwise be
  // done on whatever server connection the pooler lent, and the next client would inherit them.
  await requireDirectDatabase(options.adminUrl, { operation: 'setup', variable: adminUrlVariable, applicationName: 'kennwilliamson-setup', missingPasses: true });

  const databaseCreated = await ensureDatabase(options.adminUrl, { variable: adminUrlVariable });
  if (databaseCreated) log(`created the database '${database}'`);

  // Each attempt is one transaction that waits for each lock briefly, as a migration's do
  // (withLockRetries: 100 ms first, doubling up to 1 s): handing objects over takes ACCESS
  // EXCLUSIVE on each and keeps it until COMMIT, so one wait behind a long reader of a later
  // table would hold every earlier one for its length, and the services' queries on them would
  // fail (DB_LOCK_TIMEOUT, 2 s). An attempt that runs out rolls back, letting the traffic
  // through, is reported with who blocked it, and the next tries again, until the whole budget
  // (lockTimeoutMs) is spent. What it did is said once it committed.
  // Loaded here, not with the commands that import this module: it reads blockers' queries
  // with PostgreSQL's parser, which starting a command must not load.
  const { blockerMonitor } = await import('../migrations/lock-blockers.js');
  const monitor = blockerMonitor(options.adminUrl, 'kennwilliamson-setup-monitor');
  try {
    return await withClient(
      options.adminUrl,
      async (connection) => {
        // Each statement here is short, or waits for a lock no longer than its attempt (a
        // second at most): a server that stops answering (frozen, or behind a path that stalls
        // while its kernel acknowledges) fails it at a deadline, on the first attempt too,
        // which nothing watches yet.
        const client = answeringWithin(connection, defaultLockWait.attemptMs + roundTripDeadlineMs);
        const { rows } = await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid');
        return withLockRetries(
          adminLockRetries(options, monitor, { verb: 'provision', doing: 'provisioning', database, nothingWas: 'changed' }, client),
          async ({ lockTimeoutMs, watch }) => {
            watch(rows[0]!.pid);
            const said: string[] = [];
            const result = await provisionInTransaction(client, options, database, databaseCreated, lockTimeoutMs, (line) => void said.push(line));
            for (const line of said) log(line);
            return result;
          },
        );
      },
      'kennwilliamson-setup',
    );
  } finally {
    await monitor.close();
  }
}

// One attempt: the whole set-up in one transaction under `lockTimeoutMs`, rolled back on any
// error (a lock wait's 55P03 stays as it is, for withLockRetries to try again).
async function provisionInTransaction(
  client: pg.Client,
  options: ProvisionOptions,
  database: string,
  databaseCreated: boolean,
  lockTimeoutMs: number,
  say: (line: string) => void,
): Promise<ProvisionResult> {
  try {
    // Names in messages and statements are schema-qualified whatever the admin's search_path.
    // A host that goes silent is ended by the server within about 10 s, rather than holding
    // the locks taken here (ACCESS EXCLUSIVE on what is handed over) for the system's two hours.
    // The client answers within its deadline (answeringWithin), each statement here included.
    await client.query(`BEGIN; ${silentClientBoundsLocal} SET LOCAL lock_timeout = ${lockTimeoutMs}; SET LOCAL search_path = pg_catalog`);
    await client.query('SELECT pg_advisory_xact_lock($1)', [provisionLockKey]);
    const admin = await requireAdmin(client, database);

    const owner = await provisionOwner(client, options.owner, options.adminUrl, options.sharedRoles === true);
    // (In this transaction: what provisionOwner did is rolled back with the refusal.)
    await requireRecordOwner(client, options.owner.user);
    if (owner !== 'unchanged') say(`${owner === 'created' ? 'created' : 'set the password of'} the owner role '${options.owner.user}'`);
    let lentMembership = false;
    if (!admin.superuser) {
      const granted = await mayGiveTo(client, admin.name, options.owner.user);
      if (granted === 'set') say(`granted '${admin.name}' SET on '${options.owner.user}' (without INHERIT), which PostgreSQL 16 and later need to give it objects`);
      lentMembership = granted === 'member';
    }
    const ownerName = client.escapeIdentifier(options.owner.user);
    const { rows: current } = await client.query<{ owner: string; schema_owner: string | null }>(
      `SELECT pg_get_userbyid(d.datdba) AS owner,
              (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public') AS schema_owner
         FROM pg_database d WHERE d.datname = current_database()`,
    );
    if (current[0]!.owner !== options.owner.user) {
      await client.query(`ALTER DATABASE ${client.escapeIdentifier(database)} OWNER TO ${ownerName}`);
      say(`made '${options.owner.user}' the owner of the database '${database}' (was '${current[0]!.owner}')`);
    }
    // The schema a restore empties: owned by pg_database_owner, i.e. by whoever owns the
    // database, as initdb makes it on PostgreSQL 15.
    if (current[0]!.schema_owner === null) {
      await client.query('CREATE SCHEMA public AUTHORIZATION pg_database_owner');
      say("created the schema 'public', owned by the database's owner");
    } else if (current[0]!.schema_owner !== 'pg_database_owner') {
      await client.query('ALTER SCHEMA public OWNER TO pg_database_owner');
      say(`made the database's owner the owner of the schema 'public' (was '${current[0]!.schema_owner}')`);
    }

    const extensionsCreated = await createSuperuserExtensions(client, admin.superuser, say);
    const handedOver = await handOver(client, options.owner.user);
    if (handedOver.length > 0) say(`handed ${handedOver.length} object(s) in 'public' over to '${options.owner.user}': ${handedOver.join(', ')}`);
    // Before 16 a membership inherits: the admin would keep the owner's rights on every table.
    if (lentMembership) await client.query(`REVOKE ${ownerName} FROM ${client.escapeIdentifier(admin.name)}`);
    await client.query('COMMIT');
    return { databaseCreated, owner, handedOver, extensionsCreated };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (error instanceof ProvisioningError || error instanceof ConfigError || (error as { code?: string }).code === '55P03') throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new ProvisioningError(`could not provision the database '${database}': ${message}`, undefined, { cause: error });
  }
}

// The migrations record belongs to the role migrations run as here: a DB_OWNER_USER naming
// another (the application role, a typo that would create a new role) had the whole database
// handed to it, the release step refused from then on, and the application role owned every
// table (DROP, TRUNCATE). Refused before anything changes. A record a superuser or the admin
// itself owns is handed over, as anything else they own is.
async function requireRecordOwner(client: pg.Client, owner: string): Promise<void> {
  const { rows } = await client.query<{ record_owner: string; superuser: boolean }>(
    `SELECT pg_get_userbyid(c.relowner) AS record_owner, r.rolsuper AS superuser
       FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
      WHERE c.oid = to_regclass($1) AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)`,
    [`public.${migrationsTable}`],
  );
  const record = rows[0];
  if (record === undefined || record.superuser || record.record_owner === owner) return;
  throw new ConfigError(
    'DB_OWNER_USER',
    `the migrations record public.${migrationsTable} belongs to '${record.record_owner}', the role migrations run as in this database: ` +
      `setup --admin would hand the database and everything in it to DB_OWNER_USER '${owner}' instead (and the release step, as ` +
      `'${record.record_owner}', would stop working). Set DB_OWNER_USER to '${record.record_owner}'; to give the database to another owner ` +
      `on purpose, first, as an admin: ALTER TABLE public.${migrationsTable} OWNER TO ${client.escapeIdentifier(owner)}. Nothing was changed`,
  );
}

interface AdminRole {
  name: string;
  superuser: boolean;
}

// The admin must be able to create and alter roles and to give the database away; without
// those powers the refusal names the attribute and the statement that grants it.
async function requireAdmin(client: pg.Client, database: string): Promise<AdminRole> {
  const { rows } = await client.query<{ name: string; rolsuper: boolean; rolcreaterole: boolean }>(
    'SELECT rolname AS name, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user',
  );
  const { name, rolsuper, rolcreaterole } = rows[0]!;
  if (!rolsuper && !rolcreaterole) {
    throw new ProvisioningError(
      `role '${name}' cannot provision '${database}': creating the owner and application roles needs CREATEROLE (or a superuser). ` +
        `Run setup --admin with a superuser's ADMIN_DATABASE_URL, or grant it: ALTER ROLE ${client.escapeIdentifier(name)} CREATEROLE; ` +
        '(on PostgreSQL 15 and older CREATEROLE is as good as superuser: keep it off every role that runs migrations, restores or services)',
      'CREATEROLE',
    );
  }
  return { name, superuser: rolsuper };
}

// From PostgreSQL 16 on, a non-superuser gives a database or table only to a role it may SET
// ROLE to. A CREATEROLE admin (RDS's master user, say) gets ADMIN on the roles it creates,
// but not SET (createrole_self_grant is empty by default), so giving the database to the
// owner it just made failed. It grants itself SET, without INHERIT: the owner's powers are
// not the admin's own, it only acts as the owner to hand objects over.
// Returns whether it granted.
async function mayGiveTo(client: pg.Client, admin: string, owner: string): Promise<'set' | 'member' | undefined> {
  const { rows } = await client.query<{ sixteen: boolean }>("SELECT current_setting('server_version_num')::int >= 160000 AS sixteen");
  // Before 16, a role gives objects only to the roles it is a member of, and a membership has no
  // SET option: the membership a CREATEROLE role may grant itself, for the transaction, taken
  // back before its COMMIT (it found "must be member of role" after creating the database, which
  // then stayed the admin's).
  if (!rows[0]!.sixteen) {
    const { rows: member } = await client.query<{ member: boolean }>("SELECT pg_has_role(current_user, $1, 'MEMBER') AS member", [owner]);
    if (member[0]!.member) return undefined;
    await client.query(`GRANT ${client.escapeIdentifier(owner)} TO ${client.escapeIdentifier(admin)}`);
    return 'member';
  }
  const { rows: can } = await client.query<{ set: boolean }>("SELECT pg_has_role(current_user, $1, 'SET') AS set", [owner]);
  if (can[0]!.set) return undefined;
  const grant = `GRANT ${client.escapeIdentifier(owner)} TO ${client.escapeIdentifier(admin)} WITH INHERIT FALSE, SET TRUE`;
  await client.query(grant).catch((error: unknown) => {
    // 42501: no ADMIN on the owner role; anything else (a lock wait, a lost connection) is
    // the attempt's to handle.
    if ((error as { code?: string }).code !== '42501') throw error;
    throw new ProvisioningError(
      `role '${admin}' may not give the database to '${owner}': PostgreSQL 16 and later need SET on a role to give it objects, ` +
        `and '${admin}' cannot grant that to itself (it holds no ADMIN on '${owner}'). As a superuser: ${grant};`,
      'SET',
      { cause: error },
    );
  });
  return 'set';
}

async function provisionOwner(client: pg.Client, owner: RoleCredentials, adminUrl: string, shared: boolean): Promise<LoginRoleChange> {
  const change = await ensureLoginRole(
    client,
    adminUrl,
    owner,
    () =>
      new ProvisioningError(
        `role '${owner.user}' is a superuser, so it cannot own the database: a backup restored as it could run programs on the server. ` +
          `Choose another DB_OWNER_USER, or take the attribute away: ALTER ROLE ${client.escapeIdentifier(owner.user)} NOSUPERUSER;`,
        'SUPERUSER',
      ),
    shared ? undefined : sharedRoleRefusal(owner.user, 'DB_OWNER_PASSWORD', 'DB_OWNER_USER'),
  );
  // Attributes are gone now; what membership still carries cannot be taken away silently.
  const powers = await rolePowers(client, owner.user);
  if (powers.length > 0) {
    throw new ProvisioningError(
      `role '${owner.user}' cannot own the database: it ${describePowers(powers)}, and a backup restored as it would have those powers. ` +
        `Take them away: ${powerFixes(powers)}`,
    );
  }
  return change;
}

async function createSuperuserExtensions(client: pg.Client, superuser: boolean, log: (line: string) => void): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT a.name FROM pg_available_extensions a
      WHERE a.name = ANY ($1::text[]) AND a.installed_version IS NULL ORDER BY a.name`,
    [superuserExtensions],
  );
  const created: string[] = [];
  for (const { name } of rows) {
    if (!superuser) {
      log(`the server has the extension ${name}, which only a superuser may create: run setup --admin as a superuser once, or the first migration fails as the owner`);
      continue;
    }
    // A database whose schema was migrated (or restored from a backup made) where the server
    // lacked the extension defines its functions itself (uuid_generate_v7()): creating the
    // extension would collide with them, and they serve as well, so it is left out.
    await client.query('SAVEPOINT superuser_extension');
    try {
      await client.query(`CREATE EXTENSION IF NOT EXISTS ${client.escapeIdentifier(name)} SCHEMA public`);
    } catch (error) {
      if ((error as { code?: string }).code !== '42723') throw error;
      await client.query('ROLLBACK TO SAVEPOINT superuser_extension');
      log(`left out the extension ${name}: this database already defines a function of it (${(error as Error).message}), as one migrated where the server lacked ${name} does`);
      continue;
    }
    await client.query('RELEASE SAVEPOINT superuser_extension');
    log(`created the extension ${name} (only a superuser may)`);
    created.push(name);
  }
  return created;
}

/**
 * Hands every object in `public` that another role owns over to the owner, as ALTER …
 * OWNER TO per object: indexes, constraints, triggers and the sequences a table owns follow
 * their table; extension members stay the extension's.
 */
async function handOver(client: pg.Client, owner: string): Promise<string[]> {
  const { rows } = await client.query<{ kind: string; name: string }>(
    `WITH public_ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'public'),
          members AS (SELECT d.classid, d.objid FROM pg_depend d WHERE d.deptype = 'e')
     SELECT kind, name FROM (
       SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
              c.oid::regclass::text AS name, c.relowner AS owner_oid
         FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM public_ns) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid)
          -- a sequence behind a serial or identity column follows its table
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
       UNION ALL
       SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
              p.oid::regprocedure::text, p.proowner
         FROM pg_proc p
        WHERE p.pronamespace = (SELECT oid FROM public_ns)
          AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
       UNION ALL
       SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, t.typowner
         FROM pg_type t
        WHERE t.typnamespace = (SELECT oid FROM public_ns) AND t.typtype IN ('e', 'd', 'r')
          AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_type'::regclass AND m.objid = t.oid)
     ) o
     WHERE o.owner_oid <> (SELECT oid FROM pg_roles WHERE rolname = $1)
     ORDER BY kind, name`,
    [owner],
  );
  for (const { kind, name } of rows) {
    await client.query(`ALTER ${kind} ${name} OWNER TO ${client.escapeIdentifier(owner)}`);
  }
  return rows.map(({ kind, name }) => `${kind.toLowerCase()} ${name}`);
}
