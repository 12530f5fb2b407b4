import { formatDuration } from '../../db/duration.js';
import { ConfigError } from '../../errors.js';
import { requireAppliedTarget } from '../../migrations/applied-target.js';
import { createMigration } from '../../migrations/create-migration.js';
import { defaultMigrationsDir } from '../../migrations/default-migrations-dir.js';
import { migrate, migrateDown, migrationStatus } from '../../migrations/on-demand-migrator.js';
import { migrationDatabaseUrl, migrationUrlVariable } from '../../migrations/migration-settings.js';
import { requireLocalDatabase } from '../../provisioning/database-admin.js';
import type { Command } from '../command.js';
import { exitOnInterrupt } from '../interrupt-exit.js';
import { canAsk, typedYes } from '../confirmation.js';
import { printLine, printNote } from '../terminal-text.js';

const usage = `Usage: kennwilliamson-db migrate [up [--dry-run] | down [--to NAME] | status | create NAME] [options]

  up                 apply every pending migration (the default), each in its own
                     transaction with its record, under the migration lock; a file whose
                     first line is '-- migrate:no-transaction' runs statement by statement
                     outside a transaction (CREATE INDEX CONCURRENTLY), recorded at the end.
                     Each waits for its table locks in short attempts (lock_timeout from
                     100 ms up to 1 s, 10 min in all), rolled back and retried so that
                     queries never queue long behind its wait; each failed attempt is reported
                     on stderr with the session that blocked it. A file sets its own budget
                     with a header: '-- migrate:lock-wait attempt=5s total=1h'. Once it holds
                     a lock, queries wait as long as it runs: a statement that rewrites or
                     scans a table with rows (a CHECK without NOT VALID, a type change…) is
                     named on stderr before anything is applied, and by --dry-run
  down [--to NAME]   revert the last migration, or every one back to and including NAME
                     (--to 0 reverts all); down files drop tables and their data, so it
                     asks first (type 'yes'), refuses without a terminal unless --yes, and
                     refuses a database on a non-local host unless --force
  status             list applied, pending, changed and missing migrations; exits 1 when
                     an applied file was changed or removed
  create NAME        write <migrations-dir>/<UTC timestamp>_NAME.up.sql and .down.sql; for
                     the @kennwilliamson/db repository only (a folder in node_modules is refused)

Options:
  --to NAME               with down: how far to revert
  --yes, -y               with down: do not ask (required when there is no terminal)
  --force                 with down: allow a database on a non-local host
  --dry-run               with up: list what would run (file, checksum, transactional or
                          not, lock budget) under the lock, change nothing; exits 1 on a changed or
                          missing applied file, as the real run would refuse
  --migrations-dir DIR    folder of the migrations (default: the one shipped in this package)

Environment:
  MIGRATION_DATABASE_URL  the owner's direct connection to migrate with: up and down refuse
                          a connection pooler, a superuser's login and a login other than
                          the migrations record's owner (else DATABASE_URL, when that is
                          direct)
  MIGRATION_LOCK_TIMEOUT  seconds to wait for another migration run (default 300)
`;

// What Ctrl-C leaves of a run: the server rolls back the file in progress as the connection
// closes; the files before it stay applied and recorded.
export const interruptedMigration =
  'the server rolls back the migration in progress as the connection closes, and it is not recorded; those before it stay ' +
  'applied (migrate status lists them). A CREATE INDEX CONCURRENTLY under way leaves an INVALID index, which the next run names';

/** `kennwilliamson-db migrate`: apply, revert, list or create migrations. */
export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply, revert, list or create migrations (up, down, status, create)',
  usage,
  options: {
    to: { type: 'string' },
    'migrations-dir': { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
    force: { type: 'boolean' },
  },
  positionals: { min: 0, max: 2 },
  async run({ values, positionals }) {
    const [action = 'up', argument] = positionals;
    const migrationsDir = (values['migrations-dir'] as string | undefined) ?? defaultMigrationsDir();
    if (action !== 'create' && argument !== undefined) throw new ConfigError('arguments', `unexpected argument '${argument}'\n\n${usage}`);
    if (action !== 'down' && values.to !== undefined) throw new ConfigError('--to', `--to applies to down only\n\n${usage}`);
    if (action !== 'up' && values['dry-run']) throw new ConfigError('--dry-run', `--dry-run applies to up only\n\n${usage}`);
    for (const flag of ['yes', 'force'] as const) {
      if (action !== 'down' && values[flag] !== undefined) throw new ConfigError(`--${flag}`, `--${flag} applies to down only\n\n${usage}`);
    }
    // Progress on stdout; each lock attempt that had to be rolled back (and who blocked it) on stderr.
    const options = { migrationsDir, log: printLine, warn: printNote };
    switch (action) {
      case 'up': {
        if (values['dry-run']) {
          const plan = await migrate({ ...options, databaseUrl: migrationDatabaseUrl(), dryRun: true, refuseSuperuser: true, refuseOtherOwner: true });
          for (const step of plan) {
            const lockWait = `lock-wait attempt=${formatDuration(step.lockWait.attemptMs)} total=${formatDuration(step.lockWait.totalMs)}${step.lockWait.fromHeader ? ' (its header)' : ''}`;
            printLine(`would apply ${step.file}  sha256 ${step.checksum}  ${step.transactional ? 'transactional' : 'no-transaction'}  ${lockWait}`);
          }
          printLine(plan.length === 0 ? 'Dry run: nothing to apply, the database is up to date.' : `Dry run: ${plan.length} migration(s) would be applied; nothing was changed.`);
          return;
        }
        exitOnInterrupt(interruptedMigration);
        const runs = await migrate({ ...options, databaseUrl: migrationDatabaseUrl(), refuseSuperuser: true, refuseOtherOwner: true });
        printLine(runs.length === 0 ? 'Nothing to apply: the database is up to date.' : `${runs.length} migration(s) applied.`);
        return;
      }
      case 'down': {
        const to = values.to as string | undefined;
        const databaseUrl = migrationDatabaseUrl();
        const yes = values.yes === true;
        const target = requireLocalDatabase(databaseUrl, { force: values.force === true, action: 'revert migrations of', variable: migrationUrlVariable(databaseUrl) });
        if (!canAsk(yes)) {
          throw new ConfigError('--yes', `refusing to revert migrations of '${target.database}' on ${target.host} without confirmation: there is no terminal to ask on; pass --yes`);
        }
        // Before asking: a superuser's login, another role than the record's owner, and a name
        // that is not applied (mistyped, or pending), are refused now, not after the "yes".
        const [{ withClient }, { answeringWithin, roundTripDeadlineMs }, { refuseSuperuserLogin }, { refuseOtherRecordOwner }] = await Promise.all([
          import('../../db/with-client.js'),
          import('../../db/answer-deadline.js'),
          import('../../migrations/superuser-refusal.js'),
          import('../../migrations/record-owner-refusal.js'),
        ]);
        const variable = migrationUrlVariable(databaseUrl) ?? 'DATABASE_URL';
        await withClient(databaseUrl, async (connection) => {
          // Each look under a round trip's deadline: a server that lets the login in and then
          // says nothing ends the command, rather than holding it before its question for ever.
          const client = answeringWithin(connection, roundTripDeadlineMs);
          await refuseSuperuserLogin(client, variable, 'nothing was reverted');
          await refuseOtherRecordOwner(client, variable, 'nothing was reverted');
        }, 'kennwilliamson-migrate');
        const recorded = (await migrationStatus({ ...options, databaseUrl })).filter((migration) => migration.state !== 'pending');
        if (to !== undefined && to !== '0') requireAppliedTarget(to, recorded.map((migration) => migration.name).reverse(), '--to');
        // Named, so that the question says what goes: the last one of the record.
        const last = recorded.at(-1)?.name;
        if (last === undefined) {
          printLine('Nothing to revert.');
          return;
        }
        const reverting = to === undefined ? `the last migration, ${last},` : to === '0' ? 'every migration' : `every migration back to and including ${to}`;
        if (!yes && !(await typedYes(`This reverts ${reverting} of database '${target.database}' on ${target.host}:${target.port}; down files drop tables and their data.\nType 'yes' to revert: `))) {
          throw new ConfigError('--yes', 'not confirmed; nothing was reverted');
        }
        // A superuser's login, and another role than the record's owner, were refused before asking.
        exitOnInterrupt(interruptedMigration);
        const runs = await migrateDown({
          ...options,
          databaseUrl,
          ...(to === undefined ? {} : { to: to === '0' ? 0 : to }),
        });
        printLine(runs.length === 0 ? 'Nothing to revert.' : `${runs.length} migration(s) reverted.`);
        return;
      }
      case 'status': {
        const states = await migrationStatus({ ...options, databaseUrl: migrationDatabaseUrl() });
        for (const m of states) {
          const when = m.appliedAt ? ` applied ${m.appliedAt.toISOString()} in ${m.durationMs} ms` : '';
          printLine(`${m.state.padEnd(8)} ${m.name}${when}`);
        }
        const counts = ['applied', 'pending', 'changed', 'missing'].map(
          (state) => `${states.filter((m) => m.state === state).length} ${state}`,
        );
        printLine(counts.join(', '));
        if (states.some((m) => m.state === 'changed' || m.state === 'missing')) process.exitCode = 1;
        return;
      }
      case 'create': {
        if (!argument) throw new ConfigError('NAME', `create needs a NAME, e.g. migrate create add_timer_labels\n\n${usage}`);
        const { upPath, downPath } = await createMigration(migrationsDir, argument);
        printLine(`created ${upPath}\ncreated ${downPath}`);
        return;
      }
      default:
        throw new ConfigError('arguments', `unknown migrate action '${action}'\n\n${usage}`);
    }
  },
};
