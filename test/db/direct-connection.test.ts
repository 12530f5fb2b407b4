import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directCheckDeadlineMs, requireDirectDatabase } from '../../src/db/direct-connection.js';
import { ConnectionError } from '../../src/errors.js';
import { migrate } from '../../src/migrations/migrator.js';
import { backupDatabase } from '../../src/operations/backup/backup.js';
import { restoreSession } from '../../src/operations/restore/restore-session.js';
import { startFakePostgres, type FakePostgres } from '../support/fake-postgres.js';

// What lets the login in and then answers nothing: a pooler whose servers are all busy or
// gone (PgBouncer holds such a query up to its query_wait_timeout, 0 meaning for ever), or a
// path that died after the login. TCP keepalive never probes a connection whose query waits
// unacknowledged, and the connect timeout ended with the login.
describe('an operation on a server that lets the login in, then never answers', () => {
  let silent: FakePostgres;
  let url: string;
  let backupDir: string;
  beforeAll(async () => {
    silent = await startFakePostgres('login, then nothing');
    url = `postgresql://kw:pw@127.0.0.1:${silent.port}/kennwilliamson`;
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-backups-'));
  });
  afterAll(async () => {
    await silent?.close();
    await rm(backupDir, { recursive: true, force: true });
  });

  it('gives up at its first check, which must show the server is PostgreSQL itself, once the check outlives its deadline', { timeout: directCheckDeadlineMs * 3 }, async () => {
    const deadline = `no answer to a one-line query within ${directCheckDeadlineMs} ms, although the login was let in; the connection was closed`;
    // The four operations at once: each waits its own deadline.
    const [setup, migration, backup, restore] = await Promise.all(
      [
        requireDirectDatabase(url, { operation: 'setup', applicationName: 'kennwilliamson-setup' }),
        migrate({ databaseUrl: url }),
        backupDatabase({ databaseUrl: url, backupDir, environment: 'development', keep: 1 }),
        restoreSession(url),
      ].map((work) => work.then(() => undefined, (error: unknown) => error as Error)),
    );

    expect(setup).toBeInstanceOf(ConnectionError);
    expect((setup as ConnectionError).reason).toBe('deadline');
    for (const error of [setup, migration, backup, restore]) expect(error?.message).toContain(deadline);
    expect(backup?.message).toContain('pg_dump was not run');
  });
});
