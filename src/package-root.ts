import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding this package's `package.json` (and `migrations/`). Found by walking up
 * from this module, because the module sits at a different depth when run from `src/` with
 * tsx than when compiled into `dist/src/` or `dist/cjs/src/`. A `package.json` without a
 * name is passed by: `dist/cjs/package.json` only marks its folder as CommonJS.
 */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!isPackageManifest(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('Cannot find the package root of @kennwilliamson/db');
    dir = parent;
  }
  return dir;
}

function isPackageManifest(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return typeof (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === 'string';
  } catch {
    return false;
  }
}
