import { databaseTarget, isLocalHost, type DatabaseTarget } from '../../db/database-target.js';
import { requireDirectDatabase } from '../../db/direct-connection.js';
import { loadStatementBounds, type StatementBounds } from '../../db/db-config.js';
import { migrate } from '../../migrations/on-demand-migrator.js';
import { migrationDatabaseUrl, migrationLockTimeoutMs, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { adminDatabaseUrl, adminUrlVariable } from '../../provisioning/admin-database-url.js';
import { databaseExists, databaseUrlAs, recreateDatabase, requireLocalDatabase } from '../../provisioning/database-admin.js';
import { ensureAppRole, requireAppRoleApart, requireRoleName, writeAppRoleBounds } from '../../provisioning/app-role.js';
import { provisionDatabase, requireOwnerCredentials } from '../../provisioning/provision-database.js';
import { preparedTransactionsRefusal } from '../../provisioning/prepared-transactions.js';
import { ConfigError, ProvisioningError } from '../../errors.js';
import type { Command } from '../command.js';
import { canAsk, typedYes } from '../confirmation.js';
import { exitOnInterrupt } from '../interrupt-exit.js';
import { endedSessionsLine, type WhatResetEnds, whatResetEnds } from './what-reset-ends.js';
import { printLine } from '../terminal-text.js';

/** `npm run db:reset`: drop, recreate and migrate a (local) database. */
export const resetCommand: Command = {
  name: 'reset',
  summary: 'drop, recreate and migrate the database (local hosts only without --force)',
  usage: `Usage: npm run db:reset [-- [--yes] [--force] [--admin]]   (or scripts/reset-db.sh [--yes] [--force] [--admin])

Drops the database, creates it empty and applies every migration. ALL DATA IS LOST.
Asks first, naming the database and its server, and the sessions connected to it now, which
the drop ends (type 'yes'); without a terminal it refuses unless --yes is given. Refuses a database on a non-local host unless --force is given. On the local embedded
server (and with --admin) the database is recreated by the superuser, owned by the owner
role, and migrated as that role, as setup --admin does; what setup --admin would refuse (a
missing DB_OWNER_USER or DB_OWNER_PASSWORD, an owner that is a superuser) is refused before
anything is dropped.

Environment:
  MIGRATION_DATABASE_URL  the database to reset, as its owner (else DATABASE_URL; default:
                          the local embedded server); it needs CREATEDB without --admin
  ADMIN_DATABASE_URL      --admin: the database to reset, as an admin (where MIGRATION_DATABASE_URL
                          is set too, it must name the same database on the same server; else
                          DATABASE_URL, where set, the same database)
  DB_OWNER_USER           --admin: the owner role (with DB_OWNER_PASSWORD; both required)
  DB_APP_USER             the application role, whose grants (and, with --admin, its bounds
                          DB_STATEMENT_TIMEOUT …) in the database go with it: given back
                          after the migrations, as the release step (and setup --admin) give them;
                          unset, the one role the owner's default privileges give every new table

Options:
  --yes, -y               do not ask (required when there is no terminal)
  --force                 allow a database on a non-local host
  --admin                 reset the database ADMIN_DATABASE_URL names, as an admin
`,
  options: { force: { type: 'boolean' }, admin: { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const log = printLine;
    // What Ctrl-C (or SIGTERM, SIGHUP) leaves, said as it stops: Node's own exit said nothing,
    // not even whether the database was gone.
    const stopped = { leaves: 'nothing was dropped' };
    exitOnInterrupt(() => stopped.leaves);
    // An application role found from the old database's default privileges is not found again
    // once they went with it: the reset run again is told its name.
    const again = (appUser: string | undefined) =>
      appUser !== undefined && appUser !== namedAppUser ? `run the reset again with DB_APP_USER=${appUser} (its grants went with the database)` : 'run the reset again';
    const dropping = (database: string, appUser: string | undefined) => {
      stopped.leaves = `'${database}' may or may not have been dropped: ${again(appUser)}, which drops it if it is there and creates it`;
    };
    const dropped = (database: string, appUser: string | undefined) => {
      stopped.leaves =
        `'${database}' was dropped and created again, and is not fully set up (a migration in progress is rolled back by the server ` +
        `and not recorded): ${again(appUser)}`;
    };
    const namedAppUser = process.env.DB_APP_USER?.trim() || undefined;
    if (namedAppUser !== undefined) requireRoleName('DB_APP_USER', namedAppUser);
    // Read before it asks, so that a value the migration step would refuse stops the reset
    // before anything is dropped.
    migrationLockTimeoutMs();
    if (values.admin === true) {
      const adminUrl = adminDatabaseUrl('reset');
      const owner = { user: process.env.DB_OWNER_USER?.trim() ?? '', password: process.env.DB_OWNER_PASSWORD ?? '' };
      requireOwnerCredentials(owner);
      requireAppRoleApart(namedAppUser, owner.user);
      // Read before it asks: a value the admin step would refuse stops the reset first.
      const statementBounds = loadStatementBounds();
      const target = requireLocalDatabase(adminUrl, { force: values.force === true, action: 'reset', variable: adminUrlVariable });
      requireSameDatabaseAsMigrations(target);
      await requireDirectDatabase(adminUrl, { operation: 'reset', variable: adminUrlVariable, applicationName: 'kennwilliamson-reset', missingPasses: true });
      const { ends, appUser } = await lookBeforeDrop(adminUrl, namedAppUser, log);
      if (appUser !== undefined && appUser !== namedAppUser) requireAppRoleApart(appUser, owner.user);
      const bounds = appUser === undefined ? undefined : statementBounds;
      await confirmReset(target, values.yes === true, ends);
      // The admin step first, on the database as it is (it keeps data): whatever it refuses (an
      // admin without CREATEROLE, an owner that is a superuser) is refused before anything is
      // dropped, rather than after, which left an empty database that nobody could migrate.
      // So is the application role's grant, which refuses a role that is missing or has powers.
      await provisionDatabase({ adminUrl, owner, log });
      if (appUser !== undefined) await ensureAppRole({ databaseUrl: databaseUrlAs(adminUrl, owner.user, owner.password), user: appUser, grant: false });
      await recreateDatabase(adminUrl, { variable: adminUrlVariable, onDrop: () => dropping(target.database, appUser) });
      dropped(target.database, appUser);
      log('dropped and recreated the database');
      await provisionDatabase({ adminUrl, owner, log });
      const ownerUrl = databaseUrlAs(adminUrl, owner.user, owner.password);
      const runs = await migrate({ databaseUrl: ownerUrl, log });
      log(`${runs.length} migration(s) applied.`);
      if (appUser !== undefined) await giveBackAppRole(ownerUrl, appUser, log, { adminUrl, bounds: bounds! });
      return;
    }
    const databaseUrl = migrationDatabaseUrl();
    const variable = migrationUrlVariable(databaseUrl);
    const target = requireLocalDatabase(databaseUrl, { force: values.force === true, action: 'reset', variable });
    // Through a pooler the drop and the creation went through (PgBouncer passes them on), and
    // only the migrations refused it: the database was left empty. So the pooler is refused
    // first, before the question. (A database that is not there yet is checked by migrate.)
    await requireDirectDatabase(databaseUrl, { operation: 'reset', variable, applicationName: 'kennwilliamson-reset', missingPasses: true });
    const { exists, ends, appUser } = await lookBeforeDrop(databaseUrl, namedAppUser, log);
    await confirmReset(target, values.yes === true, ends);
    // The application role's grant first, on the database as it is: a role that is missing or
    // has powers is refused before anything is dropped. (A database that is not there yet has
    // nothing to lose.)
    // Checked only: nothing is granted on a database that may yet not be dropped.
    if (appUser !== undefined && exists) await ensureAppRole({ databaseUrl, user: appUser, grant: false });
    await recreateDatabase(databaseUrl, { variable, onDrop: () => dropping(target.database, appUser) });
    dropped(target.database, appUser);
    log('dropped and recreated the database');
    const runs = await migrate({ databaseUrl, log });
    log(`${runs.length} migration(s) applied.`);
    if (appUser !== undefined) await giveBackAppRole(databaseUrl, appUser, log);
  },
};

// What the application role had in the database went with it: its grants, which the release
// step gives (as the owner), and its defaults there, which setup --admin writes (as the admin,
// who may alter roles). The role itself is the server's, and stays.
async function giveBackAppRole(
  ownerUrl: string,
  user: string,
  log: (line: string) => void,
  admin?: { adminUrl: string; bounds: StatementBounds },
): Promise<void> {
  await ensureAppRole({ databaseUrl: ownerUrl, user });
  log(`granted the application role '${user}' rows only (no CREATE, DROP, ALTER or TRUNCATE)`);
  if (admin === undefined) {
    log(`the application role's bounds in the database went with it: run setup --admin with DB_APP_USER to write them again`);
    return;
  }
  await writeAppRoleBounds({ adminUrl: admin.adminUrl, user, statementBounds: admin.bounds, log });
  log(`gave the application role '${user}' its bounds in the database again (DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT, DB_IDLE_IN_TRANSACTION_TIMEOUT)`);
}

// --admin resets the database that ADMIN_DATABASE_URL names. An operator whose
// MIGRATION_DATABASE_URL (else DATABASE_URL, which the reset without --admin falls back to)
// names another (a copy, which the reset without --admin refused for want of CREATEDB, advising
// --admin) means that one, while an admin.env loaded for setup --admin names production: with
// --yes nothing else would stand between them and its drop. DATABASE_URL may lead through a
// pooler, on another host and port: only its database's name is compared.
function requireSameDatabaseAsMigrations(admin: DatabaseTarget): void {
  const variable = process.env.MIGRATION_DATABASE_URL?.trim() ? 'MIGRATION_DATABASE_URL' : process.env.DATABASE_URL?.trim() ? 'DATABASE_URL' : undefined;
  if (variable === undefined) return;
  const other = databaseTarget(process.env[variable]!.trim(), process.env, variable);
  const sameServer =
    variable === 'DATABASE_URL' || (other.port === admin.port && (other.host === admin.host || (isLocalHost(other.host) && isLocalHost(admin.host))));
  if (sameServer && other.database === admin.database) return;
  throw new ConfigError(
    adminUrlVariable,
    `refusing to reset: --admin resets the database ADMIN_DATABASE_URL names, '${admin.database}' on ${admin.host}:${admin.port}, ` +
      `but ${variable} names '${other.database}' on ${other.host}:${other.port}; nothing was dropped. ` +
      `Make ADMIN_DATABASE_URL name the database to reset, or unset ${variable}`,
  );
}

// The database as it is, before the question: the sessions the drop ends and the application
// role to give back (nothing to read where there is no database yet).
async function lookBeforeDrop(
  databaseUrl: string,
  named: string | undefined,
  log: (line: string) => void,
): Promise<{ exists: boolean; ends: WhatResetEnds | undefined; appUser: string | undefined }> {
  const exists = await databaseExists(databaseUrl);
  const ends = exists ? await whatResetEnds(databaseUrl) : undefined;
  return { exists, ends, appUser: applicationRole(named, ends, log) };
}

// DB_APP_USER, else the one role the owner's default privileges give the rows of every new
// table, as a restore finds it: its grants (and bounds) go with the database, and a reset that
// gave them back only when DB_APP_USER was set left the services' role with no access to any
// table, and, once the release step gave the grants back, with no bounds behind a pooler.
function applicationRole(named: string | undefined, ends: WhatResetEnds | undefined, log: (line: string) => void): string | undefined {
  if (named !== undefined || ends === undefined) return named;
  const [only, ...more] = ends.applicationRoles;
  if (only !== undefined && more.length === 0) {
    log(`DB_APP_USER is unset: the application role is '${only}', to which the owner's default privileges give every new table; it gets its grants back after the migrations`);
    return only;
  }
  if (only !== undefined) {
    log(
      `DB_APP_USER is unset, and the owner's default privileges give every new table to several roles (${ends.applicationRoles.join(', ')}): ` +
        'their grants go with the database; give them back with the release step and DB_APP_USER',
    );
  }
  return undefined;
}

// A local host is no proof of a scratch database: the compose set-up publishes its server,
// the production one on a single-host deployment, on 127.0.0.1 too. The sessions the drop ends
// are named: DROP DATABASE … WITH (FORCE) ends them, the services' among them.
async function confirmReset(target: { host: string; port: number; database: string }, yes: boolean, ends: WhatResetEnds | undefined): Promise<void> {
  // Refused before the question: told yes, the drop would fail on them.
  if (ends !== undefined && ends.preparedTransactions.length > 0) throw preparedTransactionsRefusal('reset', target.database, ends.preparedTransactions);
  if (!canAsk(yes)) {
    throw new ProvisioningError(`refusing to reset '${target.database}' on ${target.host} without confirmation: there is no terminal to ask on; pass --yes`);
  }
  const sessions = endedSessionsLine(ends);
  if (yes) {
    if (sessions !== undefined) printLine(sessions);
    return;
  }
  const answer = await typedYes(
    `This DROPS database '${target.database}' on ${target.host}:${target.port} and ALL ITS DATA.\n${sessions === undefined ? '' : `${sessions}\n`}Type 'yes' to reset: `,
  );
  if (!answer) throw new ProvisioningError('not confirmed; the database was not touched');
}
