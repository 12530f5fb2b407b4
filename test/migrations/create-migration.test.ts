import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { createMigration } from '../../src/migrations/create-migration.js';

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
});
