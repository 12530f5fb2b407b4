// The repository's npm scripts (db:setup, migrate, db:backup, …): the shipped bin's commands,
// defaulting to the local embedded server when no URL is set, plus the commands that need
// this repository's devDependencies (the embedded server, kysely-codegen). Not shipped.
import { backupCommand } from '../commands/backup.js';
import { downloadBackupCommand } from '../commands/download-backup.js';
import { migrateCommand } from '../commands/migrate.js';
import { restoreCommand } from '../commands/restore.js';
import { setupCommand } from '../commands/setup.js';
import { runCommands } from '../run-commands.js';
import { codegenCommand } from './codegen.js';
import { withLocalDatabase } from './local-database.js';
import { migrateUpTarget, setupTarget, withLocalUp } from './local-migrate-up.js';
import { resetCommand } from './reset.js';
import { startCommand } from './start.js';
import { stopCommand } from './stop.js';

runCommands(
  'npm run',
  [
    withLocalDatabase(withLocalUp(migrateCommand, migrateUpTarget)),
    withLocalDatabase(withLocalUp(setupCommand, setupTarget), { start: true, announce: true, admin: true }),
    withLocalDatabase(backupCommand),
    withLocalDatabase(restoreCommand, { start: true }),
    downloadBackupCommand,
    startCommand,
    stopCommand,
    withLocalDatabase(resetCommand, { start: true, admin: true }),
    withLocalDatabase(codegenCommand),
  ],
  process.argv.slice(2),
);
