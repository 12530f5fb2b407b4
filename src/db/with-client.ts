import pg from 'pg';
import { mapDatabaseError } from '../errors.js';

/** How long a connection of its own may take to be accepted and logged in. */
export const clientConnectTimeoutMs = 10_000;

// As the pool's connections: probes after 5 s of silence, then (Node's libuv) every second,
// ten times, so a dead peer of a waiting connection (the migration lock's holder sits idle
// for a whole run) is noticed in about 15 s rather than the kernel's two hours.
const keepAliveDelayMs = 5_000;

/**
 * Opens one connection of its own (not from a pool), with a connect timeout and TCP keepalive;
 * the caller ends it. A refused, reset or unauthenticated connection is a typed DbError.
 *
 * @example
 * const client = await openClient(url, 'kennwilliamson-migrate-monitor')
 * try { await client.query('SELECT 1') } finally { await client.end() }
 */
export async function openClient(databaseUrl: string, applicationName = 'kennwilliamson-db'): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    // A one-off connection should fail, not hang, when the server does not answer.
    connectionTimeoutMillis: clientConnectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: keepAliveDelayMs,
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
  return client;
}

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
  const client = await openClient(databaseUrl, applicationName);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
