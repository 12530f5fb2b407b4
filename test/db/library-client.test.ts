import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibraryClient } from '../../src/db/library-client.js';
import { packageRoot } from '../../src/package-root.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

const src = path.join(packageRoot(), 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(path.join(dir, entry.name)) : entry.name.endsWith('.ts') ? [path.join(dir, entry.name)] : [],
  );
}

// A client made any other way would miss the keepalive, the connect timeout from the config, or the bounded end.
describe('the connections the library opens', () => {
  it('are all LibraryClients: no file but library-client.ts makes a pg.Client', () => {
    const makers = sourceFiles(src).filter((file) => /\bnew\s+(?:pg\.)?Client\s*\(|\bextends\s+pg\.Client\b|=\s*pg\.Client\b/.test(readFileSync(file, 'utf8')));
    expect(makers.map((file) => path.relative(src, file))).toEqual([path.join('db', 'library-client.ts')]);
  });
});

describe('a LibraryClient', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
  });
  afterAll(async () => database?.drop());

  it('has TCP keepalive on its socket, with the idle time of its settings', async () => {
    const client = new LibraryClient({ databaseUrl: database.url, applicationName: 'keepalive-check', connectTimeoutMs: 10_000, keepAliveDelayMs: 7_000 });
    await client.connect();
    try {
      const port = (client as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
      // The kernel's view of the socket (/proc/net/tcp, no tool needed): an established socket
      // with a keepalive timer pending (timer kind 2), counting down from TCP_KEEPIDLE in clock
      // ticks (USER_HZ, 100 a second).
      const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
      const line = readFileSync('/proc/net/tcp', 'utf8')
        .split('\n')
        .map((row) => row.trim().split(/\s+/))
        .find((fields) => fields[1] === local && fields[3] === '01');
      expect(line, `no established socket ${local} in /proc/net/tcp`).toBeDefined();
      const [kind, ticks] = line![5]!.split(':') as [string, string];
      expect(kind).toBe('02');
      const seconds = Number.parseInt(ticks, 16) / 100;
      expect(seconds).toBeGreaterThan(0);
      expect(seconds).toBeLessThanOrEqual(7);
    } finally {
      await client.end();
    }
  });
});
