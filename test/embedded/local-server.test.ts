import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cliDatabaseUrl, localAdminUrl, localPasswordFile, localServerOptions, requireLocalServerPort } from '../../src/embedded/local-server.js';
import { ConfigError } from '../../src/errors.js';
import { runCli } from '../support/run-cli.js';

// The embedded server listens on 127.0.0.1, where every account of the machine reaches it;
// its superuser can run programs on the server (COPY … FROM PROGRAM).
describe("the local embedded server's superuser password", () => {
  let root: string;
  let env: NodeJS.ProcessEnv;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kw-local-server-'));
    env = { EMBEDDED_PG_DATA_DIR: path.join(root, 'postgres'), EMBEDDED_PG_PORT: '54399' };
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  it('is random for a new cluster, kept beside its data folder for its owner only, and the same every time', async () => {
    const { password } = localServerOptions(env);
    expect(password).not.toBe('postgres');
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const file = localPasswordFile(env.EMBEDDED_PG_DATA_DIR!);
    expect(file).toBe(path.join(root, 'postgres.password'));
    expect(((await stat(file)).mode & 0o777).toString(8)).toBe('600');
    expect(await readFile(file, 'utf8')).toBe(`${password}\n`);
    expect(localServerOptions(env).password).toBe(password);
    expect(localAdminUrl(env)).toBe(`postgresql://postgres:${password}@127.0.0.1:54399/kennwilliamson`);
    // The other commands connect as the owner role, not as the superuser.
    expect(cliDatabaseUrl(env)).toBe('postgresql://kennwilliamson:kennwilliamson@127.0.0.1:54399/kennwilliamson');
  });

  it('stays postgres for a cluster made before the password file existed', async () => {
    await mkdir(env.EMBEDDED_PG_DATA_DIR!, { recursive: true });
    await writeFile(path.join(env.EMBEDDED_PG_DATA_DIR!, 'PG_VERSION'), '17\n');
    expect(localServerOptions(env).password).toBe('postgres');
  });
});

// A second checkout whose server was started with another EMBEDDED_PG_PORT, later used from a
// shell without it: its commands must not reach the server on the port they name, which may
// be another checkout's (whose owner login is the same).
describe("the local embedded server's port", () => {
  let root: string;
  let dataDir: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kw-local-port-'));
    dataDir = path.join(root, 'postgres');
    await mkdir(dataDir, { recursive: true });
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  // What PostgreSQL writes there: process id, data folder, start time, port, socket folder, …
  const running = (pid: number, port: number) => writeFile(path.join(dataDir, 'postmaster.pid'), `${pid}\n${dataDir}\n1764900000\n${port}\n\n127.0.0.1\n`);

  it('is the one the running server of the data folder listens on, or the commands refuse, naming both', async () => {
    expect(() => requireLocalServerPort({ dataDir, port: 54399 })).not.toThrow(); // not running
    await running(process.pid, 54399);
    expect(() => requireLocalServerPort({ dataDir, port: 54399 })).not.toThrow();
    await running(process.pid, 54398);
    expect(() => requireLocalServerPort({ dataDir, port: 54399 })).toThrow(ConfigError);
    expect(() => requireLocalServerPort({ dataDir, port: 54399 })).toThrow(`is running on port 54398, but EMBEDDED_PG_PORT says 54399: set EMBEDDED_PG_PORT=54398`);
    // A postmaster.pid left by a server that is gone says nothing.
    await running(spawnSync('true').pid!, 54398);
    expect(() => requireLocalServerPort({ dataDir, port: 54399 })).not.toThrow();
  });

  it('is checked by the commands before they connect: a backup or a migration never reaches another server on the port they name', async () => {
    await running(process.pid, 54398);
    const env = { EMBEDDED_PG_DATA_DIR: dataDir, EMBEDDED_PG_PORT: '54399', DATABASE_URL: '', MIGRATION_DATABASE_URL: '', ADMIN_DATABASE_URL: '' };
    for (const [command, args] of [
      ['db-backup', []],
      ['migrate', ['status']],
      ['db-start', []],
    ] as const) {
      const result = await runCli(command, [...args], env);
      expect(result.code, command).toBe(1);
      expect(result.stderr, command).toContain(`the embedded server of ${dataDir} is running on port 54398, but EMBEDDED_PG_PORT says 54399`);
    }
  });
});
