import { NoResultError, type QueryNode } from 'kysely';
import { type DbError, mapDatabaseError } from '../errors.js';

/**
 * The error for `executeTakeFirstOrThrow` when a statement that always returns a row returned
 * none (a trigger or a policy could suppress it): Kysely's `NoResultError`, mapped like every
 * other failure (a `NotFoundError`), so that no error of Kysely's own leaves the package.
 * An arrow function: Kysely calls anything with a prototype as a constructor.
 *
 * @example await trx.insertInto('phrases').values(row).returning(columns).executeTakeFirstOrThrow(noRowReturned)
 */
export const noRowReturned = (node: QueryNode): DbError => mapDatabaseError(new NoResultError(node));
