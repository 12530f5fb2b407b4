import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build, type Plugin } from 'esbuild';
import { withoutUmzugCli } from './without-umzug-cli.js';

interface SingleFilePackage {
  name: string;
  /** What the bundle exports: what src/ and test/ import from the package, and nothing else. */
  exports: string;
  plugins?: Plugin[];
}

// Kysely's ES module build is 280 modules: Node's loader took 150-170 ms of CPU to import
// them, and 13-16 ms to import them bundled into one file. Umzug (CommonJS) took 114 ms, most
// of it its command-line interface, which the library never calls (see without-umzug-cli.ts).
// A run starts some twenty workers, and most of them load both (issue 19).
const packages: SingleFilePackage[] = [
  { name: 'kysely', exports: `export * from 'kysely';` },
  { name: 'umzug', exports: `export { Umzug, MigrationError } from 'umzug';`, plugins: [withoutUmzugCli] },
];

/**
 * Aliases that make vitest's workers load Kysely and Umzug each from one file of their own
 * code, bundled with esbuild, instead of from their packages' many modules. The code is the
 * packages' own (Umzug without its command-line interface); the services get the packages as
 * published, which `npm run test:consumer` checks. Each bundle is made once per installed
 * version, under node_modules/.cache, and again when this file or the plugin's changes.
 *
 * @example resolve: { alias: await singleFilePackageAliases(root) }
 */
export async function singleFilePackageAliases(root: string): Promise<{ find: RegExp; replacement: string }[]> {
  return Promise.all(
    packages.map(async (pkg) => ({ find: new RegExp(`^${pkg.name}$`), replacement: await singleFileBundle(root, pkg) })),
  );
}

async function singleFileBundle(root: string, pkg: SingleFilePackage): Promise<string> {
  const { version } = JSON.parse(readFileSync(path.join(root, 'node_modules', pkg.name, 'package.json'), 'utf8')) as { version: string };
  // Renewed when what is bundled or how changes: the export list, this file, the plugins' file.
  const hash = createHash('sha256').update(pkg.exports);
  for (const file of ['single-file-packages.ts', 'without-umzug-cli.ts']) hash.update(readFileSync(path.join(root, 'test', 'support', file)));
  const key = hash.digest('hex').slice(0, 12);
  const file = path.join(root, 'node_modules', '.cache', 'kw-db-single-file', `${pkg.name}-${version}-${key}.mjs`);
  if (existsSync(file)) return file;
  // Written beside it and renamed, so that a run started meanwhile never reads half a file.
  await mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  const { outputFiles } = await build({
    stdin: { contents: pkg.exports, resolveDir: root, loader: 'js', sourcefile: `${pkg.name}-entry.js` },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    // Umzug is CommonJS: its require() of Node's modules needs a require in an ES module.
    banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
    plugins: pkg.plugins ?? [],
    logLevel: 'warning',
  });
  await writeFile(partial, outputFiles[0]!.contents);
  await rename(partial, file);
  return file;
}
