import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/free-port.js';
import { cliDatabaseUrl, localAdminUrl, localPasswordFile, localServerOptions, requireLocalServerPort } from '../../src/embedded/local-server.js';
import { ConfigError } from '../../src/errors.js';
import { startFakePostgres } from '../support/fake-postgres.js';
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
    // Nothing listens on this one: a data folder whose server is not running may use it.
    const free = await freePort();
    await expect(requireLocalServerPort({ dataDir, port: free })).resolves.toBeUndefined(); // not running
    await running(process.pid, 54399);
    await expect(requireLocalServerPort({ dataDir, port: 54399 })).resolves.toBeUndefined();
    await running(process.pid, 54398);
    await expect(requireLocalServerPort({ dataDir, port: 54399 })).rejects.toThrow(ConfigError);
    await expect(requireLocalServerPort({ dataDir, port: 54399 })).rejects.toThrow(`is running on port 54398, but EMBEDDED_PG_PORT says 54399: set EMBEDDED_PG_PORT=54398`);
    // A postmaster.pid left by a server that is gone says nothing.
    await running(spawnSync('true').pid!, 54398);
    await expect(requireLocalServerPort({ dataDir, port: free })).resolves.toBeUndefined();
  });

  // A second checkout whose own server is stopped (or was never started), used with the port of
  // the first checkout's server: the port answers, but not for this data folder. The fake lets
  // every login in, as that server would let in the owner login both checkouts share.
  it("is refused while the data folder's server is not running and another server accepts connections on it", async () => {
    const other = await startFakePostgres('login, then hangs up');
    try {
      const refusal = `port ${other.port} is taken by a server that is not the embedded server of ${dataDir} (which is not running)`;
      const error = await requireLocalServerPort({ dataDir, port: other.port }).catch((e: unknown) => e); // no postmaster.pid
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ variable: 'EMBEDDED_PG_PORT', message: expect.stringContaining(refusal) });
      await running(spawnSync('true').pid!, other.port);
      await expect(requireLocalServerPort({ dataDir, port: other.port })).rejects.toThrow(refusal); // one left by a server that is gone
      expect(other.accepted()).toBeGreaterThan(0);
      expect(other.logins()).toBe(0);
    } finally {
      await other.close();
    }
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

  it("is checked by the commands while the data folder's server is stopped: none logs in to another server on the port, or writes anything", async () => {
    const other = await startFakePostgres('login, then hangs up');
    try {
      const env = { EMBEDDED_PG_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(other.port), DATABASE_URL: '', MIGRATION_DATABASE_URL: '', ADMIN_DATABASE_URL: '' };
      for (const [command, args] of [
        ['migrate', ['status']],
        ['migrate', ['down', '--yes']],
        ['db-backup', []],
        ['codegen', ['--verify']],
        ['db-start', []],
      ] as const) {
        const result = await runCli(command, [...args], env);
        expect(result.code, `${command} ${args.join(' ')}`).toBe(1);
        expect(result.stderr, `${command} ${args.join(' ')}`).toContain(`port ${other.port} is taken by a server that is not the embedded server of ${dataDir}`);
      }
      expect(other.logins()).toBe(0);
      // Not even the superuser's password file beside the data folder, which reading the server's options makes.
      expect(await readdir(root)).toEqual(['postgres']);
      expect(await readdir(dataDir)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it("lets the commands go on while the data folder's server is not running and nothing listens on the port: a migrate fails to connect, as before", async () => {
    const env = { EMBEDDED_PG_DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()), DATABASE_URL: '', MIGRATION_DATABASE_URL: '', ADMIN_DATABASE_URL: '' };
    const result = await runCli('migrate', ['status'], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`[CONNECTION_FAILED]: The database connection to 127.0.0.1:${env.EMBEDDED_PG_PORT} failed (ECONNREFUSED)`);
  });
});
