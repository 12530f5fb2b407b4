import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libpqConnection } from '../../../src/operations/pg-tools/libpq-connection.js';
import { pgliteToolsAvailability, pgliteToolsPackage } from '../../../src/operations/wasm-pg-dump/pglite-pg-dump-module.js';
import { startWasmPgDump, wasmPgDumpVersion } from '../../../src/operations/wasm-pg-dump/wasm-pg-dump.js';
import { packageRoot } from '../../../src/package-root.js';
import { execute } from '../../support/table-contents.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

// Smoke tests of the undocumented parts of @electric-sql/pglite-tools that the WebAssembly
// pg_dump relies on (see src/operations/wasm-pg-dump/pglite-pg-dump-module.ts). When an upgrade breaks
// one, these fail first and say which.
describe('the WebAssembly pg_dump of @electric-sql/pglite-tools', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database?.drop());

  async function dump(url: string): Promise<{ sql: string; code: number | null; stderr: string }> {
    const run = await startWasmPgDump({ connection: libpqConnection(url), args: ['--format=plain', '--no-owner'] });
    // pipeTo reuses its buffer once a write's callback fired: keep copies.
    const parts: Buffer[] = [];
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        parts.push(Buffer.from(chunk));
        callback();
      },
    });
    const [exit] = await Promise.all([run.exited, run.pipeTo(sink)]);
    return { sql: Buffer.concat(parts).toString('utf8'), code: exit.code, stderr: exit.stderr };
  }

  it('is installed at exactly the version package.json pins', () => {
    const manifest = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
      devDependencies: Record<string, string>;
    };
    // An optional peer (a service adds it for WebAssembly backups), and here a devDependency.
    const pinned = manifest.peerDependencies['@electric-sql/pglite-tools'];
    expect(pinned, 'an optional peer dependency, pinned exactly').toMatch(/^\d+\.\d+\.\d+$/);
    expect(manifest.peerDependenciesMeta['@electric-sql/pglite-tools']?.optional).toBe(true);
    expect(manifest.devDependencies['@electric-sql/pglite-tools']).toBe(pinned);
    expect(pgliteToolsPackage()).toMatchObject({ name: '@electric-sql/pglite-tools', version: pinned });
    expect(pgliteToolsAvailability()).toEqual({ installed: true, wanted: `@electric-sql/pglite-tools@${pinned}` });
  });

  it('still loads: the factory from the bundled chunk, pg_dump.wasm, addFunction, _pgl_set_rw_cbs, FS devices, --version', async () => {
    // Any broken internal surfaces here as "the WebAssembly pg_dump does not start: <which>".
    const version = await wasmPgDumpVersion();

    expect(version.package).toBe(`@electric-sql/pglite-tools ${pgliteToolsPackage().version}`);
    expect(version.major, 'pg_dump refuses servers newer than itself: it must stay >= 17').toBeGreaterThanOrEqual(17);
  });

  it('dumps a real PostgreSQL 17 through the socket callbacks, to the end', async () => {
    const { sql, code, stderr } = await dump(database.url);

    expect(code, stderr).toBe(0);
    expect(sql).toMatch(/^--\n-- PostgreSQL database dump\n--\n/);
    expect(sql).toMatch(/-- Dumped from database version 17\.\d+/);
    expect(sql).toContain('CREATE TABLE public.users (');
    expect(sql).toMatch(/^COPY public\.schema_migrations \(.+\) FROM stdin;$/m);
    expect(sql).toMatch(/\n--\n-- PostgreSQL database dump complete\n--\n/);
    // No owners: the restore makes them the restoring user's, as pg_restore --no-owner does.
    expect(sql).not.toMatch(/OWNER TO/);
  });

  it("dumps rows longer than libpq's 16 kB input buffer without hanging", async () => {
    // A long row grows libpq's buffer; later it reads again right after a large read to
    // gather more of a message, when the server may have nothing more to send (see ByteRingReader).
    await execute(
      database.url,
      `CREATE TABLE wide_rows AS
         SELECT i, repeat(md5(i::text), CASE WHEN i % 50 = 0 THEN 5000 ELSE 2 END) AS body FROM generate_series(1, 2000) AS i;
       CREATE TABLE after_wide_rows AS SELECT i FROM generate_series(1, 10) AS i`,
    );

    const { sql, code, stderr } = await dump(database.url);

    expect(code, stderr).toBe(0);
    expect(sql.match(/^\d+\t[0-9a-f]+$/gm)).toHaveLength(2000);
    expect(sql).toContain('COPY public.after_wide_rows (i) FROM stdin;');
    expect(sql).toContain('-- PostgreSQL database dump complete');
  });
});
