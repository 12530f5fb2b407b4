import pg from 'pg';
import { mapDatabaseError } from '../errors.js';

/**
 * Runs `work` on one connection of its own (not from a pool), closed afterwards whatever
 * happens: for migrations, which hold a session-level lock, and for maintenance statements.
 *
 * @example await withClient(url, (client) => client.query('SELECT 1'), 'kennwilliamson-migrate')
 */
export async function withClient<T>(
  databaseUrl: string,
  work: (client: pg.Client) => Promise<T>,
  applicationName?: string,
): Promise<T> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    // A one-off connection should fail, not hang, when the server does not answer.
    connectionTimeoutMillis: 10_000,
    ...(applicationName === undefined ? {} : { application_name: applicationName }),
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
