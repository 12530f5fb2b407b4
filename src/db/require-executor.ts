import { ValidationError } from '../errors.js';

/**
 * Refuses, before any query, what is not a Kysely instance or transaction where one is
 * expected (plain JavaScript, a `pg.Pool` passed by mistake, `undefined`): a `ValidationError`
 * on `db`, where a missing method surfaced as a `TypeError`, or as a failed database call.
 *
 * @example requireExecutor(db) // throws ValidationError('db', …) for null, {} or a pg.Pool
 */
export function requireExecutor(db: unknown): void {
  if (typeof (db as { getExecutor?: unknown } | null | undefined)?.getExecutor !== 'function') {
    throw new ValidationError('db', 'must be a Kysely instance or transaction (createDb() makes one)');
  }
}
