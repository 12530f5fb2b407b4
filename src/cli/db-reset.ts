import { databaseHosts, isLocalDatabaseUrl, isLocalHost, recreateDatabase } from '../provisioning/database-admin.js';
import { startEmbeddedServer } from '../embedded/embedded-server.js';
import { cliDatabaseUrl, localServerOptions } from '../embedded/local-server.js';
import { migrate } from '../migrations/migrator.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:reset [-- --force]   (or scripts/reset-db.sh [--force])

Drops the database, creates it empty and applies every migration. ALL DATA IS LOST.
Refuses a database on a non-local host unless --force is given.

Environment:
  DATABASE_URL       the database to reset (default: the local embedded server)
`;

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const log = (line: string) => console.log(line);
  const databaseUrl = cliDatabaseUrl();
  if (!isLocalDatabaseUrl(databaseUrl) && !args.includes('--force')) {
    throw new Error(
      `refusing to reset a database on the non-local host '${databaseHosts(databaseUrl).filter((host) => !isLocalHost(host)).join(', ')}'; pass --force if you mean it`,
    );
  }
  if (!process.env.DATABASE_URL) await startEmbeddedServer(localServerOptions(), log);
  await recreateDatabase(databaseUrl);
  log('dropped and recreated the database');
  const runs = await migrate({ databaseUrl, log });
  log(`${runs.length} migration(s) applied.`);
});
