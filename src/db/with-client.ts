import type * as pg from 'pg';
import { connectError } from './connect-error.js';
import { defaultDbConfig } from './db-config.js';
import { LibraryClient } from './library-client.js';

/**
 * Opens one connection of its own (not from a pool), with the pool's default connect timeout
 * and TCP keepalive (see LibraryClient), so a dead peer of a waiting connection (the migration
 * lock's holder sits idle for a whole run) is noticed in about 15 s rather than the kernel's
 * two hours; the caller ends it (`end()` is bounded: a silent peer cannot hold it). A refused,
 * reset or unauthenticated connection is a typed DbError.
 *
 * @example
 * const client = await openClient(url, 'kennwilliamson-migrate-monitor')
 * try { await client.query('SELECT 1') } finally { await client.end() }
 */
export async function openClient(databaseUrl: string, applicationName = 'kennwilliamson-db'): Promise<pg.Client> {
  const client = new LibraryClient({
    databaseUrl,
    applicationName,
    connectTimeoutMs: defaultDbConfig.connectTimeoutMs,
    keepAliveDelayMs: defaultDbConfig.keepAliveDelayMs,
  });
  // A refused, reset or unauthenticated connection is a typed, retryable-or-not DbError, as
  // on the pool; errors of the work itself are the caller's to map.
  await client.connect().catch((error: unknown) => {
    throw connectError(error, databaseUrl, defaultDbConfig.connectTimeoutMs);
  });
  return client;
}

/**
 * Runs `work` on one connection of its own (not from a pool), closed afterwards whatever
 * happens (politely, or destroyed when the peer does not answer the goodbye within a second):
 * for migrations, which hold a session-level lock, and for maintenance statements.
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
