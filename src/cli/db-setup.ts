import { ensureAppRole } from '../provisioning/app-role.js';
import { ensureDatabase } from '../provisioning/database-admin.js';
import { startEmbeddedServer } from '../embedded/embedded-server.js';
import { cliDatabaseUrl, localServerOptions } from '../embedded/local-server.js';
import { ConfigError } from '../errors.js';
import { migrate } from '../migrations/migrator.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:setup   (or scripts/setup-db.sh)

Makes the database ready and keeps its data: starts the local embedded PostgreSQL when
DATABASE_URL is not set, creates the database if it does not exist, and applies pending
migrations. When DB_APP_USER and DB_APP_PASSWORD are set, it also creates (or updates)
that login role for the services: it may read and write rows, use sequences and functions,
and cannot create, alter, drop or truncate anything, tables of later migrations included.

Environment:
  DATABASE_URL       the database to set up, as its owner (default: the local embedded server)
  EMBEDDED_PG_PORT   port of the local server (default 54320)
  DB_APP_USER        name of the application role to create or update (with DB_APP_PASSWORD)
  DB_APP_PASSWORD    its password (sent to the server only as a SCRAM-SHA-256 verifier)
`;

// Both or neither: one without the other is a half-done configuration, not a choice.
function appRoleSettings(env: NodeJS.ProcessEnv): { user: string; password: string } | undefined {
  const user = env.DB_APP_USER?.trim();
  const password = env.DB_APP_PASSWORD;
  if (!user && !password) return undefined;
  if (!user) throw new ConfigError('DB_APP_USER', 'DB_APP_PASSWORD is set but DB_APP_USER is not; set both or neither');
  if (!password) throw new ConfigError('DB_APP_PASSWORD', 'DB_APP_USER is set but DB_APP_PASSWORD is not; set both or neither');
  return { user, password };
}

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const log = (line: string) => console.log(line);
  const appRole = appRoleSettings(process.env);
  if (!process.env.DATABASE_URL) {
    const { alreadyRunning } = await startEmbeddedServer(localServerOptions(), log);
    if (!alreadyRunning) log('started the local PostgreSQL');
  }
  const databaseUrl = cliDatabaseUrl();
  if (await ensureDatabase(databaseUrl)) log('created the database');
  const runs = await migrate({ databaseUrl, log });
  log(runs.length === 0 ? 'Database is up to date.' : `${runs.length} migration(s) applied.`);
  if (appRole) {
    const { created } = await ensureAppRole({ databaseUrl, ...appRole });
    log(`${created ? 'created' : 'updated'} the application role '${appRole.user}' (rows only: no CREATE, DROP, ALTER or TRUNCATE)`);
  }
  if (!process.env.DATABASE_URL) log(`DATABASE_URL=${databaseUrl}`);
});
