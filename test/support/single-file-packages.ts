import { createHash, type Hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build, type Plugin, version as esbuildVersion } from 'esbuild';
import { nodeEsmBundle } from './node-esm-bundle.js';
import { withoutUmzugCli } from './without-umzug-cli.js';

/** A package the workers load from one file. */
export interface SingleFilePackage {
  name: string;
  /**
   * The bundle's entry. Umzug is CommonJS, from which `export *` gives an ES module no names:
   * its names are listed (test/architecture.test.ts checks that src/ imports no other).
   */
  exports: string;
  plugins?: Plugin[];
}

// Kysely's ES module build is 280 modules: Node's loader took 150-170 ms of CPU to import
// them, and 13-16 ms to import them bundled into one file. Umzug (CommonJS) took 114 ms, most
// of it its command-line interface, which the library never calls (see without-umzug-cli.ts).
// A run starts some sixteen workers, and most of them load both (issue 19).
export const singleFilePackages: SingleFilePackage[] = [
  { name: 'kysely', exports: `export * from 'kysely';` },
  { name: 'umzug', exports: `export { Umzug, MigrationError } from 'umzug';`, plugins: [withoutUmzugCli] },
];

/**
 * Aliases that make vitest's workers load Kysely and Umzug each from one file of their own
 * code, bundled with esbuild, instead of from their packages' many modules. The code is the
 * packages' own (Umzug without its command-line interface); the services get the packages as
 * published, which `npm run test:consumer` checks. Each bundle is made once, under
 * node_modules/.cache/kw-db-single-file, and again whenever what it is made of changes.
 *
 * @example resolve: { alias: await singleFilePackageAliases(root) }
 */
export async function singleFilePackageAliases(root: string): Promise<{ find: RegExp; replacement: string }[]> {
  // What every bundle is made of, besides its entry: the installed packages (npm writes the
  // tree it installed to node_modules/.package-lock.json, the bundled packages' own
  // dependencies included), esbuild and how the bundles are built.
  const madeOf = createHash('sha256').update(esbuildVersion);
  for (const file of [path.join('node_modules', '.package-lock.json'), ...['single-file-packages.ts', 'without-umzug-cli.ts', 'node-esm-bundle.ts'].map((name) => path.join('test', 'support', name))]) {
    madeOf.update(existsSync(path.join(root, file)) ? readFileSync(path.join(root, file)) : file);
  }
  return Promise.all(
    singleFilePackages.map(async (pkg) => ({ find: new RegExp(`^${pkg.name}$`), replacement: await singleFileBundle(root, pkg, madeOf.copy()) })),
  );
}

async function singleFileBundle(root: string, pkg: SingleFilePackage, madeOf: Hash): Promise<string> {
  const key = madeOf.update(pkg.exports).digest('hex').slice(0, 16);
  const file = path.join(root, 'node_modules', '.cache', 'kw-db-single-file', `${pkg.name}-${key}.mjs`);
  if (existsSync(file)) return file;
  // Written beside it and renamed, so that a run started meanwhile never reads half a file.
  await mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  const { outputFiles } = await build({
    stdin: { contents: pkg.exports, resolveDir: root, loader: 'js', sourcefile: `${pkg.name}-entry.js` },
    ...nodeEsmBundle,
    write: false,
    plugins: pkg.plugins ?? [],
  });
  await writeFile(partial, outputFiles[0]!.contents);
  await rename(partial, file);
  return file;
}
