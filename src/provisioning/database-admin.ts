import type pg from 'pg';
import { withClient } from '../db/with-client.js';

/** The database a URL names, and the URL of the same server's `postgres` maintenance database. */
export function splitDatabaseUrl(databaseUrl: string): { database: string; maintenanceUrl: string; host: string } {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) throw new Error('The database URL names no database');
  return { database, maintenanceUrl: databaseUrlWith(databaseUrl, 'postgres'), host: url.hostname };
}

/**
 * The same server URL (credentials and parameters kept) naming another database.
 *
 * @example databaseUrlWith('postgresql://u:p@127.0.0.1:5432/app', 'postgres') // 'postgresql://u:p@127.0.0.1:5432/postgres'
 */
export function databaseUrlWith(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/**
 * Every host the URL can reach: its own, and `?host=` / `?hostaddr=` (comma lists included),
 * which libpq and pg let override it. An empty list means the default Unix socket.
 *
 * @example databaseHosts('postgresql://u:p@127.0.0.1/db?host=db.example.com') // ['127.0.0.1', 'db.example.com']
 */
export function databaseHosts(databaseUrl: string): string[] {
  const url = new URL(databaseUrl);
  return [url.hostname, ...url.searchParams.getAll('host'), ...url.searchParams.getAll('hostaddr')]
    .flatMap((value) => decodeURIComponent(value).split(','))
    .map((host) => host.trim().replace(/^\[|\]$/g, ''))
    .filter((host) => host !== '');
}

/** A loopback address or a Unix socket folder. */
export function isLocalHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host.startsWith('/');
}

/**
 * True when every host the URL can reach is local ({@link isLocalHost}): the only servers a
 * reset or restore may wipe without --force.
 *
 * @example isLocalDatabaseUrl('postgresql://u:p@127.0.0.1/db?host=db.example.com') // false
 */
export function isLocalDatabaseUrl(databaseUrl: string): boolean {
  return databaseHosts(databaseUrl).every(isLocalHost);
}

/**
 * Runs `work` on a connection to the server's `postgres` database, for statements that
 * cannot run inside the database they act on (CREATE/DROP DATABASE).
 */
export async function withMaintenanceClient<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(splitDatabaseUrl(databaseUrl).maintenanceUrl, work);
}

/**
 * Creates the database the URL names unless it exists; returns whether it created it.
 *
 * @example
 * await ensureDatabase('postgresql://postgres:postgres@127.0.0.1:54320/kennwilliamson')
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const { database } = splitDatabaseUrl(databaseUrl);
  return withMaintenanceClient(databaseUrl, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
      return true;
    } catch (error) {
      // 42P04 duplicate_database: a concurrent caller created it first.
      if ((error as { code?: string }).code === '42P04') return false;
      throw error;
    }
  });
}

/**
 * Drops the database the URL names (disconnecting its sessions) and creates it empty.
 *
 * @example
 * await recreateDatabase(url) // then migrate
 */
export async function recreateDatabase(databaseUrl: string): Promise<void> {
  const { database } = splitDatabaseUrl(databaseUrl);
  await withMaintenanceClient(databaseUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
  });
}
