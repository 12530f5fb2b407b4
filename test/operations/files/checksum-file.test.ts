import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checksumLine, readChecksumFile, readChecksumText, verifyChecksumFile } from '../../../src/operations/files/checksum-file.js';

const name = 'kennwilliamson_production_20250101T020000.000Z.dump';

describe('readChecksumText', () => {
  let folder: string;
  let backup: string;
  beforeEach(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'kw-checksum-'));
    backup = path.join(folder, name);
    await writeFile(backup, 'x');
  });
  afterEach(async () => rm(folder, { recursive: true, force: true }));

  // Its size says 0 and it reads without end: the whole read took half a gigabyte of memory
  // and a second before a RangeError, an out-of-memory kill on a small host.
  it.skipIf(!existsSync('/proc/self/pagemap'))('refuses a .sha256 that links to /proc/self/pagemap, having read no more than the limit allows', async () => {
    await symlink('/proc/self/pagemap', `${backup}.sha256`);

    await expect(readChecksumText(backup)).rejects.toThrow('more than 8192 bytes though its size says 0, more than a sha256sum line');
    await expect(verifyChecksumFile(backup)).rejects.toThrow('more than 8192 bytes though its size says 0');
  });

  // Finite, so that the old whole-file read returned it: the bound must hold on what is read,
  // not on what the size says.
  it('refuses a .sha256 that reads longer than a sha256sum line though its size says it is empty', async () => {
    const smaps = '/proc/self/smaps';
    await symlink(smaps, `${backup}.sha256`);
    // The case holds only where this file is as its test needs it.
    expect((await stat(smaps)).size).toBe(0);
    expect((await readFile(smaps)).length).toBeGreaterThan(8192);

    await expect(readChecksumText(backup)).rejects.toThrow('more than 8192 bytes though its size says 0');
  });

  // A folder of links to where backups are kept is an ordinary setup; the bound above, not a
  // refusal of links, is what keeps a link to /proc harmless.
  it('reads a .sha256 reached through a symlink, as the backup beside it is read', async () => {
    const sha256 = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
    const kept = path.join(folder, 'kept.sha256');
    await writeFile(kept, checksumLine(sha256, backup));
    await symlink(kept, `${backup}.sha256`);

    expect(await readChecksumFile(backup)).toEqual({ sha256, fileName: name });
  });

  it('reads a .sha256 of exactly the limit, and refuses one a byte longer, by its size', async () => {
    await writeFile(`${backup}.sha256`, 'a'.repeat(8192));
    expect(await readChecksumText(backup)).toBe('a'.repeat(8192));

    await writeFile(`${backup}.sha256`, 'a'.repeat(8193));
    await expect(readChecksumText(backup)).rejects.toThrow('8193 bytes, more than a sha256sum line');
  });
});
