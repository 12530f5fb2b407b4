import { answeringWithin, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { withClient } from '../../db/with-client.js';
import { newTableGrantees } from '../../provisioning/new-table-grantees.js';
import { preparedTransactionsOf, type PreparedTransaction } from '../../provisioning/prepared-transactions.js';

/** What a reset's drop ends besides the data, read from the database before it asks. */
export interface WhatResetEnds {
  /** Other sessions connected to it now, which `DROP DATABASE … WITH (FORCE)` ends: by role and application. */
  sessions: Array<{ role: string; application: string; count: number }>;
  /** The roles the owner's default privileges give the rows of every new table: the application role, whose grants go with the database. */
  applicationRoles: string[];
  /** Its prepared transactions, which the drop cannot end: the reset refuses while there are any. */
  preparedTransactions: PreparedTransaction[];
}

/**
 * Looks at the database a reset is about to drop (as whoever resets it): which sessions the
 * drop will end, and which application role loses its grants with it.
 *
 * @example await whatResetEnds(databaseUrl) // { sessions: [{ role: 'kennwilliamson_app', application: 'api', count: 2 }], applicationRoles: ['kennwilliamson_app'], preparedTransactions: [] }
 */
export async function whatResetEnds(databaseUrl: string): Promise<WhatResetEnds> {
  return withClient(
    databaseUrl,
    async (connection) => {
      const client = answeringWithin(connection, roundTripDeadlineMs);
      const { rows: sessions } = await client.query<{ role: string | null; application: string | null; count: number }>(
        `SELECT usename AS role, application_name AS application, count(*)::int AS count
           FROM pg_catalog.pg_stat_activity
          WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
            -- A role without pg_read_all_stats sees other roles' sessions with no backend_type:
            -- a background worker has no role.
            AND (backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL))
          GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      const { applicationRoles } = await newTableGrantees(client);
      const preparedTransactions = await preparedTransactionsOf(client);
      return {
        sessions: sessions.map((row) => ({ ...row, role: row.role ?? 'an unknown role', application: row.application ?? '' })),
        applicationRoles,
        preparedTransactions,
      };
    },
    'kennwilliamson-reset',
  );
}

/**
 * The sessions as one line for the question (or the log, with --yes), or undefined for none.
 *
 * @example endedSessionsLine(ends) // "It ends 2 session(s) connected to it now: kennwilliamson_app (api) ×2."
 */
export function endedSessionsLine(ends: WhatResetEnds | undefined): string | undefined {
  if (ends === undefined || ends.sessions.length === 0) return undefined;
  const total = ends.sessions.reduce((sum, each) => sum + each.count, 0);
  const named = ends.sessions.map((each) => `${each.role}${each.application ? ` (${each.application})` : ''}${each.count > 1 ? ` ×${each.count}` : ''}`);
  return `It ends ${total} session(s) connected to it now: ${named.join(', ')}.`;
}
