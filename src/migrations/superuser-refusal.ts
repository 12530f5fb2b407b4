import type pg from 'pg';
import { ConfigError } from '../errors.js';

/**
 * Refuses a login as a superuser for a step that migrates (`migrate`, `migrate down`, `setup`'s
 * release step), naming the variable the URL came from: what a superuser's migration creates
 * is its own, so the owner's grants to the application role never reach it and the owner's
 * backups cannot read it. `nothing` ends the message: what was left undone.
 *
 * @example await refuseSuperuserLogin(client, 'MIGRATION_DATABASE_URL', 'nothing was applied')
 */
export async function refuseSuperuserLogin(client: pg.ClientBase, variable: string, nothing: string): Promise<void> {
  const { rows } = await client.query<{ role: string; superuser: boolean }>(
    'SELECT current_user AS role, rolsuper AS superuser FROM pg_catalog.pg_roles WHERE rolname = current_user',
  );
  const { role, superuser } = rows[0] ?? { role: '', superuser: false };
  if (superuser) throw superuserRefusal(role, variable, nothing);
}

/** The refusal {@link refuseSuperuserLogin} throws, for a caller that has looked at the role itself. @example throw superuserRefusal('postgres', 'MIGRATION_DATABASE_URL', 'nothing was created') */
export function superuserRefusal(role: string, variable: string, nothing: string): ConfigError {
  return new ConfigError(
    variable,
    `${variable} logs in as '${role}', a superuser: the tables and functions a migration creates would be its own, ` +
      "which the owner's grants to the application role never reach and the owner's backups cannot read. Migrate as the " +
      `database's owner (DB_OWNER_USER, as setup --admin made it); ${nothing}`,
  );
}
