import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cliDatabaseUrl, localAdminUrl, localPasswordFile, localServerOptions } from '../../src/embedded/local-server.js';

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
