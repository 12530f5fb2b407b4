import { migrate } from '../../migrations/migrator.js';
import { migrationDatabaseUrl } from '../../migrations/migration-settings.js';
import { recreateDatabase, requireLocalDatabase } from '../../provisioning/database-admin.js';
import type { Command } from '../command.js';

/** `npm run db:reset`: drop, recreate and migrate a (local) database. */
export const resetCommand: Command = {
  name: 'reset',
  summary: 'drop, recreate and migrate the database (local hosts only without --force)',
  usage: `Usage: npm run db:reset [-- --force]   (or scripts/reset-db.sh [--force])

Drops the database, creates it empty and applies every migration. ALL DATA IS LOST.
Refuses a database on a non-local host unless --force is given.

Environment:
  MIGRATION_DATABASE_URL  the database to reset, as its owner (else DATABASE_URL; default:
                          the local embedded server)
`,
  options: { force: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const log = (line: string) => console.log(line);
    const databaseUrl = migrationDatabaseUrl();
    requireLocalDatabase(databaseUrl, { force: values.force === true, action: 'reset' });
    await recreateDatabase(databaseUrl);
    log('dropped and recreated the database');
    const runs = await migrate({ databaseUrl, log });
    log(`${runs.length} migration(s) applied.`);
  },
};
