import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

// An operator runs scripts/*.sh from wherever they stand, as the README shows
// (`file=$(scripts/backup-db.sh)`): the script runs npm in the package, and a relative
// BACKUP_DIR still means the operator's folder, not the package's (npm's INIT_CWD, which the
// script's `npm --prefix` passes on where a `cd` into the package would lose it).
describe('scripts/backup-db.sh run from another folder', () => {
  let database: TestDatabase;
  let standingIn: string;
  const relative = `nightly-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    database = await createTestDatabase();
    standingIn = await mkdtemp(path.join(os.tmpdir(), 'kw-operator-folder-'));
  });
  afterAll(async () => {
    await database?.drop();
    if (standingIn) await rm(standingIn, { recursive: true, force: true });
    // Where a script that lost the operator's folder would have put it.
    await rm(path.join(packageRoot(), relative), { recursive: true, force: true });
  });

  it("writes a relative BACKUP_DIR's backup in the operator's folder, printing its path", async () => {
    // An operator's shell, not npm's: no INIT_CWD of vitest's own run to pass on.
    const { INIT_CWD: _, ...shell } = process.env;
    const { stdout } = await promisify(execFile)('bash', [path.join(packageRoot(), 'scripts', 'backup-db.sh')], {
      cwd: standingIn,
      env: { ...shell, DATABASE_URL: '', MIGRATION_DATABASE_URL: database.ownerUrl, BACKUP_DIR: relative },
    });

    const written = await readdir(path.join(standingIn, relative));
    const backup = written.find((name) => !name.endsWith('.sha256'));
    expect(backup).toMatch(new RegExp(`^${database.name}_`));
    expect(written).toEqual([backup, `${backup}.sha256`]);
    expect(stdout.trim()).toBe(path.join(standingIn, relative, backup!));
    expect(await readdir(packageRoot())).not.toContain(relative);
  }, 60_000);
});
