import pg from 'pg';
import { mapDatabaseError } from '../errors.js';

/**
 * Runs `work` on one connection of its own (not from a pool), closed afterwards whatever
 * happens: for migrations, which hold a session-level lock, and for maintenance statements.
 * The connection always has an `application_name` (`kennwilliamson-db` unless given one, or
 * the URL's own `?application_name=`), so an operator can tell it apart in `pg_stat_activity`.
 *
 * @example await withClient(url, (client) => client.query('SELECT 1'), 'kennwilliamson-migrate')
 */
export async function withClient<T>(
  databaseUrl: string,
  work: (client: pg.Client) => Promise<T>,
  applicationName = 'kennwilliamson-db',
): Promise<T> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    // A one-off connection should fail, not hang, when the server does not answer.
    connectionTimeoutMillis: 10_000,
    application_name: applicationName,
  });
  // A dropped connection surfaces as the failing query's error; this only keeps the
  // client's 'error' event from crashing the process.
  client.on('error', () => undefined);
  // A refused, reset or unauthenticated connection is a typed, retryable-or-not DbError, as
  // on the pool; errors of the work itself are the caller's to map.
  await client.connect().catch((error: unknown) => {
    throw mapDatabaseError(error);
  });
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
