import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { optionMs } from '../../src/db/option-ms.js';
import { ConfigError } from '../../src/errors.js';
import { migrate, migrationStatus } from '../../src/migrations/migrator.js';
import { backupDatabase } from '../../src/operations/backup/backup.js';
import { downloadBackup } from '../../src/operations/download/download-backup.js';
import { restoreDatabase } from '../../src/operations/restore/restore.js';
import { verifyBackupFile } from '../../src/operations/vetting/verify-backup-file.js';

// A bound no timer can hold fires after 1 ms in Node: a statement's session was looked at,
// with a fresh login each time, some hundred times a second.
describe('optionMs', () => {
  it.each([Number.NaN, Number.POSITIVE_INFINITY, 0, -5, 2 ** 31])('refuses %s, naming the option', (value) => {
    expect(() => optionMs('serverStallTimeoutMs', value)).toThrow(ConfigError);
    expect(() => optionMs('serverStallTimeoutMs', value)).toThrow(`serverStallTimeoutMs must be a number of milliseconds from 1 to 2147483647, got ${value}`);
  });

  it('takes a duration a timer holds, in whole milliseconds', () => {
    expect(optionMs('serverStallTimeoutMs', 60_000)).toBe(60_000);
    expect(optionMs('serverStallTimeoutMs', 1.6)).toBe(2);
  });

  const nowhere = 'postgresql://kennwilliamson:secret@127.0.0.1:1/kennwilliamson';
  // Before they connect, or make a folder: the URL reaches nothing, and the folder is never made.
  it('is checked by the library\'s commands before they do anything', async () => {
    await expect(migrate({ databaseUrl: nowhere, serverStallTimeoutMs: Number.POSITIVE_INFINITY })).rejects.toThrow('serverStallTimeoutMs must be');
    await expect(
      restoreDatabase({ databaseUrl: nowhere, backup: { file: '/nonexistent.dump' } as never, serverStallTimeoutMs: Number.NaN }),
    ).rejects.toThrow('serverStallTimeoutMs must be');
    await expect(restoreDatabase({ databaseUrl: nowhere, backup: { file: '/nonexistent.dump' } as never, lockTimeoutMs: 0 })).rejects.toThrow('lockTimeoutMs must be');
    await expect(backupDatabase({ databaseUrl: nowhere, backupDir: '/nonexistent/kw-never-made', environment: 'test', keep: 1, stallTimeoutMs: Number.POSITIVE_INFINITY })).rejects.toThrow('stallTimeoutMs must be');
    await expect(backupDatabase({ databaseUrl: nowhere, backupDir: '/nonexistent/kw-never-made', environment: 'test', keep: 1, lockTimeoutMs: 2 ** 40 })).rejects.toThrow('lockTimeoutMs must be');
    await expect(
      backupDatabase({ databaseUrl: nowhere, backupDir: '/nonexistent/kw-never-made', environment: 'test', keep: 1, lockTimeoutMs: Number.POSITIVE_INFINITY, stallTimeoutMs: 1_000 }),
    ).rejects.toThrow('lockTimeoutMs must be');
    await expect(migrate({ databaseUrl: nowhere, lockTimeoutMs: Number.POSITIVE_INFINITY })).rejects.toThrow('lockTimeoutMs must be');
    await expect(migrationStatus({ databaseUrl: nowhere, lockTimeoutMs: 3_000_000_000 })).rejects.toThrow('lockTimeoutMs must be');
    await expect(verifyBackupFile('/nonexistent/kw-never-made/x.sql.gz', { stallTimeoutMs: Number.NaN })).rejects.toThrow('stallTimeoutMs must be');
    await expect(downloadBackup({ host: 'localhost', file: 'x_test_20250101T000000.000Z.dump', backupDir: '/nonexistent/kw-never-made', stallTimeoutMs: Number.NaN } as never)).rejects.toThrow('stallTimeoutMs must be');
    expect(existsSync('/nonexistent')).toBe(false);
  });
});
