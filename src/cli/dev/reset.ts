import { migrate } from '../../migrations/on-demand-migrator.js';
import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { adminDatabaseUrl, adminUrlVariable } from '../../provisioning/admin-database-url.js';
import { databaseUrlAs, recreateDatabase, requireLocalDatabase } from '../../provisioning/database-admin.js';
import { provisionDatabase } from '../../provisioning/provision-database.js';
import { ProvisioningError } from '../../errors.js';
import type { Command } from '../command.js';
import { canAsk, typedYes } from '../confirmation.js';

/** `npm run db:reset`: drop, recreate and migrate a (local) database. */
export const resetCommand: Command = {
  name: 'reset',
  summary: 'drop, recreate and migrate the database (local hosts only without --force)',
  usage: `Usage: npm run db:reset [-- --yes] [-- --force]   (or scripts/reset-db.sh [--yes] [--force])

Drops the database, creates it empty and applies every migration. ALL DATA IS LOST.
Asks first, naming the database and its server (type 'yes'); without a terminal it refuses
unless --yes is given. Refuses a database on a non-local host unless --force is given. On the local embedded
server (and with --admin) the database is recreated by the superuser, owned by the owner
role, and migrated as that role, as setup --admin does.

Environment:
  MIGRATION_DATABASE_URL  the database to reset, as its owner (else DATABASE_URL; default:
                          the local embedded server); it needs CREATEDB without --admin
  ADMIN_DATABASE_URL      --admin: the database, as an admin
  DB_OWNER_USER           --admin: the owner role (with DB_OWNER_PASSWORD)
`,
  options: { force: { type: 'boolean' }, admin: { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } },
  positionals: { min: 0, max: 0 },
  async run({ values }) {
    const log = (line: string) => console.log(line);
    if (values.admin === true) {
      const adminUrl = adminDatabaseUrl('reset');
      const owner = { user: process.env.DB_OWNER_USER?.trim() ?? '', password: process.env.DB_OWNER_PASSWORD ?? '' };
      await confirmReset(requireLocalDatabase(adminUrl, { force: values.force === true, action: 'reset', variable: adminUrlVariable }), values.yes === true);
      await recreateDatabase(adminUrl, { variable: adminUrlVariable });
      log('dropped and recreated the database');
      await provisionDatabase({ adminUrl, owner, log });
      const runs = await migrate({ databaseUrl: databaseUrlAs(adminUrl, owner.user, owner.password), log });
      log(`${runs.length} migration(s) applied.`);
      return;
    }
    const databaseUrl = migrationDatabaseUrl();
    const variable = migrationUrlVariable(databaseUrl);
    await confirmReset(requireLocalDatabase(databaseUrl, { force: values.force === true, action: 'reset', variable }), values.yes === true);
    await recreateDatabase(databaseUrl, { variable });
    log('dropped and recreated the database');
    const runs = await migrate({ databaseUrl, log });
    log(`${runs.length} migration(s) applied.`);
  },
};

// A local host is no proof of a scratch database: the compose set-up publishes its server,
// the production one on a single-host deployment, on 127.0.0.1 too.
async function confirmReset(target: { host: string; port: number; database: string }, yes: boolean): Promise<void> {
  if (!canAsk(yes)) {
    throw new ProvisioningError(`refusing to reset '${target.database}' on ${target.host} without confirmation: there is no terminal to ask on; pass --yes`);
  }
  if (yes) return;
  const answer = await typedYes(`This DROPS database '${target.database}' on ${target.host}:${target.port} and ALL ITS DATA.\nType 'yes' to reset: `);
  if (!answer) throw new ProvisioningError('not confirmed; the database was not touched');
}
