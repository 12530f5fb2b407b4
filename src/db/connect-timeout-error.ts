import { ConnectionError } from '../errors.js';
import { databaseTarget } from './database-target.js';

/**
 * A login that did not finish within the connect timeout, said with the server it was trying
 * (`host:port`, as for a refused connection) and the bound: pg's own error ("timeout expired")
 * names neither, and an operator whose command failed so could not tell which URL was silent.
 *
 * @example throw connectTimeoutError(url, 10_000, error) // The database connection to db.internal:5432 failed (connect-timeout: no answer within the connect timeout of 10000 ms) …
 */
export function connectTimeoutError(databaseUrl: string, connectTimeoutMs: number, cause: unknown): ConnectionError {
  let server: string | undefined;
  try {
    const { host, port } = databaseTarget(databaseUrl);
    server = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  } catch {
    // A URL the target cannot be read from (pg reads more than it does): said without it.
  }
  return new ConnectionError('connect-timeout', { cause, server, detail: `no answer within the connect timeout of ${connectTimeoutMs} ms` });
}
