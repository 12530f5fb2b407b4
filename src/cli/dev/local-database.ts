import { startEmbeddedServer } from '../../embedded/embedded-server.js';
import { cliDatabaseUrl, localAdminUrl, localOwner, localServerLocation, localServerOptions, requireLocalServerPort } from '../../embedded/local-server.js';
import type { Command } from '../command.js';
import { printLine } from '../terminal-text.js';

/** Whether the environment names a database; if not, the repository's commands use the embedded one. */
export function databaseConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.MIGRATION_DATABASE_URL?.trim() || env.DATABASE_URL?.trim());
}

/**
 * The same command as the shipped bin runs, defaulting to the local embedded server when no
 * URL is set (starting it first when `start`), as `npm run db:setup` and friends promise.
 * There, commands connect as the database's owner role (not the superuser), and with
 * `admin` the command also gets the superuser's `ADMIN_DATABASE_URL` and runs as
 * `--admin` (provisioning the owner role before it migrates as it).
 *
 * @example withLocalDatabase(setupCommand, { start: true, announce: true, admin: true })
 */
export function withLocalDatabase(command: Command, { start = false, announce = false, admin = false } = {}): Command {
  return {
    ...command,
    async run(input) {
      // `--admin` with an ADMIN_DATABASE_URL names its database too.
      const local = !databaseConfigured() && !(input.values.admin === true && process.env.ADMIN_DATABASE_URL?.trim());
      if (local) {
        // Checked before the options are read: they make the data folder's password file.
        await requireLocalServerPort(localServerLocation());
        if (start) {
          const { alreadyRunning } = await startEmbeddedServer(localServerOptions(), printLine);
          if (!alreadyRunning) printLine('started the local PostgreSQL');
        }
        const owner = localOwner();
        process.env.DATABASE_URL = cliDatabaseUrl();
        if (admin) {
          process.env.ADMIN_DATABASE_URL = localAdminUrl();
          process.env.DB_OWNER_USER = owner.user;
          process.env.DB_OWNER_PASSWORD = owner.password;
        }
      }
      await command.run(local && admin ? { ...input, values: { ...input.values, admin: true } } : input);
      if (local && announce) {
        printLine(`DATABASE_URL=${process.env.DATABASE_URL}`);
        if (admin) printLine(`ADMIN_DATABASE_URL=${process.env.ADMIN_DATABASE_URL}   (the superuser: setup --admin only)`);
      }
    },
  };
}
