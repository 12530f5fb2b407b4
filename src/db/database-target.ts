import { ConfigError } from '../errors.js';

/**
 * The server a `postgresql://` URL reaches: decided once, the way pg reads the URL, and then
 * handed to the PostgreSQL tools as explicit `--host`/`--port`/`--username`, so that pg (the
 * migrator, the backup's version probe, `db:reset`) and libpq (pg_dump, pg_restore) reach
 * the same server, and the local-host guards and every message name that server.
 */
export interface DatabaseTarget {
  /** A host name, an IP address, or a Unix socket folder (starts with `/`). */
  host: string;
  port: number;
  database: string;
  /** The login role, when the URL or `PGUSER`/`USER` names one (else the tools use the OS account, as pg would). */
  user: string | undefined;
  /** Where the host came from: the URL's own host, its `?host=` parameter, `PGHOST`, or pg's default (`localhost`). */
  hostFrom: 'url' | 'host parameter' | 'PGHOST' | 'default';
  /** `user@host:port/database` for messages: never the password. */
  description: string;
}

const refuser =
  (name: string) =>
  (message: string): never => {
    throw new ConfigError(name, message);
  };

const percentEncoding = "percent-encode it in the password or user name ('#' as %23, '/' as %2F, '?' as %3F, '@' as %40, '%' as %25)";

/**
 * Why a URL that holds a password cannot be read as the person meant, said without echoing
 * any of it: a character that ends the user-information part early leaves the rest of the
 * password to be read as a port, a path or a fragment, and pg then fails far from the cause
 * (`Invalid URL`, or `ENOTFOUND` for a host made of the user name).
 */
function misreadCredentials(databaseUrl: string, name: string): string | undefined {
  // WHATWG's parser drops everything after '#' without a word; pg would connect elsewhere.
  if (databaseUrl.includes('#')) {
    return `${name} holds a '#', which ends a URL (what follows is dropped); if it is part of the password, ${percentEncoding}`;
  }
  const rest = databaseUrl.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const hostEnd = rest.search(/[/?]/);
  const at = rest.lastIndexOf('@');
  // An '@' after the host part ended, with no '=' between (so not a query value such as
  // ?user=a@b): a '/' or '?' in the password ended the host part before its '@'.
  if (hostEnd >= 0 && at > hostEnd && !rest.slice(hostEnd, at).includes('=')) {
    return `${name} has an '@' after its host part ended: a '/' or '?' in the password (or user name) ends it early; ${percentEncoding}`;
  }
  return undefined;
}

// Whether the URL parser refused the URL for its port. The port text is never echoed: when
// the password holds an unencoded character, this "port" may be part of it.
function hasInvalidPort(databaseUrl: string): boolean {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/i.exec(databaseUrl);
  const port = authority?.[2];
  return port !== undefined && port !== '' && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535);
}

/**
 * Parses a `postgresql://` URL as pg does, including `postgresql://user:pw@/db?host=/socket`
 * (no host before the path), which WHATWG's URL parser rejects: pg retries with a
 * placeholder host, and so does this. A URL it cannot read is a `ConfigError` under `name`
 * (the variable it came from, `DATABASE_URL` unless said otherwise) that says why, never
 * echoing the URL: a bad port, or a '#', '/' or '?' in the password that needs percent-encoding.
 *
 * @example parsePostgresUrl('postgresql://u:p@/db?host=/run/postgresql').hostname // ''
 */
export function parsePostgresUrl(databaseUrl: string, name = 'DATABASE_URL'): { url: URL; hostname: string } {
  const refuse = refuser(name);
  // From plain JavaScript, or a `process.env.X!`: a ConfigError naming it, not a TypeError.
  if (typeof databaseUrl !== 'string' || databaseUrl.trim() === '') refuse(`${name} is not set (no URL was given)`);
  const misread = misreadCredentials(databaseUrl, name);
  if (misread !== undefined) refuse(misread);
  let url: URL;
  let hostless = false;
  try {
    try {
      url = new URL(databaseUrl);
    } catch {
      url = new URL(databaseUrl.replace('@/', '@___DUMMY___/'));
      hostless = true;
    }
  } catch {
    // Never echo the URL: it holds a password.
    if (hasInvalidPort(databaseUrl)) {
      return refuse(`the port of ${name} must be one number from 1 to 65535 (${name} is not echoed: it holds a password)`);
    }
    return refuse(`${name} is not a valid postgresql:// URL (postgresql://user:password@host:port/database)`);
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    refuse(`${name} must start with postgresql://, not ${url.protocol}//`);
  }
  const hostname = hostless ? '' : decodeURIComponent(url.hostname.replace(/^\[(.+)\]$/, '$1'));
  return { url, hostname };
}

function nonEmpty(value: string | null | undefined): string | undefined {
  return value === null || value === undefined || value === '' ? undefined : value;
}

/**
 * Decides which server a URL reaches, exactly as pg does: `?host=` (the last one) over the
 * URL's own host, then `PGHOST`, then `localhost`; `?port=` over the URL's port, then
 * `PGPORT`, then 5432. (pg's default is `localhost` over TCP where libpq's is the Unix
 * socket; the tools are given the result explicitly, so both reach the same server.)
 * Refuses what pg and libpq would read differently: a comma list of hosts or ports (libpq
 * tries each, pg none) and `hostaddr` (libpq connects there, pg ignores it). Every refusal
 * is a `ConfigError` under `name`, the variable the URL came from.
 *
 * @example
 * databaseTarget('postgresql:///kennwilliamson', { PGHOST: 'db.example.org' })
 * // { host: 'db.example.org', port: 5432, database: 'kennwilliamson', hostFrom: 'PGHOST', … }
 */
export function databaseTarget(databaseUrl: string, env: NodeJS.ProcessEnv = process.env, name = 'DATABASE_URL'): DatabaseTarget {
  const refuse = refuser(name);
  const { url, hostname } = parsePostgresUrl(databaseUrl, name);
  const query = (name: string) => nonEmpty(url.searchParams.getAll(name).at(-1));
  if (url.searchParams.has('hostaddr')) {
    refuse(`${name} sets hostaddr, which pg ignores and the PostgreSQL tools obey; put the address in the host instead`);
  }

  let host: string;
  let hostFrom: DatabaseTarget['hostFrom'];
  const parameter = query('host');
  const fromEnv = nonEmpty(env.PGHOST?.trim());
  if (parameter !== undefined) [host, hostFrom] = [parameter, 'host parameter'];
  else if (hostname !== '') [host, hostFrom] = [hostname, 'url'];
  else if (fromEnv !== undefined) [host, hostFrom] = [fromEnv, 'PGHOST'];
  else [host, hostFrom] = ['localhost', 'default'];
  if (host.includes(',')) {
    refuse(`${name} (through its ${hostFrom}) lists several hosts; pg connects to one only, so name one`);
  }

  const portText = query('port') ?? nonEmpty(url.port) ?? nonEmpty(env.PGPORT?.trim()) ?? '5432';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    refuse(`the port of ${name} (or PGPORT) must be one number from 1 to 65535, got '${portText}'`);
  }

  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) refuse(`${name} names no database`);
  const user = nonEmpty(query('user') ?? decodeURIComponent(url.username)) ?? nonEmpty(env.PGUSER) ?? nonEmpty(env.USER);
  const shownHost = host.includes(':') && !host.startsWith('/') ? `[${host}]` : host;
  return {
    host,
    port,
    database,
    user,
    hostFrom,
    description: `${user ? `${user}@` : ''}${shownHost}:${port}/${database}`,
  };
}

/** A loopback address, `localhost`, or a Unix socket folder. */
export function isLocalHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('/');
}
