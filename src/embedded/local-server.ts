import path from 'node:path';
import { packageRoot } from '../package-root.js';
import { embeddedDatabaseUrl, type EmbeddedServerOptions } from './embedded-server.js';

/**
 * The development server `npm run db:start` manages: data in `.data/postgres` (git-ignored;
 * `EMBEDDED_PG_DATA_DIR` moves it), on 127.0.0.1 at `EMBEDDED_PG_PORT` (default 54320, away
 * from a system server on 5432).
 */
export function localServerOptions(env: NodeJS.ProcessEnv = process.env): EmbeddedServerOptions {
  const port = Number(env.EMBEDDED_PG_PORT ?? 54320);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`EMBEDDED_PG_PORT must be a port number, got '${env.EMBEDDED_PG_PORT}'`);
  }
  return {
    dataDir: env.EMBEDDED_PG_DATA_DIR?.trim() || path.join(packageRoot(), '.data', 'postgres'),
    port,
    user: 'postgres',
    password: 'postgres',
    database: 'kennwilliamson',
  };
}

/** `DATABASE_URL` when set, else the URL of the local embedded server. */
export function cliDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const url = env.DATABASE_URL?.trim();
  return url ? url : embeddedDatabaseUrl(localServerOptions(env));
}
