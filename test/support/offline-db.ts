import { Kysely, PostgresDialect } from 'kysely';
import type { DB } from '../../generated/db.js';

/**
 * A `Kysely<DB>` whose every query fails: a `ValidationError` from a function given this
 * proves the input was rejected before any query was attempted.
 */
export const offlineDb = new Kysely<DB>({
  dialect: new PostgresDialect({
    pool: {
      connect: async () => {
        throw new Error('a query reached the database');
      },
      end: async () => undefined,
    },
  }),
});
