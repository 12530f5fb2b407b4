import { stopEmbeddedServer } from '../../embedded/embedded-server.js';
import { localServerOptions } from '../../embedded/local-server.js';
import type { Command } from '../command.js';
import { printLine } from '../terminal-text.js';

/** `npm run db:stop`: stop the local embedded PostgreSQL. */
export const stopCommand: Command = {
  name: 'stop',
  summary: 'stop the local embedded PostgreSQL',
  usage: 'Usage: npm run db:stop\n\nStops the local embedded PostgreSQL started by npm run db:start.\n',
  options: {},
  positionals: { min: 0, max: 0 },
  async run() {
    const stopped = await stopEmbeddedServer(localServerOptions().dataDir);
    printLine(stopped ? 'PostgreSQL stopped.' : 'PostgreSQL was not running.');
  },
};
