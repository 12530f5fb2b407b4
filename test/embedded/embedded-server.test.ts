import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink } from 'node:fs/promises';
import net from 'node:net';
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
import { connectionFromPort } from '../support/connection-from-port.js';
import { cliOutcome, runCli, startCli } from '../support/run-cli.js';

describe('the embedded PostgreSQL 17', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'kw-embedded-'));
  // The server runs as the 'postgres' account when this runs as root: let it into this folder.
  await chmod(root, 0o711);
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
    // pg_ctl passes the settings through /bin/sh: a value with a space, quotes, `$`, `;`, `|`,
    // a backslash and backticks must reach the server as written, not be split, expanded or run.
    const prefix = `%m [%p] it's "$HOME"; echo | cat \\ \`id\` `;
    const first = await startEmbeddedServer({ ...options, settings: { log_line_prefix: prefix } });
    expect(first).toEqual({
      url: `postgresql://postgres:postgres@127.0.0.1:${options.port}/kennwilliamson`,
      alreadyRunning: false,
    });

    const client = new pg.Client({ connectionString: first.url });
    await client.connect();
    const { rows } = await client.query<{ version: string; listen: string; prefix: string }>(
      "SELECT current_setting('server_version') AS version, current_setting('listen_addresses') AS listen, current_setting('log_line_prefix') AS prefix",
    );
    await client.end();
    expect(rows[0]!.version).toMatch(/^17\./);
    expect(rows[0]!.listen).toBe('127.0.0.1');
    expect(rows[0]!.prefix).toBe(prefix);

    expect(await startEmbeddedServer(options)).toMatchObject({ alreadyRunning: true });
  });

  it('stops, and stopping again is a no-op', async () => {
    expect(await stopEmbeddedServer(options.dataDir)).toBe(true);
    expect(await isEmbeddedServerRunning(options.dataDir)).toBe(false);
    expect(await stopEmbeddedServer(options.dataDir)).toBe(false);
  });

  // A port of the range outgoing connections take theirs from (the local server's 54320 is in
  // it) may be held by a connection that nothing listens behind: PostgreSQL cannot bind it then.
  it('waits for its port while a connection of this machine holds it, saying so, and starts once it is free', async () => {
    const port = await freePort();
    const held = await connectionFromPort(port);
    try {
      let saidWaiting!: () => void;
      const waiting = new Promise<void>((resolve) => (saidWaiting = resolve));
      const lines: string[] = [];
      const started = startEmbeddedServer({ ...options, port, portWaitMs: 20_000 }, (line) => {
        lines.push(line);
        if (line.includes(`port ${port}`)) saidWaiting();
      });
      // Without the wait, the start fails at once ("could not bind"), and this with it.
      await Promise.race([waiting, started]);
      expect(lines.join('\n')).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is held by a connection of this machine .*TIME_WAIT.*waiting up to 20 s`));
      expect(await isEmbeddedServerRunning(options.dataDir)).toBe(false);
      await held.reset();
      expect(await started).toEqual({ url: `postgresql://postgres:postgres@127.0.0.1:${port}/kennwilliamson`, alreadyRunning: false });
      const client = new pg.Client({ connectionString: (await started).url });
      await client.connect();
      expect((await client.query<{ port: string }>("SELECT current_setting('port') AS port")).rows[0]!.port).toBe(String(port));
      await client.end();
    } finally {
      await held.reset();
      await stopEmbeddedServer(options.dataDir);
    }
  });

  it('gives up on a port still held when its wait is over, naming the port and what to do, and starts nothing', async () => {
    const port = await freePort();
    // Closed first by this side, the connection leaves its port in TIME_WAIT, as a test run's leave thousands.
    const held = await connectionFromPort(port);
    await held.close();
    const lines: string[] = [];
    try {
      const start = startEmbeddedServer({ ...options, port, portWaitMs: 300 }, (line) => lines.push(line));
      await expect(start).rejects.toThrow(
        new RegExp(`^port ${port} on 127\\.0\\.0\\.1 stayed held for 300 ms by a socket that accepts no connections .*EMBEDDED_PG_PORT=<port>.*nothing was started$`),
      );
      expect(lines).toEqual([`port ${port} on 127.0.0.1 is held by a connection of this machine (one closed in the last minute keeps its port for up to 60 s, TCP's TIME_WAIT): waiting up to 300 ms for it`]);
      expect(await isEmbeddedServerRunning(options.dataDir)).toBe(false);
    } finally {
      await stopEmbeddedServer(options.dataDir);
    }
  });

  it('refuses at once a port where a server accepts connections, which no wait would free, and starts nothing', async () => {
    const other = net.createServer((socket) => socket.end());
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    const { port } = other.address() as net.AddressInfo;
    const lines: string[] = [];
    try {
      // With the default wait: a refusal after 65 s would fail this test at its timeout.
      const start = startEmbeddedServer({ ...options, port }, (line) => lines.push(line));
      await expect(start).rejects.toThrow(
        new RegExp(`^port ${port} on 127\\.0\\.0\\.1 is taken by a server that accepts connections: .*EMBEDDED_PG_PORT=<port>.*nothing was started$`),
      );
      expect(lines).toEqual([]);
      expect(await isEmbeddedServerRunning(options.dataDir)).toBe(false);
    } finally {
      await new Promise((resolve) => other.close(resolve));
      await stopEmbeddedServer(options.dataDir);
    }
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
    // The owner's URL as DATABASE_URL, as db:setup prints it; the superuser's only as ADMIN_DATABASE_URL.
    expect(started.stdout).toMatch(new RegExp(`^DATABASE_URL=postgresql://kennwilliamson:kennwilliamson@127\\.0\\.0\\.1:${env.EMBEDDED_PG_PORT}/kennwilliamson$`, 'm'));
    expect(started.stdout).toMatch(new RegExp(`^ADMIN_DATABASE_URL=postgresql://postgres:postgres@127\\.0\\.0\\.1:${env.EMBEDDED_PG_PORT}/kennwilliamson `, 'm'));
    expect(started.stdout).not.toMatch(/^DATABASE_URL=postgresql:\/\/postgres:/m);
    expect((await runCli('db-start', [], env, account)).stdout).toContain('PostgreSQL is already running.');
    const stopped = await runCli('db-stop', [], env, account);
    expect(stopped.stdout).toContain('PostgreSQL stopped.');
  });

  // What failed `db:setup` (and with it .ci/run's first step) now and then, right after a test
  // run: its connections' TIME_WAITs held the local server's port.
  it('npm run db:start waits, saying so, for a port a connection of this machine holds, and starts once it is free', async () => {
    const env = { EMBEDDED_PG_DATA_DIR: options.dataDir, EMBEDDED_PG_PORT: String(await freePort()), HOME: root };
    const held = await connectionFromPort(Number(env.EMBEDDED_PG_PORT));
    try {
      const child = startCli('db-start', [], env);
      const outcome = cliOutcome(child);
      const saidWaiting = new Promise<void>((resolve) => {
        let said = '';
        child.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()).includes('is held by a connection of this machine') && resolve());
      });
      // Without the wait, the command fails at once, and this with it.
      await Promise.race([saidWaiting, outcome.then((result) => Promise.reject(new Error(`db:start ended before waiting: ${JSON.stringify(result)}`)))]);
      await held.reset();
      const started = await outcome;
      expect(started.code, started.stderr).toBe(0);
      expect(started.stdout).toContain(`port ${env.EMBEDDED_PG_PORT} on 127.0.0.1 is held by a connection of this machine`);
      expect(started.stdout).toContain('PostgreSQL started.');
    } finally {
      await held.reset();
      await runCli('db-stop', [], env);
    }
  });

  // As root the server runs as 'postgres'. A folder closed to it (mktemp -d makes 0700 ones,
  // /root is one) is the operator's to open: refused with the command, nothing chmod-ed.
  describe.skipIf(process.getuid?.() !== 0)('as root, with a folder the postgres account cannot enter', () => {
    const modes = async (paths: string[]) => Promise.all(paths.map(async (p) => (await stat(p)).mode & 0o7777));

    it('refuses a data folder below it, naming the folder and the chmod that would open it, and changes no permission', async () => {
      const closed = await mkdtemp(path.join(root, 'closed-'));
      const watched = [closed, root, os.tmpdir(), '/'];
      const before = await modes(watched);
      const dataDir = path.join(closed, 'inner', 'postgres');

      const error = await startEmbeddedServer({ ...options, dataDir, port: await freePort() }).catch((e: unknown) => e);

      expect((error as Error).message).toContain(`cannot reach the folder of the data folder ${path.dirname(dataDir)}: ${closed} (mode 700, owner uid 0) lets no other account through`);
      expect((error as Error).message).toContain(`No permission was changed.`);
      expect((error as Error).message).toContain(`chmod o+x ${closed}`);
      expect(await modes(watched)).toEqual(before);
      expect(before[0]).toBe(0o700);
    });

    it('refuses a data folder right inside it, which the account can see but not enter, before initdb makes anything', async () => {
      const closed = await mkdtemp(path.join(root, 'closed-here-'));
      const dataDir = path.join(closed, 'postgres');

      const error = await startEmbeddedServer({ ...options, dataDir, port: await freePort() }).catch((e: unknown) => e);

      expect((error as Error).message).toContain(`cannot reach the folder of the data folder ${closed}: ${closed} (mode 700, owner uid 0) lets no other account through`);
      expect((error as Error).message).toContain(`chmod o+x ${closed}`);
      expect(await readdir(closed)).toEqual([]);
    });

    it('refuses binaries below it the same way', async () => {
      const closed = await mkdtemp(path.join(root, 'closed-bin-'));
      await mkdir(path.join(closed, 'bin'));
      for (const program of ['postgres', 'pg_ctl', 'initdb']) {
        await symlink(path.join('/usr/lib/postgresql/15/bin', program), path.join(closed, 'bin', program));
      }

      const error = await startEmbeddedServer({ ...options, binDir: path.join(closed, 'bin'), port: await freePort() }).catch((e: unknown) => e);

      expect((error as Error).message).toContain(`cannot reach the PostgreSQL binary ${path.join(closed, 'bin', 'postgres')}`);
      expect((error as Error).message).toContain(`chmod o+x ${closed}`);
      expect(await modes([closed])).toEqual([0o700]);
    });
  });
});
