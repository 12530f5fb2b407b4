import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'vitest';
import { BackupError, ConnectionError, RestoreError } from '../../src/errors.js';
import { backupDatabase } from '../../src/operations/backup/backup.js';
import { restoreSession } from '../../src/operations/restore/restore-session.js';
import { stallingProxyFor } from '../support/stalling-proxy.js';
import { createTestDatabase } from '../support/test-database.js';

// A backup's and a restore's looks at the server before their work (after the check that it is
// no pooler, which had its deadline) went unanswered for ever when the server fell silent
// there: pg_dump's stall watch starts only with pg_dump, and the restore's bounds only with
// its own session. Each look gets a round trip's deadline (10 s).
describe.concurrent('backup and restore against a server that stops answering before their work', () => {
  it('backup: fails at the deadline of its look after the pooler check, running no pg_dump and writing no file', async ({ expect, onTestFinished }) => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-silent-backup-'));
    onTestFinished(() => rm(backupDir, { recursive: true, force: true }));
    const { proxy, url } = await stallingProxyFor(database.url, onTestFinished);
    const stalled = proxy.stallOn(/SET search_path = pg_catalog/);

    const error = await backupDatabase({ databaseUrl: url, backupDir, environment: 'development', keep: 1 }).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(BackupError);
    expect((error as Error).cause).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/no answer to SET SEARCH_PATH within 10000 ms; the connection was closed\); the operation may be retried; pg_dump was not run$/);
    expect(await readdir(backupDir)).toEqual([]);
  });

  it.for([
    ['its own search_path', /SET search_path = pg_catalog/, 'SET SEARCH_PATH'],
    ['the look at the roles', /pg_get_userbyid\(d\.datdba\)/, 'SELECT SESSION_USER'],
  ] as const)('restore: fails at the deadline when %s goes unanswered, the database untouched', async ([, pattern, unanswered], { expect, onTestFinished }) => {
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const { proxy, url } = await stallingProxyFor(database.url, onTestFinished);
    const stalled = proxy.stallOn(pattern);

    const error = await restoreSession(url).catch((e: unknown) => e);

    await stalled;
    expect(error).toBeInstanceOf(RestoreError);
    expect((error as Error).cause).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toContain(`no answer to ${unanswered} within 10000 ms; the connection was closed); the operation may be retried; the database was not touched`);
  });
});
