import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

const packageName = '@kennwilliamson/db';

/**
 * The folder holding this package's `package.json` (and `migrations/`), or `undefined` where
 * this code runs away from its package: bundled into a service (esbuild, webpack, ncc), whose
 * own `package.json` is then the nearest one and must not be taken for ours. Found by walking
 * up from this module, because the module sits at a different depth when run from `src/`
 * with tsx than when compiled into `dist/src/` or `dist/cjs/src/`; a `package.json` of
 * another name, or none (`dist/cjs/package.json` only marks its folder as CommonJS), is
 * passed by.
 *
 * @example findPackageRoot() // …/node_modules/@kennwilliamson/db
 */
export function findPackageRoot(from: string | undefined = ownFolder()): string | undefined {
  if (from === undefined) return undefined;
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (isOurManifest(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/**
 * {@link findPackageRoot}, for what cannot do without the package's own files.
 *
 * @example path.join(packageRoot(), 'migrations')
 */
export function packageRoot(): string {
  const root = findPackageRoot();
  if (root === undefined) {
    throw new ConfigError(
      'packageRoot',
      `cannot find the folder of ${packageName} (its package.json) from where its code runs: a bundle moves the code away from the package's files`,
    );
  }
  return root;
}

// An ES module bundled into CommonJS by a service's bundler has no import.meta.url.
function ownFolder(): string | undefined {
  const url: unknown = import.meta.url;
  return typeof url === 'string' && url.startsWith('file:') ? path.dirname(fileURLToPath(url)) : undefined;
}

function isOurManifest(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === packageName;
  } catch {
    return false;
  }
}
