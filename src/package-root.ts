import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding this package's `package.json` (and `migrations/`). Found by walking up
 * from this module, because the module sits at a different depth when run from `src/` with
 * tsx than when compiled into `dist/src/`.
 */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('Cannot find the package root of @kennwilliamson/db');
    dir = parent;
  }
  return dir;
}
