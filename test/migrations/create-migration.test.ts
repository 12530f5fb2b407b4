import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, ValidationError } from '../../src/errors.js';
import { createMigration } from '../../src/migrations/create-migration.js';
import { runCli } from '../support/run-cli.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kw-create-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('createMigration', () => {
  it('writes a timestamped up/down pair named after the migration', async () => {
    await createMigration(dir, 'Add timer labels!', new Date('2026-11-26T10:30:05Z'));
    expect((await readdir(dir)).sort()).toEqual([
      '20261126103005_add_timer_labels.down.sql',
      '20261126103005_add_timer_labels.up.sql',
    ]);
  });

  it('refuses a name with no letters or digits, and never overwrites', async () => {
    await expect(createMigration(dir, '  --  ')).rejects.toBeInstanceOf(ValidationError);
    const now = new Date('2026-11-26T10:30:05Z');
    await createMigration(dir, 'same', now);
    await expect(createMigration(dir, 'same', now)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  // A service's installed copy: npm ci would delete the file, and the database would then
  // record a migration whose file is missing, which stops every later release.
  it('refuses a migrations folder inside node_modules, saying create is for this repository', async () => {
    const installed = path.join(dir, 'service', 'node_modules', '@kennwilliamson', 'db', 'migrations');
    await mkdir(installed, { recursive: true });
    const attempt = createMigration(installed, 'add_timer_labels');
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow('migrate create writes into the migrations folder of the @kennwilliamson/db repository');
    expect(await readdir(installed)).toEqual([]);
  });

  it('writes through a workspace link in node_modules to the package’s own folder', async () => {
    const own = path.join(dir, 'packages', 'db', 'migrations');
    await mkdir(own, { recursive: true });
    await mkdir(path.join(dir, 'node_modules', '@kennwilliamson'), { recursive: true });
    await symlink(path.join(dir, 'packages', 'db'), path.join(dir, 'node_modules', '@kennwilliamson', 'db'));
    await createMigration(path.join(dir, 'node_modules', '@kennwilliamson', 'db', 'migrations'), 'linked');
    expect(await readdir(own)).toHaveLength(2);
  });

  it('is refused by `migrate create` too, with exit code 1', async () => {
    const installed = path.join(dir, 'node_modules', '@kennwilliamson', 'db', 'migrations');
    await mkdir(installed, { recursive: true });
    const result = await runCli('migrate', ['create', 'add_timer_labels', '--migrations-dir', installed]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('inside node_modules, an installed copy of the package');
    expect(await readdir(installed)).toEqual([]);
  });
});
