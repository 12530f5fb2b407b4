import { ForeignKeyViolationError, mapDatabaseError, NotFoundError } from '../errors.js';

/**
 * A rejection handler for an insert whose only foreign key names `entity` (a user, say): a
 * foreign-key violation there means that row does not exist, which callers know as
 * `NotFoundError`. Any other error passes through, mapped (a `Kysely` that createDb did not
 * make hands over pg's own errors).
 *
 * @example await db.insertInto('incident_timers').values(row).execute().catch(notFoundOnMissingReference('user'))
 */
export function notFoundOnMissingReference(entity: string): (error: unknown) => never {
  return (error) => {
    const mapped = mapDatabaseError(error);
    if (mapped instanceof ForeignKeyViolationError) throw new NotFoundError(entity, { cause: mapped });
    throw mapped;
  };
}
