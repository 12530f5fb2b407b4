import { stopEmbeddedServer } from '../embedded/embedded-server.js';
import { localServerOptions } from '../embedded/local-server.js';
import { runCli } from './run-cli.js';

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) {
    return void console.log('Usage: npm run db:stop\n\nStops the local embedded PostgreSQL started by npm run db:start.');
  }
  const stopped = await stopEmbeddedServer(localServerOptions().dataDir);
  console.log(stopped ? 'PostgreSQL stopped.' : 'PostgreSQL was not running.');
});
