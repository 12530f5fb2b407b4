import { ensureDatabase } from '../db/database-admin.js';
import { startEmbeddedServer } from '../embedded/embedded-server.js';
import { cliDatabaseUrl, localServerOptions } from '../embedded/local-server.js';
import { migrate } from '../migrations/migrator.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:setup   (or scripts/setup-db.sh)

Makes the database ready and keeps its data: starts the local embedded PostgreSQL when
DATABASE_URL is not set, creates the database if it does not exist, and applies pending
migrations.

Environment:
  DATABASE_URL       the database to set up (default: the local embedded server)
  EMBEDDED_PG_PORT   port of the local server (default 54320)
`;

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const log = (line: string) => console.log(line);
  if (!process.env.DATABASE_URL) {
    const { alreadyRunning } = await startEmbeddedServer(localServerOptions(), log);
    if (!alreadyRunning) log('started the local PostgreSQL');
  }
  const databaseUrl = cliDatabaseUrl();
  if (await ensureDatabase(databaseUrl)) log('created the database');
  const runs = await migrate({ databaseUrl, log });
  log(runs.length === 0 ? 'Database is up to date.' : `${runs.length} migration(s) applied.`);
  if (!process.env.DATABASE_URL) log(`DATABASE_URL=${databaseUrl}`);
});
