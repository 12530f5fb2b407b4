import { describe, expect, it, type TestContext } from 'vitest';
import { openClient } from '../../src/db/with-client.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';
import { ConnectionError, MigrationRecordLockedError } from '../../src/errors.js';
import { migrate } from '../../src/migrations/migrator.js';
import { createMigrationSandbox, writeMigration } from '../support/migration-sandbox.js';
import { commitMessage, stallingProxyFor } from '../support/stalling-proxy.js';
import { holdTableLock, type TableLockHolder } from '../support/table-lock-holder.js';
import { eventually } from '../support/eventually.js';
import { runCli } from '../support/run-cli.js';

// A release's migrate must end, whatever the server does: a round trip of the run's own that
// goes unanswered (a backend frozen, or a path that stalls while its kernel acknowledges, so
// TCP never tells) gets a deadline, and a read of the record waits for the table's lock (a
// restore holds it for its whole run) no longer than a run waits for another's lock.
const name = '20990101000000_add_users_nickname';

async function sandboxWithPending({ onTestFinished }: TestContext) {
  const sandbox = await createMigrationSandbox({ observed: true });
  onTestFinished(() => sandbox.remove());
  await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
  await writeMigration(sandbox.migrationsDir, name, 'ALTER TABLE users ADD COLUMN nickname text;\n', 'ALTER TABLE users DROP COLUMN nickname;\n');
  const { observer } = sandbox;
  const recorded = async () => (await observer.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).rowCount;
  return { ...sandbox, recorded };
}

// The run fails as the lock wait it is (55P03), not as a server that did not answer, while
// `holder` keeps the record; then the holder lets go.
async function failsAsLockWait({ expect }: TestContext, run: () => Promise<unknown>, holder: TableLockHolder): Promise<void> {
  try {
    const error = await run().catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(ConnectionError);
    expect((error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code).toMatch(/^(55P03|LOCK_NOT_AVAILABLE)$/);
  } finally {
    await holder.release();
  }
}

// An index built CONCURRENTLY that waits out another transaction's snapshot for as long as the
// test likes, run as the owner with looks at its session every 300 ms: the looks seen so far
// (from the monitor's connection, by pid), and the run's outcome once the snapshot is let go.
async function watchedIndexBuild(context: TestContext, options: { connectionLimit?: number } = {}) {
  const sandbox = await createMigrationSandbox();
  context.onTestFinished(() => sandbox.remove());
  const { database, migrationsDir } = sandbox;
  await migrate({ databaseUrl: database.ownerUrl, migrationsDir });
  const index = '20990101000002_index_display_name';
  await writeMigration(
    migrationsDir,
    index,
    '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_display_name_idx ON users (display_name);\n',
    '-- migrate:no-transaction\nDROP INDEX CONCURRENTLY users_display_name_idx;\n',
  );
  // A transaction's snapshot that the build waits out, in the database (with a limit: room for three more).
  const snapshot = await openClient(database.url, 'kw-test-old-snapshot');
  context.onTestFinished(() => snapshot.end());
  if (options.connectionLimit !== undefined) {
    await snapshot.query(`ALTER DATABASE ${snapshot.escapeIdentifier(database.name)} CONNECTION LIMIT ${options.connectionLimit}`);
  }
  await snapshot.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
  // Seen from another database, so as not to take a slot.
  const observer = await openClient(databaseUrlWith(database.url, 'postgres'), 'kw-test-observer');
  context.onTestFinished(() => observer.end());

  let settled = false;
  const run = migrate({ databaseUrl: database.ownerUrl, migrationsDir, serverStallTimeoutMs: 300 })
    .then((runs) => ({ runs }), (error: unknown) => ({ error }))
    .finally(() => (settled = true));
  const looks = new Map<string, { pid: number }>();
  const sample = async () => {
    const { rows } = await observer.query<{ pid: number; at: string }>(
      `SELECT pid, query_start::text AS at FROM pg_stat_activity
        WHERE datname = $1 AND application_name = 'kennwilliamson-migrate-monitor' AND query LIKE '%FROM pg_catalog.pg_stat_activity WHERE pid = $1%'`,
      [database.name],
    );
    for (const { pid, at } of rows) looks.set(`${pid} ${at}`, { pid });
    return [...looks.values()];
  };
  return {
    index,
    observer,
    settled: () => settled,
    lookCount: () => looks.size,
    /** The looks seen, once there are `count` of them (or the run has ended). */
    looked: async (count: number) => {
      await eventually(async () => (await sample()).length >= count || settled, `${count} looks at the index build`, { timeoutMs: 30_000 });
      return [...looks.values()];
    },
    finish: async () => {
      await snapshot.query('COMMIT');
      return run;
    },
    indexValid: async () => (await snapshot.query("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'users_display_name_idx'::regclass")).rows[0]?.valid,
  };
}

describe.concurrent('migrate against a server that stops answering', () => {
  it('gives up on the record held by another session after MIGRATION_LOCK_TIMEOUT, applying nothing', async (context) => {
    const { database, migrationsDir, recorded } = await sandboxWithPending(context);
    const holder = await holdTableLock(database.url, 'schema_migrations');
    let failure: unknown;
    await failsAsLockWait(context, () => migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 1_000 }).catch((e: unknown) => Promise.reject((failure = e))), holder);
    // Naming what waited, and for whom.
    context.expect(failure).toBeInstanceOf(MigrationRecordLockedError);
    context.expect(failure).toMatchObject({ statement: 'the read of the applied migrations', blockers: [context.expect.objectContaining({ pid: holder.pid })] });
    context.expect(await recorded()).toBe(0);
  });

  // A file that runs two seconds, whose record another session's lock then holds: the record
  // waits no longer than MIGRATION_LOCK_TIMEOUT and fails as a lock wait, whatever the file.
  // - No transaction: RESET after the file would give the record's BEGIN and INSERT the
  //   server's lock_timeout (none), and they would wait until the client's deadline.
  // - Long attempts: a transactional file's record is written inside its last attempt, under
  //   that attempt's lock_timeout; a header's attempt= above MIGRATION_LOCK_TIMEOUT and the round
  //   trip's 10 s let the client's deadline fire first. (Attempts start at 100 ms and double:
  //   this one starts at its longest.)
  // - A file's own SET LOCAL lock_timeout stays in force for its record, in its transaction.
  // Either way the held lock would be reported as a silent server.
  it.for([
    { kind: 'a no-transaction file', header: '-- migrate:no-transaction', lockWait: {} },
    { kind: 'a file with long attempts', header: '-- migrate:lock-wait attempt=12s total=12s', lockWait: { firstAttemptMs: 12_000 } },
    { kind: 'a file that sets its own lock_timeout', header: "SET LOCAL lock_timeout = '30s';", lockWait: {} },
  ])('records $kind under MIGRATION_LOCK_TIMEOUT, failing as a lock wait when the record is held', async ({ header, lockWait }, context) => {
    const { database, migrationsDir, observer } = await sandboxWithPending(context);
    await writeMigration(migrationsDir, '20990101000001_slow', `${header}\nSELECT pg_catalog.pg_sleep(2);\n`, 'SELECT 1;\n');
    const migrating = migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 1_000, lockWait }).catch((e: unknown) => e);
    await eventually(
      async () => (await observer.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()")).rowCount === 1,
      'the file runs',
    );
    const holder = await holdTableLock(database.url, 'schema_migrations');
    await failsAsLockWait(context, () => migrating, holder);
  });

  // A file of comments only runs nothing, yet is recorded like any other. (SHARE: the run's
  // reads of the record go on, its first write waits.)
  it('records a file with long attempts and no statement under MIGRATION_LOCK_TIMEOUT too', async (context) => {
    const { database, migrationsDir } = await sandboxWithPending(context);
    await writeMigration(migrationsDir, '20980101000000_nothing_yet', '-- migrate:lock-wait attempt=12s total=12s\n-- nothing yet\n', '-- nothing\n');
    const holder = await holdTableLock(database.url, 'schema_migrations', 'SHARE');
    await failsAsLockWait(context, () => migrate({ databaseUrl: database.url, migrationsDir, lockTimeoutMs: 1_000, lockWait: { firstAttemptMs: 12_000 } }), holder);
  });

  // COMMIT runs what was deferred to it (constraint triggers, deferred foreign keys) for as long
  // as that takes: run before it, without a deadline, so that COMMIT's own deadline fires only
  // for a server that does not answer.
  it("applies a migration whose deferred checks outlast COMMIT's deadline", async (context) => {
    const { database, migrationsDir } = await sandboxWithPending(context);
    const deferred = '20990101000001_deferred_checks';
    await writeMigration(
      migrationsDir,
      deferred,
      'CREATE TABLE checked_late (id int);\n' +
        'CREATE FUNCTION check_slowly() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.pg_sleep(10.5); RETURN NULL; END $$;\n' +
        'CREATE CONSTRAINT TRIGGER check_slowly AFTER INSERT ON checked_late DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_slowly();\n' +
        'INSERT INTO checked_late VALUES (1);\n',
      'DROP TABLE checked_late;\nDROP FUNCTION check_slowly();\n',
    );

    const runs = await migrate({ databaseUrl: database.url, migrationsDir });

    context.expect(runs.map((run) => run.name)).toEqual([name, deferred]);
  });

  // The refusals before the lock (a superuser's login, another role than the record's owner)
  // and the check of a no-transaction file's standard_conforming_strings had no deadline: a
  // server silent there held the release step for ever.
  it.for([
    { step: 'the check of the role and its search_path', what: 'the check of the role and its search_path', pattern: /has_schema_privilege/, options: {} },
    { step: 'COMMIT', what: 'COMMIT', pattern: commitMessage, options: {} },
    { step: "the superuser refusal's look", what: 'SELECT CURRENT_USER', pattern: /rolsuper/, options: { refuseSuperuser: true } },
    { step: "the record owner refusal's look", what: 'SELECT CURRENT_USER', pattern: /relowner/, options: { refuseOtherOwner: true } },
    { step: "a no-transaction file's check", what: 'SHOW standard_conforming_strings', pattern: /SHOW standard_conforming_strings/, options: { noTransactionFile: true } },
  ] as const)('fails with a retryable ConnectionError when $step goes unanswered, rather than waiting for ever', async ({ what, pattern, options }, context) => {
    const { database, migrationsDir } = await sandboxWithPending(context);
    const { noTransactionFile, ...refusals } = { noTransactionFile: false, ...options };
    if (noTransactionFile) {
      await writeMigration(migrationsDir, '20990101000001_index_nickname', '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_nickname ON users (nickname);\n', 'DROP INDEX users_nickname;\n');
    }
    const { proxy, url: throughProxy } = await stallingProxyFor(database.url, context.onTestFinished);
    const stalled = proxy.stallOn(pattern);

    const error = await migrate({ databaseUrl: throughProxy, migrationsDir, lockTimeoutMs: 1_000, ...refusals }).catch((e: unknown) => e);

    await stalled;
    context.expect(error).toBeInstanceOf(ConnectionError);
    context.expect(error).toMatchObject({ reason: 'deadline', retryable: true });
    context.expect((error as Error).message).toContain(`no answer to ${what} within`);
    if (what === 'COMMIT') context.expect((error as Error).message).toContain(`${name} may or may not be applied: \`migrate status\` tells`);
  });

  // The blocker monitor's own connection sets its search_path first: unanswered, that held every
  // later look, the attempt's end and so the run, with the migration lock, for ever, long after
  // the reader it waited for had gone.
  it("applies the migration once the reader has gone, when the blocker monitor's connection falls silent as it opens", async (context) => {
    const { database, migrationsDir } = await sandboxWithPending(context);
    const { proxy, url: throughProxy } = await stallingProxyFor(database.url, context.onTestFinished);
    const monitorSilent = proxy.stallOn(/SET search_path = pg_catalog/);
    const reader = await holdTableLock(database.url, 'users', 'ACCESS SHARE');
    const run = migrate({ databaseUrl: throughProxy, migrationsDir, lockWait: { totalMs: 20_000 } });
    try {
      await monitorSilent;
    } finally {
      await reader.release();
    }

    const runs = await run;

    context.expect(runs.map((applied) => applied.name)).toEqual([name]);
  });

  it('migrate down: fails at the deadline when its refusals before the question go unanswered, reverting nothing', async (context) => {
    const { database, migrationsDir, observer } = await sandboxWithPending(context);
    await migrate({ databaseUrl: database.url, migrationsDir });
    const { proxy, url: throughProxy } = await stallingProxyFor(database.url, context.onTestFinished);
    const stalled = proxy.stallOn(/rolsuper/);

    const result = await runCli('migrate', ['down', '--yes', '--migrations-dir', migrationsDir], { MIGRATION_DATABASE_URL: throughProxy, DATABASE_URL: '' });

    await stalled;
    context.expect(result.code, result.stderr).toBe(1);
    context.expect(result.stderr).toContain('no answer to SELECT CURRENT_USER within 10000 ms');
    context.expect((await observer.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).rowCount).toBe(1);
  });

  // A migration's statement may run long (an index build, a table's rewrite), so it gets no
  // fixed deadline; but one held back on the way (or its answer) was waited for without end,
  // with the migration lock held. After serverStallTimeoutMs unanswered, its session is looked
  // at: running nothing, the connection is closed.
  it.for([
    { kind: 'a transactional file', up: 'ALTER TABLE users ADD COLUMN nickname text;\n', pattern: /ADD COLUMN nickname/, said: /no answer to its statements for [\d.]+ s \(looked at every 1 s\), and its session runs no statement \(pg_stat_activity: idle in transaction\)/ },
    // Its deferred checks, run before the COMMIT, whatever the file.
    { kind: "a file's deferred checks", up: 'ALTER TABLE users ADD COLUMN nickname text;\n', pattern: /SET CONSTRAINTS ALL IMMEDIATE/, said: /no answer to SET CONSTRAINTS for [\d.]+ s \(looked at every 1 s\), and its session runs no statement \(pg_stat_activity: idle in transaction\)/ },
    { kind: 'a no-transaction file', up: '-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY users_email_again ON users (email);\n', pattern: /CREATE INDEX CONCURRENTLY/, said: /no answer to CREATE INDEX for [\d.]+ s \(looked at every 1 s\), and its session runs no statement \(pg_stat_activity: idle\); the connection was closed\); the operation may be retried; this statement itself may or may not have taken effect\. It ran without a transaction/ },
  ])('fails $kind whose statement goes unanswered while its session runs nothing, after serverStallTimeoutMs', async ({ up, pattern, said }, context) => {
    const sandbox = await createMigrationSandbox({ observed: true });
    context.onTestFinished(() => sandbox.remove());
    await migrate({ databaseUrl: sandbox.database.url, migrationsDir: sandbox.migrationsDir });
    await writeMigration(sandbox.migrationsDir, name, up, 'SELECT 1;\n');
    const { proxy, url: throughProxy } = await stallingProxyFor(sandbox.database.url, context.onTestFinished);
    const stalled = proxy.stallOn(pattern);

    const error = await migrate({ databaseUrl: throughProxy, migrationsDir: sandbox.migrationsDir, serverStallTimeoutMs: 1_000 }).catch((e: unknown) => e);

    await stalled;
    context.expect((error as Error).message).toMatch(said);
    context.expect((error as Error).message).toContain('the connection was closed');
    context.expect((await sandbox.observer.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name])).rowCount).toBe(0);
  });

  // A run had three connections (the lock's, the migrating one, the blocker monitor once an
  // index build ran a second) and looked at a long statement's session from a fourth, opened for
  // each look: where the owner could have three (a CONNECTION LIMIT, a full server), every look
  // was refused, and the tenth took the healthy index build for lost, leaving it INVALID. The
  // looks now go through the monitor's connection.
  it('builds an index CONCURRENTLY past serverStallTimeoutMs where the database has room for the run\'s three connections only', async (context) => {
    const build = await watchedIndexBuild(context, { connectionLimit: 4 });
    await build.looked(10);
    const outcome = await build.finish();

    context.expect(outcome).toEqual({ runs: [expect.objectContaining({ name: build.index })] });
    context.expect(await build.indexValid()).toBe(true);
  });

  // Once the looks shared the monitor's connection, the server ending it while it idled left the
  // monitor holding a closed client: every later look failed at once, and the second in a row took
  // the healthy build for lost. A lost connection is opened again at the next look.
  it("builds an index CONCURRENTLY past serverStallTimeoutMs when the server ends the monitor's connection", async (context) => {
    const build = await watchedIndexBuild(context);
    const [first] = await build.looked(1);
    await build.observer.query('SELECT pg_terminate_backend($1)', [first!.pid]);
    await eventually(async () => (await build.looked(0)).some((look) => look.pid !== first!.pid && build.lookCount() >= 4) || build.settled(), 'looks from a new connection');
    const outcome = await build.finish();

    context.expect(outcome).toEqual({ runs: [expect.objectContaining({ name: build.index })] });
    context.expect(await build.indexValid()).toBe(true);
  });

  it('applies a statement that runs longer than serverStallTimeoutMs, its session running it', async (context) => {
    const { database, migrationsDir } = await sandboxWithPending(context);
    await writeMigration(migrationsDir, '20990101000001_slow', 'SELECT pg_catalog.pg_sleep(2);\n', 'SELECT 1;\n');

    const runs = await migrate({ databaseUrl: database.url, migrationsDir, serverStallTimeoutMs: 300 });

    context.expect(runs.map((run) => run.name)).toEqual([name, '20990101000001_slow']);
  });
});
