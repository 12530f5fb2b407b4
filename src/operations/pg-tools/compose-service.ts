import { isLocalHost, type DatabaseTarget } from '../../db/database-target.js';

/** An address the docker-compose service publishes its server on, as `docker compose port` prints it. */
export interface PublishedPort {
  /** `127.0.0.1`, `0.0.0.0` (every IPv4 address), `::` (every address) or one address. */
  host: string;
  port: number;
}

/**
 * Reads the output of `docker compose port postgres 5432`: one `address:port` per line
 * (`127.0.0.1:5432`, `0.0.0.0:5432`, `[::]:5432`); empty when the port is not published.
 *
 * @example parseComposePort('127.0.0.1:5432\n') // [{ host: '127.0.0.1', port: 5432 }]
 */
export function parseComposePort(output: string): PublishedPort[] {
  const published: PublishedPort[] = [];
  for (const line of output.split('\n')) {
    const match = /^\[?([^\]\s]*?)\]?:(\d+)$/.exec(line.trim());
    if (match) published.push({ host: match[1]!, port: Number(match[2]) });
  }
  return published;
}

function shown(address: PublishedPort): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

// Whether a connection to `host` on this machine arrives at a socket bound to `bound`.
function reaches(host: string, bound: string): boolean {
  if (bound === '0.0.0.0') return host === 'localhost' || /^127\./.test(host);
  if (bound === '::' || bound === '') return true;
  // `localhost` resolves to 127.0.0.1 and ::1; libpq and pg try each address in turn.
  return host === bound || (host === 'localhost' && (bound === '127.0.0.1' || bound === '::1'));
}

/**
 * Why the docker-compose service's own server is not the one `target` names, or undefined
 * when it is: `target` must be a local TCP host and a port the service publishes
 * (`published`, from {@link parseComposePort}). Its programs (`docker compose exec -T
 * postgres pg_dump`) reach only that server, so for any other target they would back up or
 * restore the wrong database under the right name.
 *
 * @example
 * composeServiceMismatch(databaseTarget('postgresql://u:p@127.0.0.1:54320/db'), [{ host: '127.0.0.1', port: 5432 }])
 * // 'the database URL reaches 127.0.0.1:54320, but the service publishes 127.0.0.1:5432'
 */
export function composeServiceMismatch(target: DatabaseTarget, published: readonly PublishedPort[]): string | undefined {
  const reached = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  if (target.host.startsWith('/')) return `the database URL reaches the Unix socket in ${target.host}, not the service's published port`;
  if (!isLocalHost(target.host)) return `the database URL reaches ${reached}, not this machine`;
  if (published.length === 0) return `the service publishes no port for its server, so the database URL (${reached}) cannot be it`;
  if (published.some((address) => address.port === target.port && reaches(target.host, address.host))) return undefined;
  return `the database URL reaches ${reached}, but the service publishes ${published.map(shown).join(', ')}`;
}
