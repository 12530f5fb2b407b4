import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RestoreError } from '../../../src/errors.js';
import { verifySqlDump } from '../../../src/operations/vetting/verify-sql-dump.js';

const dumpSql = [
  '--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n',
  'CREATE TABLE public.t (i integer);\n\nCOPY public.t (i) FROM stdin;\n1\n2\n\\.\n\n',
  '--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n',
].join('');

describe('verifySqlDump', () => {
  let folder: string;
  beforeEach(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'kw-verify-sql-'));
  });
  afterEach(async () => rm(folder, { recursive: true, force: true }));

  async function file(content: Buffer): Promise<string> {
    const name = path.join(folder, 'dump.sql.gz');
    await writeFile(name, content);
    return name;
  }

  it('accepts a whole dump with its completion trailer', async () => {
    expect(await verifySqlDump(await file(gzipSync(dumpSql)))).toEqual({ sqlBytes: Buffer.byteLength(dumpSql) });
  });

  it('refuses a dump that pg_dump did not finish (no trailer), though its gzip is whole', async () => {
    const cut = dumpSql.slice(0, dumpSql.indexOf('--\n-- PostgreSQL database dump complete'));
    await expect(verifySqlDump(await file(gzipSync(cut)))).rejects.toThrow("it lacks pg_dump's completion trailer");
  });

  // pg_dump writes nothing after it but `\unrestrict` and blank lines; a second gzip member
  // with statements would restore as part of a dump that says it was complete.
  it("refuses a dump with statements after pg_dump's completion trailer", async () => {
    const after = Buffer.concat([gzipSync(dumpSql), gzipSync('CREATE TABLE public.after_trailer (i integer);\n')]);
    await expect(verifySqlDump(await file(after))).rejects.toThrow("it holds more after pg_dump's completion trailer than pg_dump writes there");
  });

  it('refuses a truncated gzip file', async () => {
    const gz = gzipSync(dumpSql);
    await expect(verifySqlDump(await file(gz.subarray(0, gz.length - 6)))).rejects.toThrow(/^it is not a whole gzip file: unexpected end of file/);
  });

  it('refuses a gzip file whose content was damaged (CRC)', async () => {
    const gz = Buffer.from(gzipSync(dumpSql, { level: 0 }));
    gz[40]! ^= 0x01;
    await expect(verifySqlDump(await file(gz))).rejects.toThrow(/^it is not a whole gzip file: incorrect data check/);
  });

  it('refuses a dump the restore would refuse: a psql meta-command other than those pg_dump writes', async () => {
    const hostile = dumpSql.replace('CREATE TABLE', '\\! touch /tmp/owned\nCREATE TABLE');
    await expect(verifySqlDump(await file(gzipSync(hostile)))).rejects.toBeInstanceOf(RestoreError);
  });

  it('refuses a meta-command early in a large finished dump as what a restore refuses, not as a dump cut short', async () => {
    const rows = Array.from({ length: 50_000 }, (_, i) => `${i}\n`).join('');
    const large = dumpSql.replace('1\n2\n', rows).replace('CREATE TABLE', '\\! touch /tmp/owned\nCREATE TABLE');
    await expect(verifySqlDump(await file(gzipSync(large)))).rejects.toBeInstanceOf(RestoreError);
  });

  // The restore refuses it too, but only after it took every table and emptied public, then
  // read the file again: a gigabyte of spaces between header and trailer kept them waiting.
  // pg_dump's header sets the session up; that alone makes nothing.
  it("refuses a dump with nothing but pg_dump's header, its session settings included, and trailer (and white space) before the restore takes any table", async () => {
    const settings =
      "SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n" +
      "SELECT pg_catalog.set_config('search_path', '', false);\n";
    const empty = dumpSql.replace(/CREATE TABLE[^]*\\\.\n\n/, `${settings}${'\n'.repeat(10_000)}`);
    expect(empty).not.toContain('CREATE TABLE');
    await expect(verifySqlDump(await file(gzipSync(empty)))).rejects.toThrow("it holds no SQL statements beyond pg_dump's session settings");
  });

  it('refuses gzip data that is not a pg_dump plain-format dump', async () => {
    await expect(verifySqlDump(await file(gzipSync(`SELECT 1;\n${dumpSql}`)))).rejects.toThrow('it does not start as a pg_dump plain-format dump');
  });
});
