import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { requireLocalDatabase } from '../../provisioning/database-admin.js';
import type { Command } from '../command.js';

/**
 * This repository's `npm run migrate`: the shipped `migrate`, except that `up` (not a dry run)
 * refuses a database on a non-local host unless `--force`, as `down`, `db:reset` and
 * `db:restore` do. A shell that still holds the `MIGRATION_DATABASE_URL` exported for a release
 * would otherwise apply a draft migration, one being written, to production, where it can no
 * longer be changed (its checksum is recorded). Releases run the shipped bin, which applies
 * wherever it is pointed.
 *
 * @example withLocalDatabase(withLocalUp(migrateCommand))
 */
export function withLocalUp(command: Command): Command {
  return {
    ...command,
    usage: command.usage.replace(
      /(  --force {17})with down: allow a database on a non-local host/,
      '$1with down, and with up in this repository (npm run migrate): allow a database on a non-local host',
    ),
    async run(input) {
      const [action = 'up'] = input.positionals;
      if (action !== 'up' || input.values['dry-run'] === true) return command.run(input);
      const databaseUrl = migrationDatabaseUrl();
      requireLocalDatabase(databaseUrl, { force: input.values.force === true, action: 'apply migrations to', variable: migrationUrlVariable(databaseUrl) });
      // The shipped command knows --force with down only.
      const { force: _force, ...values } = input.values;
      return command.run({ ...input, values });
    },
  };
}
