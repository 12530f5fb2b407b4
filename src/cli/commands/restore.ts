import path from 'node:path';
import { RestoreError } from '../../errors.js';
import { parseDuration } from '../../db/duration.js';
import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { requireLocalDatabase } from '../../provisioning/database-admin.js';
import type { Command } from '../command.js';
import { canAsk, typedYes } from '../confirmation.js';
import { connectedSessionsOf, sessionsNamed } from '../connected-sessions.js';
import { interruptSignal } from '../interrupt-signal.js';
import { operatorFile } from '../operator-file.js';
import { printLine, printNote } from '../terminal-text.js';

const usage = `Usage: kennwilliamson-db restore FILE [--yes] [--force] [--migrations-dir DIR] [--without-checksum]

Replaces everything in the database's public schema with the backup FILE: a pg_dump custom
archive (.dump, from the backup command) or a gzip-compressed plain SQL dump (.sql.gz).

A relative FILE is found from the folder the command was typed in, also under \`npm run\`
(INIT_CWD); a name found only in the folder npm runs the command in, or meaning two
different files there and in yours, is refused, naming them.

Before touching the database it checks FILE against FILE.sha256 and reads it back whole; a
damaged file is refused, and so is a .dump with no .sha256 beside it unless --without-checksum
(a custom archive has no checksum of its own: a damaged one can lose a table's data, an index
or a constraint without a word; a .sql.gz is checked whole by gzip and pg_dump's trailer), and so is one holding psql meta-commands (\\! and the
like: no psql is involved, and a backup made by pg_dump holds none). The restore runs in one transaction: if any
statement fails, everything is rolled back and the old data stays as it was.

The backup's SQL never runs as a superuser (or any role whose powers reach beyond the
database: programs and files on the server, other roles): functions in a backup run while
it loads, with the restoring session's powers. Given such a URL, the restore logs in as the
database's owner with DB_OWNER_PASSWORD, or refuses, naming that role. Objects end up owned
by the owner. Privileges go only to the owner and the application role (DB_APP_USER, or else
the role the owner's default privileges already give new tables to), the latter no more than
the release step grants it; a backup that grants to PUBLIC (beyond USAGE on public), to any
other role, or with a grant option is refused before anything runs, naming the grantee, and
the restore checks again before COMMIT; it also refuses what the backup's own functions
changed beyond the public schema while they ran (other schemas, the database's privileges
and settings, the owner's password and settings), and any function in public that the
migrations do not define as it is (the owner would run it at the next migration that writes
its table). With DB_APP_USER, that role also gets the release
step's grants; it must exist (on a new server, run the provisioning step first: setup
--admin, with DB_APP_USER). The backup's own SET lock_timeout/statement_timeout are ignored:
the restore waits at most 30 s for a lock, and lets no statement run longer than
RESTORE_STATEMENT_TIMEOUT (or a shorter statement_timeout of the database or role). Extensions
that only a superuser may create (pg_uuidv7) are kept as setup --admin created them; a
backup that uses one this database lacks fails, saying to run setup --admin first.

Options:
  --yes, -y  do not ask for confirmation (required when there is no terminal)
  --force    allow a database on a non-local host
  --migrations-dir DIR
             the migrations whose functions the backup's may be, and whose calls its
             expressions may make, as for migrate (default: the ones shipped in this package)
  --without-checksum
             restore a .dump that has no .sha256 beside it, unchecked (an older backup, a
             download from a host that had none)

Environment:
  MIGRATION_DATABASE_URL  the database to restore into, as its owner, directly: a connection
                          pooler is refused (else DATABASE_URL, when that is direct)
  DB_OWNER_PASSWORD       the owner's password, when that URL is a superuser's (the restore logs in as the owner)
  DB_OWNER_USER           when set, checked to be the database's owner
  DB_APP_USER             the application role: the one the backup may grant to, and which gets the release step's grants
  PG_RESTORE              pg_restore to use (default: PATH, then /usr/lib/postgresql/*/bin)
  RESTORE_STATEMENT_TIMEOUT  the longest one statement may run, the backup's (a table's rows, an
                          index, a constraint's check) or the restore's own (default 30min);
                          past it the restore is rolled back
`;

/** `kennwilliamson-db restore`: replace the database with a backup, all or nothing. */
export const restoreCommand: Command = {
  name: 'restore',
  summary: 'replace the database with a backup, all or nothing',
  usage,
  options: { yes: { type: 'boolean', short: 'y' }, force: { type: 'boolean' }, 'migrations-dir': { type: 'string' }, 'without-checksum': { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals }) {
    const named = operatorFile(positionals[0]!);
    if ('ambiguous' in named) {
      const [fromCommandFolder, fromOperatorFolder] = named.ambiguous;
      throw new RestoreError(
        `refusing to restore ${positionals[0]!}: it names two different files, ${fromOperatorFolder} (from the folder you ran the command in) ` +
          `and ${fromCommandFolder} (from the folder npm runs it in); give the backup's absolute path. The database was not touched`,
      );
    }
    if ('onlyInCommandFolder' in named) {
      throw new RestoreError(
        `refusing to restore ${positionals[0]!}: there is no ${named.fromOperatorFolder} (from the folder you ran the command in), ` +
          `only ${named.onlyInCommandFolder} (from the folder npm runs it in); give that backup's absolute path if you mean it. The database was not touched`,
      );
    }
    const { file } = named;
    const yes = values.yes === true;
    // Read before anything: a value it would refuse stops the restore before the backup is read.
    const statementTimeout = process.env.RESTORE_STATEMENT_TIMEOUT?.trim();
    // A bare number is milliseconds, as PostgreSQL reads statement_timeout; below a minute it
    // was most likely meant in seconds (1800 for half an hour), and is refused, not obeyed.
    const statementTimeoutMs = statementTimeout ? parseDuration('RESTORE_STATEMENT_TIMEOUT', statementTimeout, { plausibleBare: [60_000, Infinity] }) : undefined;
    const databaseUrl = migrationDatabaseUrl();
    const variable = migrationUrlVariable(databaseUrl);
    const { host, port, database } = requireLocalDatabase(databaseUrl, { force: values.force === true, action: 'restore into', variable });
    if (!canAsk(yes)) {
      throw new RestoreError(`refusing to restore into '${database}' on ${host} without confirmation: there is no terminal to ask on; pass --yes`);
    }
    const [{ restoreSession }, { verifyBackupFile }, { restoreDatabase }, { formatBytes }] = await Promise.all([
      import('../../operations/restore/restore-session.js'),
      import('../../operations/vetting/verify-backup-file.js'),
      import('../../operations/restore/restore.js'),
      import('../../operations/files/progress-reporter.js'),
    ]);
    // Before reading a backup that may take minutes to check: a pooler, a role with powers
    // beyond the database, a missing DB_APP_USER are refused now (restoreDatabase reuses it).
    const owner = { user: process.env.DB_OWNER_USER?.trim() || undefined, password: process.env.DB_OWNER_PASSWORD || undefined };
    const appRole = process.env.DB_APP_USER?.trim() || undefined;
    const session = await restoreSession(databaseUrl, owner, appRole === undefined ? {} : { appRole });

    const signal = interruptSignal();
    const log = printNote;
    // Checked against whom this database's restore may grant to, before anything runs.
    const backup = await verifyBackupFile(file, { signal, database, grantees: session.grantees, withoutChecksum: values['without-checksum'] === true });
    log(
      `${path.basename(backup.file)}: ${formatBytes(backup.bytes)} (${formatBytes(backup.sqlBytes!)} of SQL to restore), ` +
        `${backup.format === 'custom' ? `pg_dump archive with ${backup.tables} tables` : 'gzip-compressed SQL'}, ` +
        (backup.checksum === 'verified' ? 'checksum verified' : 'no .sha256 beside it (not checksum-verified)'),
    );
    // The services' sessions, named: from the moment it holds the tables until its COMMIT, their
    // calls queue behind it and fail (an operator-path audit: 21 s without a call served, the
    // question saying nothing of them, where a reset's names the sessions it ends).
    const connected = sessionsNamed(await connectedSessionsOf(session.url, 'kennwilliamson-restore'));
    const queued =
      connected &&
      `It holds every table of public while it loads: the ${connected.total} session(s) connected to it now (${connected.named}) ` +
        "wait for it, and their calls fail after their lock_timeout. Stop the services' traffic first.";
    if (yes && queued) log(queued);
    if (!yes) {
      const answer = await typedYes(
        `This REPLACES ALL DATA in database '${database}' on ${host}:${port} with ${backup.file}.\n${queued ? `${queued}\n` : ''}` +
          `Type 'yes' to restore: `,
        signal,
      );
      if (!answer) throw new RestoreError('not confirmed; the database was not touched');
    }
    const migrationsDir = values['migrations-dir'] as string | undefined;
    const { tables } = await restoreDatabase({ databaseUrl, backup, log, signal, owner, session, statementTimeoutMs, ...(migrationsDir === undefined ? {} : { migrationsDir }) });
    printLine(`Restored ${path.basename(backup.file)} (${tables} tables) into '${database}' on ${host}.`);
  },
};
