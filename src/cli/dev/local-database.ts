import { startEmbeddedServer } from '../../embedded/embedded-server.js';
import { cliDatabaseUrl, localServerOptions } from '../../embedded/local-server.js';
import type { Command } from '../command.js';

/** Whether the environment names a database; if not, the repository's commands use the embedded one. */
export function databaseConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.MIGRATION_DATABASE_URL?.trim() || env.DATABASE_URL?.trim());
}

/**
 * The same command as the shipped bin runs, defaulting to the local embedded server when no
 * URL is set (starting it first when `start`), as `npm run db:setup` and friends promise.
 *
 * @example withLocalDatabase(setupCommand, { start: true, announce: true })
 */
export function withLocalDatabase(command: Command, { start = false, announce = false } = {}): Command {
  return {
    ...command,
    async run(input) {
      const local = !databaseConfigured();
      if (local) {
        if (start) {
          const { alreadyRunning } = await startEmbeddedServer(localServerOptions(), (line) => console.log(line));
          if (!alreadyRunning) console.log('started the local PostgreSQL');
        }
        process.env.DATABASE_URL = cliDatabaseUrl();
      }
      await command.run(input);
      if (local && announce) console.log(`DATABASE_URL=${process.env.DATABASE_URL}`);
    },
  };
}
