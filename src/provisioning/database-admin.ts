import type pg from 'pg';
import { databaseTarget, isLocalHost, parsePostgresUrl, type DatabaseTarget } from '../db/database-target.js';
import { withClient } from '../db/with-client.js';
import { ConfigError } from '../errors.js';

export { isLocalHost };

/** The database a URL names, and the URL of the same server's `postgres` maintenance database. */
export function splitDatabaseUrl(databaseUrl: string): { database: string; maintenanceUrl: string } {
  const { url } = parsePostgresUrl(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) throw new ConfigError('DATABASE_URL', 'DATABASE_URL names no database');
  return { database, maintenanceUrl: databaseUrlWith(databaseUrl, 'postgres') };
}

/**
 * The same server URL (credentials and parameters kept) naming another database; a URL
 * without a host (`postgresql://u:p@/db?host=/run/postgresql`) stays without one.
 *
 * @example databaseUrlWith('postgresql://u:p@127.0.0.1:5432/app', 'postgres') // 'postgresql://u:p@127.0.0.1:5432/postgres'
 */
export function databaseUrlWith(databaseUrl: string, database: string): string {
  const { url, hostname } = parsePostgresUrl(databaseUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  const text = url.toString();
  return hostname === '' && url.hostname === '___DUMMY___' ? text.replace('@___DUMMY___/', '@/') : text;
}

/**
 * Refuses, unless `force`, a database that is not on this machine: the server the URL
 * reaches, decided as pg decides it ({@link databaseTarget}: `?host=`, the URL's host,
 * `PGHOST`, `localhost`), so a URL without a host and a remote `PGHOST` cannot slip past.
 * Returns that server, for messages.
 *
 * @example
 * const target = requireLocalDatabase(url, { force: args.includes('--force'), action: 'reset' })
 * // Error: refusing to reset a database on the non-local host 'db.example.org' (from PGHOST); pass --force if you mean it
 */
export function requireLocalDatabase(
  databaseUrl: string,
  options: { force: boolean; action: string; env?: NodeJS.ProcessEnv },
): DatabaseTarget {
  const target = databaseTarget(databaseUrl, options.env ?? process.env);
  if (!isLocalHost(target.host) && !options.force) {
    const from = target.hostFrom === 'url' ? '' : ` (from ${target.hostFrom === 'host parameter' ? "the URL's ?host=" : target.hostFrom})`;
    throw new ConfigError(
      'DATABASE_URL',
      `refusing to ${options.action} a database on the non-local host '${target.host}'${from}; pass --force if you mean it`,
    );
  }
  return target;
}

/**
 * True when the server the URL reaches ({@link databaseTarget}) is on this machine
 * ({@link isLocalHost}): the only servers a reset or restore may wipe without --force.
 *
 * @example isLocalDatabaseUrl('postgresql://u:p@127.0.0.1/db?host=db.example.com') // false
 */
export function isLocalDatabaseUrl(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return isLocalHost(databaseTarget(databaseUrl, env).host);
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
