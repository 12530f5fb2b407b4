import type pg from 'pg';
import { databaseTarget } from '../db/database-target.js';
import { withClient } from '../db/with-client.js';
import { requireDirectConnection } from '../db/direct-connection.js';
import { DirectConnectionRequiredError, RestoreError } from '../errors.js';
import { migrationUrlVariable } from '../migrations/migration-settings.js';
import { databaseUrlAs } from '../provisioning/database-admin.js';
import { powersBeyondDatabase } from '../provisioning/role-powers.js';

/** The owner role a restore logs in as when the URL it was given has powers beyond the database. */
export interface RestoreOwner {
  /** `DB_OWNER_USER`: when set, it must be the database's owner. */
  user?: string;
  /** `DB_OWNER_PASSWORD`. */
  password?: string;
}

/** How a restore connects: the URL, and the role it logs in as. */
export interface RestoreSession {
  url: string;
  role: string;
  /** The role of the URL given, when the restore logs in as the owner instead of it. */
  insteadOf?: string;
}

// Why it matters, said once in every refusal.
const why =
  "a backup's SQL runs with the powers of the session that restores it, functions included (a CHECK constraint's, " +
  "a default's, an index expression's run while rows load, and RESET ROLE undoes a SET ROLE), so a backup restored as";

/**
 * Decides which role runs a backup's SQL: never one with powers beyond the database (a
 * superuser, a member of `pg_execute_server_program` and the like, a role with CREATEROLE or
 * BYPASSRLS; see `powersBeyondDatabase`). When the URL's role is such a role, the restore
 * logs in as the database's owner instead, given its password (`owner`, from
 * `DB_OWNER_PASSWORD`), provided the owner is a role without such powers; otherwise it
 * refuses, saying which role to use and why. Nothing of the backup runs before this.
 *
 * @example
 * const session = await restoreSession(superuserUrl, { password: process.env.DB_OWNER_PASSWORD })
 * // { url: 'postgresql://kennwilliamson:…@…/kennwilliamson', role: 'kennwilliamson', insteadOf: 'postgres' }
 */
export async function restoreSession(databaseUrl: string, owner: RestoreOwner = {}): Promise<RestoreSession> {
  const target = databaseTarget(databaseUrl);
  const facts = await withClient(
    databaseUrl,
    async (client) => {
      // A pooler first: its refusal says what to fix before any question about roles.
      await requireDirectConnection(client, { operation: 'restore', variable: migrationUrlVariable(databaseUrl) });
      const { rows } = await client.query<{ role: string; owner: string }>(
        `SELECT session_user AS role, pg_catalog.pg_get_userbyid(d.datdba) AS owner
           FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`,
      );
      const { role, owner: databaseOwner } = rows[0]!;
      return {
        role,
        databaseOwner,
        rolePowers: await powersBeyondDatabase(client, role),
        ownerPowers: await powersBeyondDatabase(client, databaseOwner),
      };
    },
    'kennwilliamson-restore',
  ).catch((error: unknown) => {
    if (error instanceof DirectConnectionRequiredError) throw error;
    throw new RestoreError(`could not connect to ${target.description}: ${(error as Error).message}; the database was not touched`, { cause: error });
  });
  if (facts.rolePowers.length === 0) return { url: databaseUrl, role: facts.role };

  const refuse = (advice: string): never => {
    throw new RestoreError(
      `refusing to restore as '${facts.role}': it ${facts.rolePowers.join('; it ')}. ${why} '${facts.role}' could run programs, ` +
        `read and write files or create roles on the database server. ${advice} The database was not touched.`,
    );
  };
  if (facts.ownerPowers.length > 0) {
    refuse(
      `The database's owner '${facts.databaseOwner}' ${facts.ownerPowers.join('; ')} too: hand the database to a non-superuser owner once ` +
        `with kennwilliamson-db setup --admin (ADMIN_DATABASE_URL, DB_OWNER_USER, DB_OWNER_PASSWORD), then restore as that owner.`,
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
  return { url: databaseUrlAs(databaseUrl, facts.databaseOwner, owner.password!), role: facts.databaseOwner, insteadOf: facts.role };
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
    const powers = await powersBeyondDatabase(client, role);
    if (powers.length > 0) {
      throw new RestoreError(
        `refusing to restore as '${role}': it ${powers.join('; it ')}. ${why} it could reach beyond the database. ` +
          `Restore as the database's owner (not a superuser; see setup --admin). The database was not touched.`,
      );
    }
  }
}

