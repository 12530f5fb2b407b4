import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/errors.js';
import { listMigrationFiles } from '../src/migrations/migration-files.js';
import { findPackageRoot, packageRoot } from '../src/package-root.js';

// Where the package's own files (migrations/) are found from its code. A service that bundles
// the library runs that code from its own folder, whose package.json is then the nearest one:
// taken for ours, its migrations/ was migrated as the package's (test/consumer/check.sh,
// `bundle`, runs such a bundle).
describe("the package's own folder", () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kw-package-root-'));
    const write = async (file: string, json: object) => {
      await mkdir(path.dirname(path.join(scratch, file)), { recursive: true });
      await writeFile(path.join(scratch, file), JSON.stringify(json));
    };
    // A service with a bundle of its own code and ours, and migrations of its own.
    await write('service/package.json', { name: 'scratch-service', type: 'module' });
    await mkdir(path.join(scratch, 'service', 'migrations'));
    await mkdir(path.join(scratch, 'service', 'dist', 'bundle'), { recursive: true });
    // The package as installed: the CommonJS build's folder has a package.json without a name.
    await write('service/node_modules/@kennwilliamson/db/package.json', { name: '@kennwilliamson/db', type: 'module' });
    await write('service/node_modules/@kennwilliamson/db/dist/cjs/package.json', { type: 'commonjs' });
    await mkdir(path.join(scratch, 'service', 'node_modules', '@kennwilliamson', 'db', 'dist', 'cjs', 'src', 'db'), { recursive: true });
  });
  afterAll(async () => rm(scratch, { recursive: true, force: true }));

  it('is found from either build inside the package, past package.json files of no name', () => {
    const installed = path.join(scratch, 'service', 'node_modules', '@kennwilliamson', 'db');
    expect(findPackageRoot(path.join(installed, 'dist', 'cjs', 'src', 'db'))).toBe(installed);
    expect(packageRoot()).toBe(path.resolve(import.meta.dirname, '..'));
  });

  it("is not found from a service's bundle: the service's own package.json is not ours", () => {
    expect(findPackageRoot(path.join(scratch, 'service', 'dist', 'bundle'))).toBeUndefined();
  });

  it('a migrations folder that does not exist is a ConfigError naming migrationsDir, not ENOENT', async () => {
    const missing = path.join(scratch, 'service', 'no-migrations-here');
    const error = await listMigrationFiles(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ variable: 'migrationsDir', message: expect.stringContaining(missing) });
  });
});
