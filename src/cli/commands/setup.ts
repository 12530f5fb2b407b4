import { loadStatementBounds } from '../../db/db-config.js';
import { requireDirectDatabase } from '../../db/direct-connection.js';
import { ConfigError } from '../../errors.js';
import { migrate, migrationStatus } from '../../migrations/on-demand-migrator.js';
import { migrationDatabaseUrl, migrationLockTimeoutMs, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { adminDatabaseUrl } from '../../provisioning/admin-database-url.js';
import { ensureAppRole, provisionAppRole, requireAppRoleApart } from '../../provisioning/app-role.js';
import { databaseUrlAs, ensureDatabase } from '../../provisioning/database-admin.js';
import { provisionDatabase, type RoleCredentials } from '../../provisioning/provision-database.js';
import type { Command } from '../command.js';
import { exitOnInterrupt } from '../interrupt-exit.js';
import { printLine } from '../terminal-text.js';

const usage = `Usage: kennwilliamson-db setup [--admin [--no-migrate] [--postgres-database] [--shared-roles]]

The release step (without --admin), as the database's owner: checks that the database
exists, applies pending migrations, and, when DB_APP_USER is set, brings that role's grants
back to exactly its set (rows only: no CREATE, DROP, ALTER or TRUNCATE, tables of later
migrations included). It creates no role and sets no password, so the owner needs neither
CREATEROLE nor, once the database exists, CREATEDB. Safe to run again, and from several
machines at once.

--admin, once per server (and again to change a password), as an admin (a superuser, or a
role with CREATEDB and CREATEROLE): creates the database if missing and the owner role
DB_OWNER_USER, makes it the owner of the database, of its public schema and of every object
in it (handing over what another role, a superuser, owned), creates pg_uuidv7 where the
server has it (only a superuser may), then runs the release step as that owner, and creates
the application role DB_APP_USER with DB_APP_PASSWORD. A password is written only when it
changed: the stored SCRAM verifier stays as it is otherwise.

Options:
  --admin                 the one-time provisioning step, with ADMIN_DATABASE_URL
  --no-migrate            with --admin: apply no migration (say how many are pending), as when
                          changing a password from a machine whose package may be newer than
                          the release; the roles, passwords and grants are set all the same
  --postgres-database     with --admin: provision the database named postgres, refused otherwise
                          (an admin's URL often ends in /postgres by habit), where it is the
                          application's own (a hosted server whose only database it is)
  --shared-roles          with --admin: change a role's password although the role serves
                          other databases of the server too (a role's password is the
                          server's: a copy beside production with its role names would log
                          production out); refused otherwise, naming them

Environment:
  MIGRATION_DATABASE_URL  the release step: the database, as its owner, directly: a connection
                          pooler, a superuser's login and a login other than the migrations
                          record's owner are refused (else DATABASE_URL, when that is direct)
  ADMIN_DATABASE_URL      --admin: the database, as an admin, directly
  DB_OWNER_USER           --admin: the owner role to create (not a superuser, no CREATEROLE)
  DB_OWNER_PASSWORD       --admin: its password (sent to the server only as a SCRAM-SHA-256 verifier)
  DB_APP_USER             the application role: created by --admin, its grants by both
  DB_APP_PASSWORD         --admin: its password (sent only as a SCRAM-SHA-256 verifier)
  DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT, DB_IDLE_IN_TRANSACTION_TIMEOUT
                          --admin: the application role's defaults for these bounds in this
                          database (default 5s, 2s, 10s), which hold behind a pooler; written
                          on every --admin run (each change said): set them as the services do
  MIGRATION_LOCK_TIMEOUT  seconds to wait for another migration run (default 300)
`;

// Both or neither: one without the other is a half-done configuration, not a choice.
function credentials(env: NodeJS.ProcessEnv, userVariable: string, passwordVariable: string): RoleCredentials | undefined {
  const user = env[userVariable]?.trim();
  const password = env[passwordVariable];
  if (!user && !password) return undefined;
  if (!user) throw new ConfigError(userVariable, `${passwordVariable} is set but ${userVariable} is not; set both or neither`);
  if (!password) {
    // On the embedded default, `npm run db:setup` is the admin step: someone who only wants the
    // grants back (after db:reset) is told where they come from.
    const grantsOnly =
      userVariable === 'DB_APP_USER' ? ' (the admin step creates or updates the role with its password; the release step, without --admin, gives an existing role its grants with DB_APP_USER alone)' : '';
    throw new ConfigError(passwordVariable, `${userVariable} is set but ${passwordVariable} is not; set both or neither${grantsOnly}`);
  }
  return { user, password };
}

// Before anything else; a database that does not exist yet is checked by migrate once created.
async function refusePooler(databaseUrl: string, variable: string | undefined): Promise<void> {
  await requireDirectDatabase(databaseUrl, { operation: 'setup', variable, applicationName: 'kennwilliamson-setup', missingPasses: true });
}

/** `kennwilliamson-db setup`: the release step; with `--admin`, the one-time provisioning first. */
export const setupCommand: Command = {
  name: 'setup',
  summary: 'release step: migrate and reapply the application role\'s grants (--admin: provision database and roles first)',
  usage,
  options: { admin: { type: 'boolean' }, 'no-migrate': { type: 'boolean' }, 'postgres-database': { type: 'boolean' }, 'shared-roles': { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const log = printLine;
    exitOnInterrupt(
      'the server rolls back the step in progress (a transaction of the admin step, or a migration) as its connection closes; ' +
        'what finished before stays. Run setup again: each step finds what is done and goes on',
    );
    const env = process.env;
    let databaseUrl: string;
    let appUser = env.DB_APP_USER?.trim() || undefined;
    let app: RoleCredentials | undefined;
    let statementBounds: ReturnType<typeof loadStatementBounds> | undefined;
    let adminUrl: string | undefined;
    // Read before anything changes: a value the migration step would refuse must not let the
    // admin step run first.
    migrationLockTimeoutMs(env);
    const noMigrate = values['no-migrate'] === true;
    if (values['postgres-database'] === true && values.admin !== true) {
      throw new ConfigError('--postgres-database', 'setup --postgres-database goes with --admin only: it is about the database ADMIN_DATABASE_URL names');
    }
    const sharedRoles = values['shared-roles'] === true;
    if (sharedRoles && values.admin !== true) {
      throw new ConfigError('--shared-roles', 'setup --shared-roles goes with --admin only: the release step sets no password');
    }
    if (noMigrate && values.admin !== true) {
      throw new ConfigError('--no-migrate', 'setup --no-migrate goes with --admin only: without it, setup is the release step, whose work is migrating');
    }
    if (values.admin === true) {
      adminUrl = adminDatabaseUrl('setup', env, { postgresDatabase: values['postgres-database'] === true });
      const owner = credentials(env, 'DB_OWNER_USER', 'DB_OWNER_PASSWORD');
      if (!owner) throw new ConfigError('DB_OWNER_USER', 'setup --admin needs DB_OWNER_USER and DB_OWNER_PASSWORD: the owner role migrations and restores run as');
      app = credentials(env, 'DB_APP_USER', 'DB_APP_PASSWORD');
      // Read before anything changes, so a bad value stops the provisioning at once.
      statementBounds = app ? loadStatementBounds(env) : undefined;
      // The bounds are written as the application role is provisioned, and only then: run to
      // change them without DB_APP_USER, setup --admin --no-migrate changed nothing and said so
      // nowhere (an operator-path audit).
      const boundsSet = ['DB_STATEMENT_TIMEOUT', 'DB_LOCK_TIMEOUT', 'DB_IDLE_IN_TRANSACTION_TIMEOUT'].filter((name) => env[name]?.trim());
      if (!app && boundsSet.length > 0) {
        log(
          `${boundsSet.join(', ')} ${boundsSet.length > 1 ? 'are' : 'is'} set, but DB_APP_USER is not: setup --admin writes the bounds into ` +
            "the application role's defaults only as it provisions that role (DB_APP_USER with DB_APP_PASSWORD); no bound was written",
        );
      }
      requireAppRoleApart(app?.user, owner.user);
      // provisionDatabase refuses a pooler before it changes anything.
      const provisioned = await provisionDatabase({ adminUrl, owner, log, sharedRoles });
      if (!provisioned.databaseCreated && provisioned.owner === 'unchanged' && provisioned.handedOver.length === 0) {
        log(`the owner role '${owner.user}' owns the database and everything in it`);
      }
      // The release step runs as the owner, never as the admin: the objects it creates are the owner's.
      databaseUrl = databaseUrlAs(adminUrl, owner.user, owner.password);
      appUser = app?.user;
    } else {
      databaseUrl = migrationDatabaseUrl();
      const variable = migrationUrlVariable(databaseUrl);
      await refusePooler(databaseUrl, variable);
      if (env.DB_APP_PASSWORD && appUser) log('DB_APP_PASSWORD is not used by the release step, which never sets a password (setup --admin does)');
      if (await ensureDatabase(databaseUrl, { variable, refuseSuperuser: true })) log('created the database');
    }

    // A password changed from a machine whose installed package is newer than the release would
    // otherwise change the schema too, under the services, outside the release.
    if (noMigrate) {
      const pending = (await migrationStatus({ databaseUrl })).filter((migration) => migration.state === 'pending').length;
      log(`applied no migration (--no-migrate)${pending > 0 ? `: ${pending} pending, for the release step to apply` : ': none pending'}`);
    } else {
      const runs = await migrate({ databaseUrl, log, refuseSuperuser: true, refuseOtherOwner: true });
      log(runs.length === 0 ? 'Database is up to date.' : `${runs.length} migration(s) applied.`);
    }
    if (app && adminUrl) {
      const change = await provisionAppRole({ adminUrl, ...app, ...(statementBounds ? { statementBounds } : {}), log, sharedRoles });
      log(change === 'unchanged' ? `the application role '${app.user}' exists, its password unchanged` : `${change === 'created' ? 'created' : 'set the password of'} the application role '${app.user}'`);
    }
    if (appUser) {
      await ensureAppRole({ databaseUrl, user: appUser });
      log(`granted the application role '${appUser}' rows only (no CREATE, DROP, ALTER or TRUNCATE)`);
    }
  },
};
