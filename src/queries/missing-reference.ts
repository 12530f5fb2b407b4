import { ForeignKeyViolationError, NotFoundError } from '../errors.js';

/**
 * A rejection handler for an insert whose only foreign key names `entity` (a user, say): a
 * foreign-key violation there means that row does not exist, which callers know as
 * `NotFoundError`. Any other error passes through unchanged.
 *
 * @example await db.insertInto('incident_timers').values(row).execute().catch(notFoundOnMissingReference('user'))
 */
export function notFoundOnMissingReference(entity: string): (error: unknown) => never {
  return (error) => {
    if (error instanceof ForeignKeyViolationError) throw new NotFoundError(entity, { cause: error });
    throw error;
  };
}
