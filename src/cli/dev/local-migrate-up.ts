import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { adminDatabaseUrl } from '../../provisioning/admin-database-url.js';
import { requireLocalDatabase } from '../../provisioning/database-admin.js';
import type { Command, CommandInput } from '../command.js';

/** Where a command is about to apply migrations, and the variable that named it; undefined: nowhere. */
export type MigrationsTarget = (input: CommandInput) => { databaseUrl: string; variable: string | undefined } | undefined;

// Where MIGRATION_DATABASE_URL (else DATABASE_URL) leads.
const releaseTarget = () => {
  const databaseUrl = migrationDatabaseUrl();
  return { databaseUrl, variable: migrationUrlVariable(databaseUrl) };
};

/** `migrate` (up, not a dry run): the release step's database. */
export const migrateUpTarget: MigrationsTarget = (input) => {
  const [action = 'up'] = input.positionals;
  return action !== 'up' || input.values['dry-run'] === true ? undefined : releaseTarget();
};

/** `setup` (unless `--no-migrate`): the release step's database, or with `--admin` the one ADMIN_DATABASE_URL names. */
export const setupTarget: MigrationsTarget = (input) => {
  if (input.values['no-migrate'] === true) return undefined;
  if (input.values.admin !== true) return releaseTarget();
  return { databaseUrl: adminDatabaseUrl('setup', process.env, { postgresDatabase: input.values['postgres-database'] === true }), variable: 'ADMIN_DATABASE_URL' };
};

// The --force line as this repository's commands have it, for a command that had none.
const forceLine = '  --force                 in this repository (npm run): allow applying migrations to a database on a non-local host\n';

/**
 * This repository's `npm run migrate` and `npm run db:setup`: the shipped command, except that
 * where it would apply migrations (`target`) it refuses a database on a non-local host unless
 * `--force`, as `migrate down`, `db:reset` and `db:restore` do. A shell that still holds the
 * `MIGRATION_DATABASE_URL` exported for a release would otherwise apply a draft migration, one
 * being written, to production, where it can no longer be changed (its checksum is recorded):
 * `npm run db:setup`, the README's first command, did so without a word. Releases run the
 * shipped bin, which applies wherever it is pointed.
 *
 * @example withLocalDatabase(withLocalUp(migrateCommand, migrateUpTarget))
 */
export function withLocalUp(command: Command, target: MigrationsTarget): Command {
  const hadForce = 'force' in command.options;
  return {
    ...command,
    options: { ...command.options, force: { type: 'boolean' } },
    usage: hadForce
      ? command.usage.replace(
          /(  --force {17})with down: allow a database on a non-local host/,
          '$1with down, and with up in this repository (npm run migrate): allow a database on a non-local host',
        )
      : command.usage.replace(/^Options:\n/m, `Options:\n${forceLine}`),
    async run(input) {
      const applies = target(input);
      if (applies === undefined) return command.run(input);
      requireLocalDatabase(applies.databaseUrl, { force: input.values.force === true, action: 'apply migrations to', variable: applies.variable });
      // Where the shipped command knows --force, it is for down only.
      const { force: _force, ...values } = input.values;
      return command.run({ ...input, values });
    },
  };
}
