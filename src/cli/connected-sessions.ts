import { answeringWithin, roundTripDeadlineMs } from '../db/answer-deadline.js';
import { withClient } from '../db/with-client.js';
import { oneLine } from '../one-line.js';

/** Sessions connected to a database, by role and application. */
export type ConnectedSessions = Array<{ role: string; application: string; count: number }>;

/**
 * The other client sessions connected to the database `client` is in now, by role and
 * application: what a reset's drop ends, and what queues behind a restore's locks.
 *
 * @example await connectedSessions(client) // [{ role: 'kennwilliamson_app', application: 'api', count: 2 }]
 */
export async function connectedSessions(client: { query: import('pg').ClientBase['query'] }): Promise<ConnectedSessions> {
  const { rows } = await client.query<{ role: string | null; application: string | null; count: number }>(
    `SELECT usename AS role, application_name AS application, count(*)::int AS count
       FROM pg_catalog.pg_stat_activity
      WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
        -- A role without pg_read_all_stats sees other roles' sessions with no backend_type:
        -- a background worker has no role.
        AND (backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL))
      GROUP BY 1, 2 ORDER BY 1, 2`,
  );
  return rows.map((row) => ({ ...row, role: row.role ?? 'an unknown role', application: row.application ?? '' }));
}

/**
 * The same, looked at from a connection of its own to `databaseUrl`, in one bounded round trip.
 *
 * @example await connectedSessionsOf(url, 'kennwilliamson-restore')
 */
export function connectedSessionsOf(databaseUrl: string, applicationName: string): Promise<ConnectedSessions> {
  return withClient(databaseUrl, (connection) => connectedSessions(answeringWithin(connection, roundTripDeadlineMs)), applicationName);
}

/**
 * Their count and names, for a question: undefined for none.
 *
 * @example sessionsNamed(sessions) // { total: 3, named: 'kennwilliamson_app (api) ×2, postgres (psql)' }
 */
export function sessionsNamed(sessions: ConnectedSessions): { total: number; named: string } | undefined {
  if (sessions.length === 0) return undefined;
  const total = sessions.reduce((sum, each) => sum + each.count, 0);
  // Names the server's roles and clients chose, one line each.
  const named = sessions.map((each) => oneLine(`${each.role}${each.application ? ` (${each.application})` : ''}${each.count > 1 ? ` ×${each.count}` : ''}`));
  return { total, named: named.join(', ') };
}
