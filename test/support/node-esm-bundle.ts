import type { BuildOptions } from 'esbuild';

/**
 * esbuild's options for the tests' bundles (the commands, Kysely, Umzug): one ES module file
 * per entry for Node 20, whose CommonJS parts keep a working require().
 *
 * @example await build({ ...nodeEsmBundle, entryPoints, outdir })
 */
export const nodeEsmBundle = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS bundled into an ES module (pg, Umzug) calls require() for Node's own modules,
  // which an ES module lacks: the banner gives it one.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  logLevel: 'warning',
} satisfies BuildOptions;
