import type * as pg from 'pg';
import { answeringWithin, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { databaseTarget } from '../../db/database-target.js';
import { withClient } from '../../db/with-client.js';
import { requireDirectConnection } from '../../db/direct-connection.js';
import { DirectConnectionRequiredError, RestoreError } from '../../errors.js';
import { migrationUrlName, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { databaseUrlAs } from '../../provisioning/database-admin.js';
import { requireRoleName } from '../../provisioning/app-role.js';
import { describePowers, powerFixes, rolePowers } from '../../provisioning/role-powers.js';
import type { BackupGrantees } from '../vetting/backup-statement-allow-list.js';
import { newTableGrantees } from '../../provisioning/new-table-grantees.js';

/** The owner role a restore logs in as when the URL it was given has powers beyond the database. */
export interface RestoreOwner {
  /** `DB_OWNER_USER`: when set, it must be the database's owner. */
  user?: string | undefined;
  /** `DB_OWNER_PASSWORD`. */
  password?: string | undefined;
}

/** How a restore connects: the URL, and the role it logs in as. */
export interface RestoreSession {
  url: string;
  role: string;
  /** The role of the URL given, when the restore logs in as the owner instead of it. */
  insteadOf?: string | undefined;
  /** `DB_APP_USER`, checked to exist and to be another role than the one restoring. */
  appRole?: string | undefined;
  /**
   * Without `DB_APP_USER`: the one role the owner's default privileges give new tables the
   * release step's privileges to (`newTableGrantees`), which the restore gives
   * them again, as the release step would.
   */
  knownAppRole?: string | undefined;
  /**
   * Whom the backup may grant privileges to: the role restoring (`role`) and the application
   * role, `appRole` or else the role(s) its default privileges in public give the release
   * step's privileges on new tables to, and the roles they let read new tables, no more than
   * that (see `newTableGrantees`). Hand it to the vetting (`verifyBackupFile`).
   */
  grantees: BackupGrantees;
}

// Why it matters, said once in every refusal.
const why =
  "a backup's SQL runs with the powers of the session that restores it, functions included (a CHECK constraint's, " +
  "a default's, an index expression's run while rows load, and RESET ROLE undoes a SET ROLE), so a backup restored as";

/**
 * Decides which role runs a backup's SQL: never one with powers beyond the database (a
 * superuser, a member of `pg_execute_server_program` or any other predefined role, a role with
 * CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS or a member of one; see `rolePowers`). When the URL's role is such a role, the restore
 * logs in as the database's owner instead, given its password (`owner`, from
 * `DB_OWNER_PASSWORD`), provided the owner is a role without such powers; otherwise it
 * refuses, saying which role to use and why. Nothing of the backup runs before this. The
 * connection is checked first to reach PostgreSQL itself, not a pooler
 * (`DirectConnectionRequiredError`): the one pooler check of a restore, since the owner's URL
 * differs from this one only in its login. `appRole` (`DB_APP_USER`), when given, must
 * exist. Run it before reading a backup: hand `grantees` to `verifyBackupFile` and the
 * result to `restoreDatabase` (`session`).
 *
 * @example
 * const session = await restoreSession(superuserUrl, { password: process.env.DB_OWNER_PASSWORD })
 * // { url: 'postgresql://kennwilliamson:…@…/kennwilliamson', role: 'kennwilliamson', insteadOf: 'postgres' }
 */
export async function restoreSession(databaseUrl: string, owner: RestoreOwner = {}, options: { appRole?: string | undefined } = {}): Promise<RestoreSession> {
  const target = databaseTarget(databaseUrl, process.env, migrationUrlName(databaseUrl));
  const { appRole } = options;
  if (appRole !== undefined) requireRoleName('DB_APP_USER', appRole);
  const facts = await withClient(
    databaseUrl,
    async (connection) => {
      // A pooler first (under its deadline): its refusal says what to fix before any question about roles.
      await requireDirectConnection(connection, { operation: 'restore', variable: migrationUrlVariable(databaseUrl) });
      // Each look after it under a round trip's deadline too: a server silent from here on held
      // the restore before its first question for ever.
      const client = answeringWithin(connection, roundTripDeadlineMs);
      // This session may be a superuser's, in the database whose public schema the backups
      // restored before filled: every name resolves in pg_catalog only, so no function or
      // operator planted there (a public.<>(oid, integer) outranked pg_catalog's for
      // 'grantee <> 0') runs with the URL's powers.
      await client.query('SET search_path = pg_catalog');
      const { rows } = await client.query<{ role: string; owner: string }>(
        `SELECT session_user AS role, pg_catalog.pg_get_userbyid(d.datdba) AS owner
           FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`,
      );
      const { role, owner: databaseOwner } = rows[0]!;
      const appRoleExists = appRole === undefined || (await client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [appRole])).rowCount === 1;
      const powers = await rolePowers(client, role);
      // The role that will restore: the URL's own, or the owner it logs in as instead.
      const restoring = powers.length === 0 ? role : databaseOwner;
      return {
        role,
        databaseOwner,
        appRoleExists,
        rolePowers: powers,
        // Needed only when the URL's role has powers; the same role's answer when it is the owner.
        ownerPowers: powers.length === 0 ? [] : databaseOwner === role ? powers : await rolePowers(client, databaseOwner),
        ...(appRole === undefined
          ? await newTableGrantees(client, restoring).then(({ applicationRoles, readers, applicationRole }) => ({
              grantees: { owner: restoring, applicationRoles, readers },
              knownAppRole: applicationRole,
            }))
          : { grantees: { owner: restoring, applicationRoles: [appRole], setsDefaultPrivileges: true }, knownAppRole: undefined }),
      };
    },
    'kennwilliamson-restore',
  ).catch((error: unknown) => {
    if (error instanceof DirectConnectionRequiredError) throw error;
    throw new RestoreError(`could not connect to ${target.description}: ${(error as Error).message}; the database was not touched`, { cause: error });
  });
  const restoringRole = facts.grantees.owner;
  // Another plain role (the application role's URL, which the services' DATABASE_URL holds,
  // given where the owner's belongs): its restore failed on the first of the owner's objects,
  // or on the backup's default privileges, whose refusal called it the database's owner.
  // A member of the owner role neither: the restore runs as the login's own role (ROLE NONE), and the
  // objects would be the member's, which the owner's migrations may not alter.
  if (facts.rolePowers.length === 0 && facts.role !== facts.databaseOwner) {
    const variable = migrationUrlVariable(databaseUrl);
    const fix =
      variable === 'DATABASE_URL'
        ? "set MIGRATION_DATABASE_URL to its URL (DATABASE_URL, which the restore fell back to, is the services' URL, usually the application role's)"
        : variable === 'MIGRATION_DATABASE_URL'
          ? "set MIGRATION_DATABASE_URL to the owner's URL"
          : "give the owner's URL (databaseUrl)";
    throw new RestoreError(
      `refusing to restore as '${facts.role}': it is not the database's owner '${facts.databaseOwner}', to which the restored tables and ` +
        `functions must belong, for its migrations to alter them. Restore as the owner: ${fix}. The database was not touched.`,
    );
  }
  if (appRole !== undefined && !facts.appRoleExists) {
    throw new RestoreError(
      `the application role '${appRole}' (DB_APP_USER) does not exist on this server: run the provisioning step (setup --admin, with ` +
        'DB_APP_USER and DB_APP_PASSWORD) on this server first, then restore again. The database was not touched.',
    );
  }
  if (appRole === restoringRole) {
    throw new RestoreError(`DB_APP_USER '${appRole}' is the database's owner, which restores it; the application role must be another role. The database was not touched.`);
  }
  const checked = {
    grantees: facts.grantees,
    ...(appRole === undefined ? {} : { appRole }),
    ...(facts.knownAppRole === undefined ? {} : { knownAppRole: facts.knownAppRole }),
  };
  if (facts.rolePowers.length === 0) return { url: databaseUrl, role: facts.role, ...checked };

  const refuse = (advice: string): never => {
    throw new RestoreError(
      `refusing to restore as '${facts.role}': it ${describePowers(facts.rolePowers)}. ${why} '${facts.role}' could run programs, ` +
        `read and write files or create roles on the database server. ${advice} The database was not touched.`,
    );
  };
  if (facts.ownerPowers.length > 0) {
    refuse(
      `The database's owner '${facts.databaseOwner}' ${describePowers(facts.ownerPowers)} too: take that away as an admin ` +
        `(${powerFixes(facts.ownerPowers)}), or hand the database to a plain owner once with kennwilliamson-db setup --admin ` +
        `(ADMIN_DATABASE_URL, DB_OWNER_USER, DB_OWNER_PASSWORD), then restore as that owner.`,
    );
  }
  if (owner.user && owner.user !== facts.databaseOwner) {
    refuse(`DB_OWNER_USER is '${owner.user}', but the database's owner is '${facts.databaseOwner}': restore as '${facts.databaseOwner}'.`);
  }
  if (!owner.password) {
    refuse(
      `Restore as the database's owner '${facts.databaseOwner}', which has no such powers: set MIGRATION_DATABASE_URL to its URL, ` +
        `or DB_OWNER_PASSWORD (its password) so that the restore logs in as it.`,
    );
  }
  return { url: databaseUrlAs(databaseUrl, facts.databaseOwner, owner.password!), role: facts.databaseOwner, insteadOf: facts.role, ...checked };
}

/**
 * Checked in the restore's own session, before its first statement: the role logged in (and
 * the current one) has no powers beyond the database. The same test as {@link restoreSession},
 * on the connection that will run the backup, so that nothing between the two (a URL that
 * logs in as another role, a changed membership) lets a backup run with such powers.
 */
export async function requireRestrictedSession(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ session: string; current: string }>('SELECT session_user AS session, current_user AS current');
  for (const role of new Set([rows[0]!.session, rows[0]!.current])) {
    const powers = await rolePowers(client, role);
    if (powers.length > 0) {
      throw new RestoreError(
        `refusing to restore as '${role}': it ${describePowers(powers)}. ${why} it could reach beyond the database. ` +
          `Restore as the database's owner, a role without such powers (see setup --admin), or take them away as an admin ` +
          `(${powerFixes(powers)}). The database was not touched.`,
      );
    }
  }
}

