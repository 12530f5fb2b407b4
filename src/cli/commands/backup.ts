import { migrationDatabaseUrl } from '../../migrations/migration-settings.js';
import { backupSettings } from '../../operations/backup/backup-settings.js';
import type { Command } from '../command.js';
import { interruptSignal } from '../interrupt-signal.js';
import { printLine, printNote } from '../terminal-text.js';

const usage = `Usage: kennwilliamson-db backup

Backs up the database with pg_dump (custom format) into
  $BACKUP_DIR/<database>_<env>_<UTC timestamp>.dump   plus a .sha256 beside it.
The dump is written under a temporary name, read back whole with pg_restore, fsynced and
only then renamed; on failure nothing is left behind. Then only the newest BACKUP_KEEP
backups of this database and <env> are kept. Progress goes to stderr; the new file's path to stdout.

pg_dump must be at least the server's major version. It is looked for in PG_DUMP, PATH,
/usr/lib/postgresql/*/bin, then the running docker compose service 'postgres'. When none
fits, the WebAssembly pg_dump of @electric-sql/pglite-tools writes plain SQL, gzip-compressed
(.sql.gz), checked by a full decompression, pg_dump's completion trailer and the restore's
vetting (no TLS: local servers only).

Environment:
  MIGRATION_DATABASE_URL  the database to back up, as its owner (or another role that may read
                          every table), directly: a connection pooler is refused (else
                          DATABASE_URL, when that is direct)
  BACKUP_DIR              folder of the backups (default ./backups)
  BACKUP_KEEP             how many backups of this database and <env> to keep (default 14)
  BACKUP_ENV              the <env> in the file name (default: NODE_ENV, else development)
  PG_DUMP                 pg_dump to use, when it fits the server (PG_RESTORE likewise)
`;

/** `kennwilliamson-db backup`: a verified pg_dump with retention. */
export const backupCommand: Command = {
  name: 'backup',
  summary: 'verified pg_dump backup into BACKUP_DIR, keeping the newest BACKUP_KEEP',
  usage,
  options: {},
  positionals: { min: 0, max: 0 },
  async run() {
    // A bad setting is refused before the backup's code loads.
    const databaseUrl = migrationDatabaseUrl();
    const settings = backupSettings();
    const { backupDatabase } = await import('../../operations/backup/backup.js');
    const result = await backupDatabase({
      databaseUrl,
      ...settings,
      log: printNote,
      signal: interruptSignal(),
    });
    printLine(result.file);
  },
};
