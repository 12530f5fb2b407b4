import { cliDatabaseUrl } from '../embedded/local-server.js';
import { backupDatabase } from '../operations/backup.js';
import { backupSettings } from '../operations/backup-settings.js';
import { interruptSignal } from './interrupt-signal.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:backup   (or scripts/backup-db.sh)

Backs up the database with pg_dump (custom format) into
  $BACKUP_DIR/kennwilliamson_<env>_<UTC timestamp>.dump   plus a .sha256 beside it.
The dump is written under a temporary name, read back whole with pg_restore, fsynced and
only then renamed; on failure nothing is left behind. Then only the newest BACKUP_KEEP
backups of <env> are kept. Progress goes to stderr; the new file's path to stdout.

pg_dump must be at least the server's major version. It is looked for in PG_DUMP, PATH,
/usr/lib/postgresql/*/bin, then the running docker compose service 'postgres'.

Environment:
  DATABASE_URL   the database to back up (default: the local embedded server)
  BACKUP_DIR     folder of the backups (default ./backups)
  BACKUP_KEEP    how many backups of this <env> to keep (default 14)
  BACKUP_ENV     the <env> in the file name (default: NODE_ENV, else development)
  PG_DUMP        pg_dump to use, when it fits the server (PG_RESTORE likewise)
`;

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  if (args.length > 0) throw new Error(`unexpected argument '${args[0]}'\n\n${usage}`);
  const settings = backupSettings();
  const result = await backupDatabase({
    databaseUrl: cliDatabaseUrl(),
    ...settings,
    log: (line) => console.error(line),
    signal: interruptSignal(),
  });
  console.log(result.file);
});
