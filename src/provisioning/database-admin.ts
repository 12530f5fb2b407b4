import type * as pg from 'pg';
import { answeredWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { databaseTarget, isLocalHost, parsePostgresUrl, type DatabaseTarget } from '../db/database-target.js';
import { withClient } from '../db/with-client.js';
import { ConfigError, ConnectionError, mapDatabaseError, ProvisioningError } from '../errors.js';
import { withLockRetries } from '../migrations/lock-retries.js';
import { superuserRefusal } from '../migrations/superuser-refusal.js';
import { adminLockRetries, type AdminLockWait } from './admin-lock-wait.js';
import { preparedTransactionsOf, preparedTransactionsRefusal } from './prepared-transactions.js';

export { isLocalHost };

/**
 * The same server URL (credentials and parameters kept) naming another database; a URL
 * without a host (`postgresql://u:p@/db?host=/run/postgresql`) stays without one.
 *
 * @example databaseUrlWith('postgresql://u:p@127.0.0.1:5432/app', 'postgres') // 'postgresql://u:p@127.0.0.1:5432/postgres'
 */
export function databaseUrlWith(databaseUrl: string, database: string): string {
  const { url, hostname } = parsePostgresUrl(databaseUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  const text = url.toString();
  return hostname === '' && url.hostname === '___DUMMY___' ? text.replace('@___DUMMY___/', '@/') : text;
}

/**
 * Refuses, unless `force`, a database that is not on this machine: the server the URL
 * reaches, decided as pg decides it ({@link databaseTarget}: `?host=`, the URL's host,
 * `PGHOST`, `localhost`), so a URL without a host and a remote `PGHOST` cannot slip past.
 * Returns that server, for messages. A URL it cannot read, or a refusal, is a `ConfigError`
 * under `variable` (the variable the URL came from; `DATABASE_URL` unless said otherwise).
 *
 * @example
 * const target = requireLocalDatabase(url, { force: args.includes('--force'), action: 'reset' })
 * // Error: refusing to reset a database on the non-local host 'db.example.org' (from PGHOST); pass --force if you mean it
 */
export function requireLocalDatabase(
  databaseUrl: string,
  options: { force: boolean; action: string; env?: NodeJS.ProcessEnv | undefined; variable?: string | undefined },
): DatabaseTarget {
  const variable = options.variable ?? 'DATABASE_URL';
  const target = databaseTarget(databaseUrl, options.env ?? process.env, variable);
  if (!isLocalHost(target.host) && !options.force) {
    const from = target.hostFrom === 'url' ? '' : ` (from ${target.hostFrom === 'host parameter' ? "the URL's ?host=" : target.hostFrom})`;
    throw new ConfigError(
      variable,
      `refusing to ${options.action} a database on the non-local host '${target.host}'${from}; pass --force if you mean it`,
    );
  }
  return target;
}

/**
 * True when the server the URL reaches ({@link databaseTarget}) is on this machine
 * ({@link isLocalHost}): the only servers a reset or restore may wipe without --force.
 *
 * @example isLocalDatabaseUrl('postgresql://u:p@127.0.0.1/db?host=db.example.com') // false
 */
export function isLocalDatabaseUrl(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return isLocalHost(databaseTarget(databaseUrl, env).host);
}

// The URL parameters of one login that a URL for another role leaves out (see databaseUrlAs).
const loginParameters = ['user', 'password', 'options', 'replication'];

/**
 * The same server URL (host, port, database and connection parameters such as `sslmode` or
 * `application_name` kept) logging in as another role, without the parameters of the login it
 * was written for: `?user=` and `?password=` (pg takes them over the URL's own), `options` (that
 * login's session settings, which may be superuser-only) and `replication`.
 *
 * @example databaseUrlAs('postgresql://postgres:pw@127.0.0.1/app?sslmode=verify-full&options=-c%20log_statement%3Dnone', 'owner', 'secret') // 'postgresql://owner:secret@127.0.0.1/app?sslmode=verify-full'
 */
export function databaseUrlAs(databaseUrl: string, user: string, password: string): string {
  const { url, hostname } = parsePostgresUrl(databaseUrl);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password);
  // `options` are the admin's session settings, set at login with the login role's rights: the
  // README's `-c log_statement=none …`, which keeps a verifier out of the server log, is
  // superuser-only, and the server refuses a login as the owner that carries it (42501), after
  // the admin step has already run. Dropped whole rather than sorted: which `-c` settings a role
  // may set is the server's to say (pg_settings.context, GRANT SET ON PARAMETER), and the
  // statements that carry a verifier run on the admin's own connection, which keeps them. The
  // other role's session takes its settings from the server, the database and the role, as it
  // does under its own URL. `replication` needs REPLICATION, which an owner must not have; and
  // pg takes `?user=`/`?password=` over the URL's own, which would log in as the admin again.
  // (Only those present: any change re-encodes the whole query, `?host=/run/postgresql` too.)
  for (const parameter of loginParameters) if (url.searchParams.has(parameter)) url.searchParams.delete(parameter);
  const text = url.toString();
  return hostname === '' && url.hostname === '___DUMMY___' ? text.replace('@___DUMMY___/', '@/') : text;
}

// The maintenance databases tried, in order, for CREATE and DROP DATABASE: `postgres` may be
// closed (REVOKE CONNECT ON DATABASE postgres FROM PUBLIC is common hardening), template1
// exists on every cluster.
const maintenanceDatabases = ['postgres', 'template1'];

// A server that stops answering (frozen, or behind a path that stalls while its kernel
// acknowledges) fails a statement here at a deadline, and its connection is closed: a look at
// the role at a round trip's; CREATE DATABASE, which copies its template's files, at minutes'.
const createDatabaseDeadlineMs = 5 * 60_000;

/**
 * Runs `work` on a connection to a maintenance database of the same server (`postgres`, else
 * `template1`), for statements that cannot run inside the database they act on (CREATE/DROP
 * DATABASE). Only a refused connection (no CONNECT, or no such database) moves on to the next.
 * The connection shows in `pg_stat_activity` as `applicationName`: the command's own.
 */
export async function withMaintenanceClient<T>(
  databaseUrl: string,
  work: (client: pg.Client) => Promise<T>,
  applicationName = 'kennwilliamson-db',
): Promise<T> {
  let refused: unknown;
  for (const maintenance of maintenanceDatabases) {
    let connected = false;
    try {
      return await withClient(
        databaseUrlWith(databaseUrl, maintenance),
        (client) => {
          connected = true;
          return work(client);
        },
        applicationName,
      );
    } catch (error) {
      // 42501: no CONNECT privilege; 3D000: no such database. Anything else is the answer.
      if (connected || !['42501', '3D000'].includes(sqlStateOf(error) ?? '')) throw error;
      refused ??= error;
    }
  }
  throw refused;
}

function sqlStateOf(error: unknown): string | undefined {
  const { sqlState, code } = error as { sqlState?: string; code?: string };
  return sqlState ?? code;
}

/**
 * Whether the URL's database exists: 3D000 at login says it does not (and the server said so only after the login succeeded).
 *
 * @example if (await databaseExists(databaseUrl)) await ensureAppRole({ databaseUrl, user })
 */
export async function databaseExists(databaseUrl: string): Promise<boolean> {
  try {
    await withClient(databaseUrl, async () => undefined, 'kennwilliamson-setup');
    return true;
  } catch (error) {
    if (sqlStateOf(error) === '3D000') return false;
    throw error;
  }
}

/**
 * Creates the database the URL names unless it exists; returns whether it created it. The
 * database itself is tried first: only when it does not exist does this connect to a
 * maintenance database (`postgres`, else `template1`) to create it, so set-up of an existing
 * database works where `postgres` is closed to the role. A role that may not create
 * databases is told so: {@link ProvisioningError} naming CREATEDB and the statement that
 * grants it. With `owner`, a new database is created owned by that role. A URL it cannot read
 * is a `ConfigError` under `variable`, the variable it came from (`DATABASE_URL` unless said).
 *
 * @example
 * await ensureDatabase('postgresql://postgres:postgres@127.0.0.1:54320/kennwilliamson')
 */
export async function ensureDatabase(
  databaseUrl: string,
  options: { owner?: string | undefined; variable?: string | undefined; refuseSuperuser?: boolean | undefined } = {},
): Promise<boolean> {
  const { database } = databaseTarget(databaseUrl, process.env, options.variable);
  if (await databaseExists(databaseUrl)) return false;
  return withMaintenanceClient(databaseUrl, async (client) => {
    const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look at the role and the database', () =>
      client.query<{ role: string; may: boolean; exists: boolean; superuser: boolean }>(
        `SELECT current_user AS role, (rolsuper OR rolcreatedb) AS may, rolsuper AS superuser,
                EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1) AS exists
           FROM pg_catalog.pg_roles WHERE rolname = current_user`,
        [database],
      ),
    );
    const { role, may, exists, superuser } = rows[0]!;
    if (exists) return false;
    // The release step would refuse to migrate it as this role: a database made now would be left behind, the superuser's.
    if (options.refuseSuperuser === true && superuser) throw superuserRefusal(role, options.variable ?? 'databaseUrl', 'nothing was created');
    if (!may) {
      throw new ProvisioningError(
        `database '${database}' does not exist, and role '${role}' may not create it: it lacks CREATEDB. ` +
          `Create it once as an admin (kennwilliamson-db setup --admin, with ADMIN_DATABASE_URL), ` +
          `or let this role create databases: ALTER ROLE ${client.escapeIdentifier(role)} CREATEDB;`,
        'CREATEDB',
      );
    }
    try {
      const owner = options.owner ? ` OWNER ${client.escapeIdentifier(options.owner)}` : '';
      await answeredWithin(client, createDatabaseDeadlineMs, 'CREATE DATABASE', () => client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}${owner}`));
      return true;
    } catch (error) {
      // 42P04 duplicate_database: a concurrent caller created it first.
      if ((error as { code?: string }).code === '42P04') return false;
      throw error;
    }
  });
}

/** Options of {@link recreateDatabase}; `lockTimeoutMs` bounds the wait for the locks DROP DATABASE takes. */
export interface RecreateDatabaseOptions extends AdminLockWait {
  /** The new database's owner (default: the role connecting). */
  owner?: string | undefined;
  /** The variable the URL came from, for a `ConfigError` (default `DATABASE_URL`). */
  variable?: string | undefined;
  /**
   * Called as each attempt's DROP DATABASE is sent, before which nothing was dropped: for a
   * caller that says what stopping it leaves.
   */
  onDrop?: (() => void) | undefined;
}

/**
 * Drops the database the URL names (disconnecting its sessions) and creates it empty, owned
 * by `owner` when given (else by the role connecting). The drop waits for its locks in short
 * attempts, at most `lockTimeoutMs` in all, and then gives up with a {@link ProvisioningError}
 * naming who held them, nothing dropped. A URL it cannot read is a `ConfigError` under
 * `variable`, as for {@link ensureDatabase}.
 *
 * @example
 * await recreateDatabase(adminUrl, { owner: 'kennwilliamson' }) // then migrate as the owner
 */
export async function recreateDatabase(databaseUrl: string, options: RecreateDatabaseOptions = {}): Promise<void> {
  const { database } = databaseTarget(databaseUrl, process.env, options.variable);
  await withMaintenanceClient(databaseUrl, async (client) => {
    // Dropping needs only ownership, creating needs CREATEDB: a role with the one and not the
    // other (the owner role setup --admin makes) would drop the database and stop there.
    const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look at the role', () =>
      client.query<{ user: string; creates: boolean }>(
        'SELECT current_user AS user, rolsuper OR rolcreatedb AS creates FROM pg_catalog.pg_roles WHERE rolname = current_user',
      ),
    );
    if (!rows[0]?.creates) {
      throw new ProvisioningError(
        `refusing to recreate '${database}': role '${rows[0]?.user}' may not create databases (CREATEDB), so the database ` +
          'would be dropped and not created again; nothing was dropped. Reset with --admin (ADMIN_DATABASE_URL naming this database, ' +
          'with the owner role in DB_OWNER_USER and DB_OWNER_PASSWORD), or as a role with CREATEDB',
        'CREATEDB',
      );
    }
    // An owner that is not there would fail CREATE DATABASE only once the database is gone.
    if (options.owner) {
      const found = await answeredWithin(client, roundTripDeadlineMs, 'the look at the owner', () =>
        client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [options.owner]),
      );
      if (found.rowCount === 0) {
        throw new ProvisioningError(`refusing to recreate '${database}': its owner role '${options.owner}' does not exist; nothing was dropped`);
      }
    }
    const usable = await dropDatabaseInAttempts(client, databaseUrl, database, options);
    const owner = options.owner ? ` OWNER ${client.escapeIdentifier(options.owner)}` : '';
    // Whatever fails it now (the connection lost at the drop's end, the template in use) leaves
    // no database, or, with its answer lost, perhaps one: said, with what to do, not as a bare
    // error that reads as if nothing happened.
    await answeredWithin(client, createDatabaseDeadlineMs, 'CREATE DATABASE', () => client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}${owner}`)).catch(
      (error: unknown) => {
        // Sent on a connection that was lost before its answer, it may have been carried out.
        const unanswered = usable && mapDatabaseError(error) instanceof ConnectionError;
        throw new ProvisioningError(
          `'${database}' was dropped, and ${unanswered ? 'may or may not have been' : 'was not'} created again: ${mapDatabaseError(error).message}. ` +
            'Run the reset again to create it',
          undefined,
          { cause: error },
        );
      },
    );
  }, 'kennwilliamson-reset');
}

// DROP DATABASE takes the database's lock, and waits for any transaction that changed its row
// (a GRANT … ON DATABASE, an ALTER DATABASE … SET, an ALTER ROLE … IN DATABASE … SET), from a
// session on any database, before FORCE ends the sessions connected to it; meanwhile every
// new login to that database queues behind it. With no lock_timeout it would wait as long as
// that transaction lives, idle or not: so in short attempts, as a migration's, naming who
// blocks (withLockRetries), at most `lockTimeoutMs` in all.
// Says whether the connection is still usable for the CREATE DATABASE after the drop.
async function dropDatabaseInAttempts(client: pg.Client, databaseUrl: string, database: string, options: RecreateDatabaseOptions): Promise<boolean> {
  // Loaded here, not with the commands that import this module: it reads blockers' queries
  // with PostgreSQL's parser, which starting a command must not load. It watches from the
  // maintenance database: a watcher on the database being dropped would be ended by FORCE.
  const { blockerMonitor } = await import('../migrations/lock-blockers.js');
  const monitor = blockerMonitor(databaseUrlWith(databaseUrl, (client as pg.Client & { database: string }).database), 'kennwilliamson-reset-monitor');
  const { rows } = await answeredWithin(client, roundTripDeadlineMs, 'the look at the session', () =>
    client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid'),
  );
  // A DROP sent whose answer never came (the connection lost or closed at its deadline) may
  // have been carried out.
  let dropUnanswered = false;
  try {
    await withLockRetries(
      adminLockRetries(options, monitor, { verb: 'drop', doing: 'dropping', database, nothingWas: 'dropped' }, client),
      async ({ lockTimeoutMs, watch }) => {
        watch(rows[0]!.pid);
        await answeredWithin(client, roundTripDeadlineMs, 'SET lock_timeout', () => client.query(`SET lock_timeout = ${lockTimeoutMs}`));
        // Its lock wait, then FORCE's wait for the sessions it ends (up to 5 s), and a round trip.
        dropUnanswered = true;
        options.onDrop?.();
        await answeredWithin(client, lockTimeoutMs + 5_000 + roundTripDeadlineMs, 'DROP DATABASE', () =>
          client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`),
        ).catch((error: unknown) => {
          // The server's refusal (a lock timeout, say) is an answer.
          dropUnanswered = mapDatabaseError(error) instanceof ConnectionError;
          throw error;
        });
        dropUnanswered = false;
      },
    ).catch(async (error: unknown) => {
      // The connection lost: a bare ConnectionError ("may be retried") did not say whether the
      // database was still there.
      const mapped = mapDatabaseError(error);
      if (mapped instanceof ConnectionError) {
        throw new ProvisioningError(
          dropUnanswered
            ? `'${database}' may or may not have been dropped: ${mapped.message}. Run the reset again, which drops it if it is there and creates it`
            : `could not drop '${database}': ${mapped.message}; nothing was dropped`,
          undefined,
          { cause: error },
        );
      }
      // A transaction prepared there (55006, as a logical replication slot in use is): no
      // session holds it, so FORCE cannot end it. Named, rather than PostgreSQL's bare "is being
      // used by prepared transactions".
      if ((error as { code?: string }).code === '55006') {
        const prepared = await answeredWithin(client, roundTripDeadlineMs, 'the look at prepared transactions', () => preparedTransactionsOf(client, database)).catch(() => []);
        if (prepared.length > 0) throw preparedTransactionsRefusal('drop', database, prepared, error);
      }
      // FORCE ends every session or none, and a role may end only its own (and its members')
      // unless it may signal others: PostgreSQL's bare "permission denied to terminate process"
      // named neither the sessions nor what would do. (The same SQLSTATE says a role does not
      // own the database: that message stands as it is.)
      if ((error as { code?: string }).code !== '42501') throw error;
      const owns = await answeredWithin(client, roundTripDeadlineMs, 'the look at the owner', () =>
        client.query<{ owns: boolean }>(
          "SELECT pg_catalog.pg_has_role(current_user, datdba, 'MEMBER') AS owns FROM pg_catalog.pg_database WHERE datname = $1",
          [database],
        ),
      ).then(({ rows }) => rows[0]?.owns === true, () => false);
      if (!owns) throw error;
      throw new ProvisioningError(
        `refusing to drop '${database}': sessions of other roles are connected to it, which DROP DATABASE … WITH (FORCE) would end, ` +
          `and role '${(client as pg.Client & { user: string }).user}' may not (only a superuser, a member of their role or of pg_signal_backend may); ` +
          'nothing was dropped. Stop those services first, or reset with --admin',
        undefined,
        { cause: error },
      );
    });
  } finally {
    // Before CREATE DATABASE, which refuses while anyone is connected to its template.
    await monitor.close();
  }
  // A RESET that fails has lost the connection: CREATE DATABASE is then never sent.
  return answeredWithin(client, roundTripDeadlineMs, 'RESET lock_timeout', () => client.query('RESET lock_timeout')).then(
    () => true,
    () => false,
  );
}
