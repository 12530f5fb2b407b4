import { cliDatabaseUrl } from '../embedded/local-server.js';
import { createMigration } from '../migrations/create-migration.js';
import { defaultMigrationsDir, migrate, migrateDown, migrationStatus } from '../migrations/migrator.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run migrate [-- COMMAND]

Commands:
  up                 apply every pending migration (the default)
  down [--to NAME]   revert the last migration, or every one back to and including NAME
                     (--to 0 reverts all)
  status             list applied, pending, changed and missing migrations
  create NAME        write migrations/<timestamp>_NAME.up.sql and .down.sql

Environment:
  DATABASE_URL       the database to migrate (default: the local embedded server,
                     see npm run db:start)
`;

runCli(async (args) => {
  const [command = 'up', ...rest] = args;
  const options = { databaseUrl: cliDatabaseUrl(), log: (line: string) => console.log(line) };
  switch (command) {
    case 'up': {
      const runs = await migrate(options);
      console.log(runs.length === 0 ? 'Nothing to apply: the database is up to date.' : `${runs.length} migration(s) applied.`);
      return;
    }
    case 'down': {
      const toIndex = rest.indexOf('--to');
      const to = toIndex < 0 ? undefined : rest[toIndex + 1];
      if (toIndex >= 0 && !to) throw new Error('--to needs a migration name (or 0 for all)');
      const runs = await migrateDown({ ...options, ...(to === undefined ? {} : { to: to === '0' ? 0 : to }) });
      console.log(runs.length === 0 ? 'Nothing to revert.' : `${runs.length} migration(s) reverted.`);
      return;
    }
    case 'status': {
      const states = await migrationStatus(options);
      for (const m of states) {
        const when = m.appliedAt ? ` applied ${m.appliedAt.toISOString()} in ${m.durationMs} ms` : '';
        console.log(`${m.state.padEnd(8)} ${m.name}${when}`);
      }
      const counts = ['applied', 'pending', 'changed', 'missing'].map(
        (state) => `${states.filter((m) => m.state === state).length} ${state}`,
      );
      console.log(counts.join(', '));
      if (states.some((m) => m.state === 'changed' || m.state === 'missing')) process.exitCode = 1;
      return;
    }
    case 'create': {
      const name = rest.join(' ');
      if (!name) throw new Error('create needs a NAME, e.g. npm run migrate -- create add_timer_labels');
      const { upPath, downPath } = await createMigration(defaultMigrationsDir(), name);
      console.log(`created ${upPath}\ncreated ${downPath}`);
      return;
    }
    case '--help':
    case '-h':
    case 'help':
      console.log(usage);
      return;
    default:
      throw new Error(`unknown command '${command}'\n${usage}`);
  }
});
