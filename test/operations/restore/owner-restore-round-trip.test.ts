import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { withClient } from '../../../src/db/with-client.js';
import { backupDatabase } from '../../../src/operations/backup/backup.js';
import { runCli } from '../../support/run-cli.js';
import { fillEveryTable, migrationsRecord, tableContents } from '../../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// Runs on 17 (direct) and again on 15 and 18 (the pg15 and pg18 projects, see vitest.config.ts):
// an ordinary backup, made as the owner, restores through the owner role with every table's
// contents identical, given the superuser's URL as the default set-up gives it. On 15 the
// backup is pg_dump 15's custom archive; on 17 and 18 the WebAssembly pg_dump's plain SQL.
// A backup and a restore in child processes: give them room on a busy machine.
describe(`an ordinary backup restores through the owner role (PostgreSQL ${inject('postgresMajor') ?? 17})`, { timeout: 120_000 }, () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let backupDir: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'kw-owner-round-trip-'));
    await Promise.all([fillEveryTable(source.ownerUrl, { users: 100 }), fillEveryTable(target.ownerUrl, { users: 20, tag: 'other' })]);
  });
  afterAll(async () => {
    await Promise.all([source?.drop(), target?.drop()]);
    await rm(backupDir, { recursive: true, force: true });
  });

  it('gives every table back with identical hashes, and every object owned by the owner role', async () => {
    const expected = await tableContents(source.url);
    const backup = await backupDatabase({ databaseUrl: source.ownerUrl, backupDir, environment: 'test', keep: 1 });

    const restored = await runCli('db-restore', [backup.file, '--yes'], {
      DATABASE_URL: target.url,
      MIGRATION_DATABASE_URL: '',
      DB_OWNER_USER: inject('ownerUser'),
      DB_OWNER_PASSWORD: inject('ownerPassword'),
    });

    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stderr).toContain(`restoring as the database's owner '${inject('ownerUser')}', not as 'postgres'`);
    expect(await tableContents(target.url)).toEqual(expected);
    expect(await migrationsRecord(target.url)).toEqual(await migrationsRecord(source.url));
    const owners = await withClient(target.url, async (client) =>
      (
        await client.query<{ owner: string }>(
          "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')",
        )
      ).rows.map((row) => row.owner),
    );
    expect(owners).toEqual([inject('ownerUser')]);
  });
});
