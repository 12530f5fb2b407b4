import { requireDirectDatabase } from '../../db/direct-connection.js';
import { ConfigError, DatabaseError } from '../../errors.js';
import { migrate } from '../../migrations/migrator.js';
import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { ensureAppRole } from '../../provisioning/app-role.js';
import { ensureDatabase } from '../../provisioning/database-admin.js';
import type { Command } from '../command.js';

const usage = `Usage: kennwilliamson-db setup

Makes the database ready and keeps its data: creates the database if it does not exist,
applies pending migrations, and, when DB_APP_USER and DB_APP_PASSWORD are set, creates (or
updates) that login role for the services: it may read and write rows, use sequences and
functions, and cannot create, alter, drop or truncate anything, tables of later migrations
included. Safe to run again, and from several machines at once.

Environment:
  MIGRATION_DATABASE_URL  the database, as its owner, directly: a connection pooler is
                          refused (else DATABASE_URL, when that is direct)
  MIGRATION_LOCK_TIMEOUT  seconds to wait for another migration run (default 300)
  DB_APP_USER             name of the application role to create or update (with DB_APP_PASSWORD)
  DB_APP_PASSWORD         its password (sent to the server only as a SCRAM-SHA-256 verifier)
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

/** `kennwilliamson-db setup`: database, migrations and application role, idempotently. */
export const setupCommand: Command = {
  name: 'setup',
  summary: 'create the database if missing, migrate, and create or update the application role',
  usage,
  options: {},
  positionals: { min: 0, max: 0 },
  async run() {
    const log = (line: string) => console.log(line);
    const appRole = appRoleSettings(process.env);
    const databaseUrl = migrationDatabaseUrl();
    // Before anything else; a database that does not exist yet is checked by migrate once created.
    await requireDirectDatabase(databaseUrl, {
      operation: 'setup',
      variable: migrationUrlVariable(databaseUrl),
      applicationName: 'kennwilliamson-setup',
    }).catch((error: unknown) => {
      if (!(error instanceof DatabaseError && error.sqlState === '3D000')) throw error;
    });
    if (await ensureDatabase(databaseUrl)) log('created the database');
    const runs = await migrate({ databaseUrl, log });
    log(runs.length === 0 ? 'Database is up to date.' : `${runs.length} migration(s) applied.`);
    if (appRole) {
      const { created } = await ensureAppRole({ databaseUrl, ...appRole });
      log(`${created ? 'created' : 'updated'} the application role '${appRole.user}' (rows only: no CREATE, DROP, ALTER or TRUNCATE)`);
    }
  },
};
