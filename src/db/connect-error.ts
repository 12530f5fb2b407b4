import { ConnectionError, type DbError, mapDatabaseError } from '../errors.js';
import { databaseTarget } from './database-target.js';

/**
 * pg's error of a connection that did not open, typed (see mapDatabaseError); a login that did
 * not finish within the connect timeout said with the server it was trying (`host:port`, as for
 * a refused connection) and the bound: pg's own error ("timeout expired") names neither, and an
 * operator whose command failed so could not tell which URL was silent.
 *
 * @example throw connectError(error, url, 10_000) // The database connection to db.internal:5432 failed (connect-timeout: no answer within the connect timeout of 10000 ms) …
 */
export function connectError(error: unknown, databaseUrl: string, connectTimeoutMs: number): DbError {
  const mapped = mapDatabaseError(error);
  if (!(mapped instanceof ConnectionError && mapped.reason === 'connect-timeout')) return mapped;
  let server: string | undefined;
  try {
    const { host, port } = databaseTarget(databaseUrl);
    server = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  } catch {
    // A URL the target cannot be read from (pg reads more than it does): said without it.
  }
  return new ConnectionError('connect-timeout', { cause: error, server, detail: `no answer within the connect timeout of ${connectTimeoutMs} ms` });
}
