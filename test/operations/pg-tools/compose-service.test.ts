import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { databaseTarget } from '../../../src/db/database-target.js';
import { PgToolNotFoundError } from '../../../src/errors.js';
import { composeServiceMismatch, parseComposePort, type PublishedPort } from '../../../src/operations/pg-tools/compose-service.js';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { findPgTool } from '../../../src/operations/pg-tools/pg-tools.js';
import { packageRoot } from '../../../src/package-root.js';

// What `docker compose port postgres 5432` prints for this project's docker-compose.yml:
// its published address, with ${POSTGRES_PORT:-5432} read as compose reads it.
async function publishedByComposeFile(env: NodeJS.ProcessEnv): Promise<string> {
  const compose = parse(await readFile(path.join(packageRoot(), 'docker-compose.yml'), 'utf8')) as {
    services: { postgres: { ports: string[] } };
  };
  return compose.services.postgres.ports
    .map((entry) => entry.replace(/\$\{(\w+):-([^}]*)\}/g, (_, name: string, fallback: string) => env[name] || fallback))
    .map((entry) => /^(.+):(\d+):5432$/.exec(entry))
    .filter((match) => match !== null)
    .map((match) => `${match[1]}:${match[2]}`)
    .join('\n');
}

describe('the docker-compose container is used only for its own server', () => {
  let published: PublishedPort[];
  beforeAll(async () => {
    published = parseComposePort(await publishedByComposeFile({}));
  });

  it('reads the published address of this project\'s compose file (loopback only)', () => {
    expect(published).toEqual([{ host: '127.0.0.1', port: 5432 }]);
    expect(parseComposePort('0.0.0.0:6000\n[::]:6000\n')).toEqual([
      { host: '0.0.0.0', port: 6000 },
      { host: '::', port: 6000 },
    ]);
    expect(parseComposePort('')).toEqual([]);
  });

  it.each([
    ['postgresql://kennwilliamson:pw@127.0.0.1:5432/kennwilliamson', undefined],
    ['postgresql://kennwilliamson:pw@localhost:5432/kennwilliamson', undefined],
    // The README's case: the embedded server while the compose service runs.
    ['postgresql://postgres:postgres@127.0.0.1:54320/kennwilliamson', 'the database URL reaches 127.0.0.1:54320, but the service publishes 127.0.0.1:5432'],
    ['postgresql://app:pw@db.example.org:5432/kennwilliamson', 'the database URL reaches db.example.org:5432, not this machine'],
    ['postgresql://app:pw@127.0.0.2:5432/kennwilliamson', 'the database URL reaches 127.0.0.2:5432, but the service publishes 127.0.0.1:5432'],
    ['postgresql://app:pw@/kennwilliamson?host=/var/run/postgresql', "the database URL reaches the Unix socket in /var/run/postgresql, not the service's published port"],
  ])('%s: %s', (url, reason) => {
    expect(composeServiceMismatch(databaseTarget(url, {}), published)).toBe(reason);
  });

  it('follows POSTGRES_PORT as the compose file does', async () => {
    const moved = parseComposePort(await publishedByComposeFile({ POSTGRES_PORT: '6543' }));
    expect(composeServiceMismatch(databaseTarget('postgresql://u:p@127.0.0.1:6543/db', {}), moved)).toBeUndefined();
    expect(composeServiceMismatch(databaseTarget('postgresql://u:p@127.0.0.1:5432/db', {}), moved)).toBe(
      'the database URL reaches 127.0.0.1:5432, but the service publishes 127.0.0.1:6543',
    );
  });

  describe('findPgTool', () => {
    let root: string;
    let env: NodeJS.ProcessEnv;
    beforeAll(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), 'kw-compose-'));
      const bin = path.join(root, 'bin');
      await mkdir(bin);
      // A docker CLI that answers as it does with this project's service running: a
      // stand-in for the engine this machine lacks, fed the compose file's real binding.
      await writeFile(
        path.join(bin, 'docker'),
        `#!/bin/sh
case "$*" in
  "compose ps --status running --format {{.Service}}") echo postgres ;;
  "compose port postgres 5432") printf '%s\\n' '${await publishedByComposeFile({})}' ;;
  "compose exec -T postgres pg_dump --version") echo "pg_dump (PostgreSQL) 17.6" ;;
  *) exit 1 ;;
esac
`,
      );
      await chmod(path.join(bin, 'docker'), 0o755);
      env = { PATH: bin };
    });
    afterAll(() => rm(root, { recursive: true, force: true }));

    const search = { installationsDir: path.join('/nonexistent'), minMajor: 17 };

    it('takes the container\'s pg_dump for the service\'s own published port, connecting inside to 127.0.0.1:5432', async () => {
      const url = 'postgresql://kennwilliamson:pw@127.0.0.1:5432/kennwilliamson';
      const tool = await findPgTool('pg_dump', { ...search, env, target: databaseTarget(url, {}) });
      expect(tool).toMatchObject({ inContainer: true, major: 17, location: "docker compose service 'postgres'" });
      expect(libpqConnection(url, { inContainer: tool.inContainer, env: {} }).args.slice(0, 4)).toEqual(['--host', '127.0.0.1', '--port', '5432']);
    });

    it('skips it for another server (the embedded one on 54320) and says why', async () => {
      const url = 'postgresql://postgres:postgres@127.0.0.1:54320/kennwilliamson';
      const error = await findPgTool('pg_dump', { ...search, env, target: databaseTarget(url, {}) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PgToolNotFoundError);
      expect((error as Error).message).toContain(
        "docker compose service 'postgres' (skipped: the database URL reaches 127.0.0.1:54320, but the service publishes 127.0.0.1:5432)",
      );
    });

    it('skips it for a remote server', async () => {
      const url = 'postgresql://app:pw@db.example.org:5432/kennwilliamson';
      await expect(findPgTool('pg_dump', { ...search, env, target: databaseTarget(url, {}) })).rejects.toThrow(
        'skipped: the database URL reaches db.example.org:5432, not this machine',
      );
    });
  });
});
