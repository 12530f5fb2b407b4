import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  isEmbeddedServerRunning,
  startEmbeddedServer,
  stopEmbeddedServer,
} from '../../src/embedded/embedded-server.js';
import { freePort } from '../../src/embedded/free-port.js';
import { runCli } from '../support/run-cli.js';

describe('the embedded PostgreSQL 17', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-embedded-'));
  const options = {
    dataDir: path.join(root, 'postgres'),
    port: await freePort(),
    user: 'postgres',
    password: 'postgres',
    database: 'kennwilliamson',
  };

  afterAll(async () => {
    await stopEmbeddedServer(options.dataDir).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it('starts detached on 127.0.0.1, creates the database, and reports an already running server', async () => {
    const first = await startEmbeddedServer(options);
    expect(first).toEqual({
      url: `postgresql://postgres:postgres@127.0.0.1:${options.port}/kennwilliamson`,
      alreadyRunning: false,
    });

    const client = new pg.Client({ connectionString: first.url });
    await client.connect();
    const { rows } = await client.query<{ version: string; listen: string }>(
      "SELECT current_setting('server_version') AS version, current_setting('listen_addresses') AS listen",
    );
    await client.end();
    expect(rows[0]!.version).toMatch(/^17\./);
    expect(rows[0]!.listen).toBe('127.0.0.1');

    expect(await startEmbeddedServer(options)).toMatchObject({ alreadyRunning: true });
  });

  it('stops, and stopping again is a no-op', async () => {
    expect(await stopEmbeddedServer(options.dataDir)).toBe(true);
    expect(await isEmbeddedServerRunning(options.dataDir)).toBe(false);
    expect(await stopEmbeddedServer(options.dataDir)).toBe(false);
  });

  // As root the server runs as the `postgres` account; here `npm run db:start`/`db:stop`
  // themselves run as that unprivileged account, as on a developer's machine, on the same
  // (already initialised) cluster.
  it('npm run db:start / db:stop work for an ordinary user: detached, reported running, stopped', async () => {
    const asRoot = process.getuid?.() === 0;
    const account = asRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres'])), gid: Number(execFileSync('id', ['-g', 'postgres'])) } : {};
    const env = { EMBEDDED_PG_DATA_DIR: options.dataDir, EMBEDDED_PG_PORT: String(options.port), HOME: root };
    const started = await runCli('db-start', [], env, account);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain(`DATABASE_URL=postgresql://postgres:postgres@127.0.0.1:${env.EMBEDDED_PG_PORT}/kennwilliamson`);
    expect((await runCli('db-start', [], env, account)).stdout).toContain('PostgreSQL is already running.');
    const stopped = await runCli('db-stop', [], env, account);
    expect(stopped.stdout).toContain('PostgreSQL stopped.');
  });
});
