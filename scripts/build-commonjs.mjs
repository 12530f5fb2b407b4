// The CommonJS build, made from the ES module build that `tsc -p tsconfig.build.json` wrote to
// dist/src and dist/generated: each module converted by esbuild (one file in, one file out, no
// bundling) into dist/cjs/, with its declarations beside it and a package.json that marks the
// folder as CommonJS. A CommonJS service then requires this build, which requires Kysely's
// CommonJS build, as the service's own code does: one copy of Kysely, and declarations that
// TypeScript reads as CommonJS, so the service's Transaction<DB> is the one the functions take.
// The bin (dist/src/cli) stays an ES module only: nothing requires it.
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const out = path.join(dist, 'cjs');

async function filesUnder(dir) {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => (entry.isDirectory() ? filesUnder(path.join(dir, entry.name)) : [path.join(dir, entry.name)])),
  );
  return nested.flat();
}

const files = (await Promise.all(['src', 'generated'].map((folder) => filesUnder(path.join(dist, folder)))))
  .flat()
  .filter((file) => !path.relative(dist, file).startsWith(path.join('src', 'cli') + path.sep));

for (const file of files) {
  const target = path.join(out, path.relative(dist, file));
  await mkdir(path.dirname(target), { recursive: true });
  if (file.endsWith('.d.ts')) {
    await copyFile(file, target);
  } else if (file.endsWith('.js')) {
    const source = await readFile(file, 'utf8');
    const { code } = await transform(source, {
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      // Function and class names as written (error names, stack traces): esbuild renames some to avoid shadowing.
      keepNames: true,
      // A module's own URL, as CommonJS knows it.
      define: { 'import.meta.url': '__moduleUrl' },
      banner: source.includes('import.meta.url') ? 'const __moduleUrl = require("node:url").pathToFileURL(__filename).href;' : '',
      // import() of our own modules becomes require(), so the CommonJS build loads the same way
      // everywhere (test runners that run CommonJS without ES module support included), except
      // where the specifier is a data: URL, which only import() can load.
      supported: { 'dynamic-import': /import\(`data:/.test(source) },
      logLevel: 'warning',
    });
    await writeFile(target, code);
  }
}
await writeFile(path.join(out, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
console.log(`CommonJS build: ${files.filter((file) => file.endsWith('.js')).length} modules in ${path.relative(root, out)}`);
