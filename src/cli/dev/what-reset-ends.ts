import { answeringWithin, roundTripDeadlineMs } from '../../db/answer-deadline.js';
import { type ConnectedSessions, connectedSessions, sessionsNamed } from '../connected-sessions.js';
import { withClient } from '../../db/with-client.js';
import { newTableGrantees } from '../../provisioning/new-table-grantees.js';
import { preparedTransactionsOf, type PreparedTransaction } from '../../provisioning/prepared-transactions.js';

/** What a reset's drop ends besides the data, read from the database before it asks. */
export interface WhatResetEnds {
  /** Other sessions connected to it now, which `DROP DATABASE … WITH (FORCE)` ends: by role and application. */
  sessions: ConnectedSessions;
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
      const sessions = await connectedSessions(client);
      const { applicationRoles } = await newTableGrantees(client);
      const preparedTransactions = await preparedTransactionsOf(client);
      return { sessions, applicationRoles, preparedTransactions };
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
  const sessions = ends === undefined ? undefined : sessionsNamed(ends.sessions);
  return sessions && `It ends ${sessions.total} session(s) connected to it now: ${sessions.named}.`;
}
