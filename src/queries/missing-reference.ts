import { ForeignKeyViolationError, mapDatabaseError, NotFoundError } from '../errors.js';

/**
 * A rejection handler for an insert whose foreign keys name rows a caller knows as entities:
 * a foreign-key violation there means that row does not exist (or was deleted while the
 * statement waited for it), which callers know as `NotFoundError`. `entity` names it; for a
 * statement with several foreign keys, `{ constraint: entity }` tells them apart. Any other
 * error passes through, mapped (a `Kysely` that createDb did not make hands over pg's own errors).
 *
 * @example await db.insertInto('incident_timers').values(row).execute().catch(notFoundOnMissingReference('user'))
 * @example .catch(notFoundOnMissingReference({ user_excluded_phrases_user_id_fkey: 'user', user_excluded_phrases_phrase_id_fkey: 'phrase' }))
 */
export function notFoundOnMissingReference(entity: string | Readonly<Record<string, string>>): (error: unknown) => never {
  return (error) => {
    const mapped = mapDatabaseError(error);
    if (mapped instanceof ForeignKeyViolationError) {
      const missing = typeof entity === 'string' ? entity : entity[mapped.constraint ?? ''];
      if (missing !== undefined) throw new NotFoundError(missing, { cause: mapped });
    }
    throw mapped;
  };
}
