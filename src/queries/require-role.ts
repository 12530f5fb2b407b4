import { type Expression, expressionBuilder, type ExpressionWrapper, type Kysely, type SqlBool } from 'kysely';
import type { DB } from '../../generated/db.js';
import { prepareQuery } from '../db/prepared-query.js';
import { ForbiddenError } from '../errors.js';
import { requireUuid } from '../validation.js';
import type { RoleName } from './users.js';

/**
 * "This user exists, is active and holds `role`" as an SQL condition, so a statement can check
 * the role in the same breath as its own work (`phraseSuggestions.approve` locks the suggestion
 * only for an admin). `userId` must already be validated.
 *
 * @example
 * db.selectFrom('phrase_suggestions').selectAll().where('id', '=', id).where(holdsRole(adminId, 'admin')).forUpdate()
 */
export function holdsRole(userId: string | Expression<string>, role: RoleName): ExpressionWrapper<DB, never, SqlBool> {
  const eb = expressionBuilder<DB>();
  return eb.exists(
    eb
      .selectFrom('user_roles')
      .innerJoin('roles', 'roles.id', 'user_roles.role_id')
      .innerJoin('users', 'users.id', 'user_roles.user_id')
      .select('user_roles.user_id')
      .where('user_roles.user_id', '=', userId)
      .where('roles.name', '=', role)
      .where('users.active', '=', true),
  );
}

// Every admin operation starts with it: built and compiled once (see prepareQuery).
const roleCheck = prepareQuery((db, p: { userId: string; role: string }) =>
  db.selectNoFrom(holdsRole(p.userId, p.role).as('held')),
);

/**
 * Throws `ForbiddenError` unless the user exists, is active and holds `role`. Run it inside the
 * transaction whose work it guards, before that work, so that check and work commit together.
 * It takes no lock: a revocation committed while the guarded work is still running does not
 * stop that work (the grant was valid when it started), and applies from the next call. An unknown or
 * deactivated user is Forbidden, not NotFound: the caller learns nothing about other users.
 * Callers validate the id under their own field name first (`adminId`, `createdBy`).
 *
 * @example
 * await inTransaction(db, async (trx) => {
 *   await requireRole(trx, adminId, 'admin')
 *   // … the admin's work, in the same transaction
 * })
 */
export async function requireRole(db: Kysely<DB>, userId: string, role: RoleName): Promise<void> {
  const id = requireUuid('userId', userId);
  const { rows } = await roleCheck.execute(db, { userId: id, role });
  if (!rows[0]?.held) throw new ForbiddenError(role);
}
