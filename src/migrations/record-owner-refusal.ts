import type pg from 'pg';
import { ConfigError } from '../errors.js';
import { qualifiedMigrationsTable } from './migration-storage.js';

/**
 * Refuses a login that is not the owner of the migrations record, where the database has one,
 * for a step that migrates (`migrate`, `migrate down`, `setup`'s release step), naming the
 * variable the URL came from. Every object the migrations made belongs to the role that made
 * the record; another role's migration would create objects of its own, which the owner's
 * default privileges never grant to the application role (its next release's queries of a new
 * table fail with "permission denied") and the owner's backups cannot read. This catches what
 * the superuser check cannot: a hosted platform's administrator (`rds_superuser`, Supabase's
 * `postgres`), or any other role given the release's URL by mistake. `nothing` ends the
 * message: what was left undone.
 *
 * @example await refuseOtherRecordOwner(client, 'MIGRATION_DATABASE_URL', 'nothing was applied')
 */
export async function refuseOtherRecordOwner(client: pg.ClientBase, variable: string, nothing: string): Promise<void> {
  // current_user, not session_user: a login whose settings SET ROLE to the owner creates as the owner.
  const { rows } = await client.query<{ role: string; owner: string | null }>(
    `SELECT current_user AS role,
            (SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)) AS owner`,
    [qualifiedMigrationsTable],
  );
  const { role, owner } = rows[0] ?? { role: '', owner: null };
  if (owner === null || owner === role) return;
  throw new ConfigError(
    variable,
    `${variable} logs in as '${role}', but the migrations record (${qualifiedMigrationsTable.replaceAll('"', '')}) belongs to '${owner}', ` +
      `as what the migrations made does: what '${role}' created would be its own, which '${owner}''s grants to the application role never reach ` +
      `and '${owner}''s backups cannot read. Migrate as '${owner}' with its own login (a role that may SET ROLE to it still creates as itself); ` +
      `where '${owner}' is not the database's owner, setup --admin hands every object in public over to the owner first; ${nothing}`,
  );
}
