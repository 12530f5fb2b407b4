import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, PgToolNotFoundError } from '../../../src/errors.js';
import { findPgTool } from '../../../src/operations/pg-tools/pg-tools.js';

// Fake installations: scripts that answer --version like pg_dump does.
describe('findPgTool', () => {
  let root: string;
  const fake = async (dir: string, version: string) => {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'pg_dump');
    await writeFile(file, `#!/bin/sh\necho "pg_dump (PostgreSQL) ${version} (fake)"\n`);
    await chmod(file, 0o755);
    return file;
  };
  let v14: string;
  let v16: string;
  let v18: string;
  let onPath: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kw-pg-tools-'));
    v14 = await fake(path.join(root, 'lib', '14', 'bin'), '14.9');
    v16 = await fake(path.join(root, 'lib', '16', 'bin'), '16.4');
    v18 = await fake(path.join(root, 'lib', '18', 'bin'), '18.1');
    onPath = await fake(path.join(root, 'path'), '15.18');
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const search = (env: NodeJS.ProcessEnv = {}) => ({
    env: { PATH: path.join(root, 'path'), ...env },
    installationsDir: path.join(root, 'lib'),
    docker: false,
  });

  it('takes the first that fits: PG_DUMP, then PATH, then installations newest first', async () => {
    expect(await findPgTool('pg_dump', { ...search({ PG_DUMP: v14 }), minMajor: 14 })).toMatchObject({ location: v14, major: 14, version: '14.9' });
    expect(await findPgTool('pg_dump', { ...search({ PG_DUMP: v14 }), minMajor: 15 })).toMatchObject({ location: onPath, major: 15 });
    expect(await findPgTool('pg_dump', { ...search(), minMajor: 16 })).toMatchObject({ location: v18, major: 18 });
  });

  // execFile's timeout sent SIGTERM and waited for the program to exit: a stopped one held the
  // backup for ever, before any message.
  it('passes over a program whose --version does not answer in time, even a stopped one', async () => {
    const stopped = path.join(root, 'stopped');
    await mkdir(stopped, { recursive: true });
    await writeFile(path.join(stopped, 'pg_dump'), '#!/bin/sh\nkill -STOP $$\necho "pg_dump (PostgreSQL) 17.2 (fake)"\n');
    await chmod(path.join(stopped, 'pg_dump'), 0o755);
    const found = await findPgTool('pg_dump', { ...search(), preferDir: stopped, versionTimeoutMs: 200 });
    expect(found).toMatchObject({ location: onPath, major: 15 });
  });

  it('looks in the preferred folder right after the variable', async () => {
    expect(await findPgTool('pg_dump', { ...search(), preferDir: path.dirname(v16) })).toMatchObject({ location: v16 });
  });

  it('names the version needed and every version found when none fits', async () => {
    const error = await findPgTool('pg_dump', { ...search(), minMajor: 19 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PgToolNotFoundError);
    expect((error as Error).message).toBe(
      `needs pg_dump >= 19, found 15 at ${onPath}, 18 at ${v18}, 16 at ${v16}, 14 at ${v14}; ` +
        'install the PostgreSQL 19 client tools or point PG_DUMP at a newer pg_dump',
    );
  });

  it('says where it looked when there is none at all', async () => {
    await expect(findPgTool('pg_dump', { env: { PATH: '' }, installationsDir: path.join(root, 'none'), docker: false })).rejects.toThrow(
      /^no pg_dump found \(looked at PG_DUMP, PATH, .*\/none\/\*\/bin, docker compose service 'postgres'\)/,
    );
  });

  it('treats a PG_DUMP that does not run as a configuration error rather than skipping it', async () => {
    await expect(findPgTool('pg_dump', search({ PG_DUMP: path.join(root, 'missing') }))).rejects.toBeInstanceOf(ConfigError);
  });
});
