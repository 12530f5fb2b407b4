import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupSettings } from '../../../src/operations/backup/backup-settings.js';

describe('backupSettings', () => {
  it('defaults to ./backups, 14 kept and the development environment', () => {
    expect(backupSettings({})).toEqual({ backupDir: path.resolve('backups'), keep: 14, environment: 'development' });
  });

  // npm runs the script in the package root and says where the operator typed it in INIT_CWD.
  it("reads a relative BACKUP_DIR from the operator's folder (INIT_CWD), the default from the package's", () => {
    expect(backupSettings({ BACKUP_DIR: 'nightly', INIT_CWD: '/srv/ops' }).backupDir).toBe('/srv/ops/nightly');
    expect(backupSettings({ BACKUP_DIR: '/var/backups/kw', INIT_CWD: '/srv/ops' }).backupDir).toBe('/var/backups/kw');
    expect(backupSettings({ BACKUP_DIR: 'nightly' }).backupDir).toBe(path.resolve('nightly'));
    expect(backupSettings({ INIT_CWD: '/srv/ops' }).backupDir).toBe(path.resolve('backups'));
  });

  it('names backups after BACKUP_ENV before NODE_ENV', () => {
    expect(backupSettings({ NODE_ENV: 'production' }).environment).toBe('production');
    expect(backupSettings({ NODE_ENV: 'production', BACKUP_ENV: 'staging' }).environment).toBe('staging');
  });

  it('refuses values that would break file names or retention, naming the variable', () => {
    expect(() => backupSettings({ BACKUP_ENV: '../prod' })).toThrow(/^BACKUP_ENV must be letters, digits and '-'/);
    expect(() => backupSettings({ NODE_ENV: 'prod_eu' })).toThrow(/^NODE_ENV must be/);
    expect(() => backupSettings({ BACKUP_KEEP: 'many' })).toThrow(/^BACKUP_KEEP must be a whole number of at least 1, got 'many'/);
  });
});
