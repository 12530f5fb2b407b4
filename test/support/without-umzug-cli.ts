import path from 'node:path';
import type { Plugin } from 'esbuild';

/**
 * An esbuild plugin that leaves Umzug's command-line interface out of a bundle. Umzug loads it
 * with itself (@rushstack/ts-command-line and what that pulls in: some 850 KB of the 1.1 MB
 * the migrator bundles) though only `umzug.getCli()` uses it, which the library never calls;
 * left out, every process that loads the migrator takes about 45 ms less CPU (issue 19). A
 * call to getCli() would throw, not pass.
 *
 * @example await build({ entryPoints, bundle: true, plugins: [withoutUmzugCli] })
 */
export const withoutUmzugCli: Plugin = {
  name: 'without-umzug-cli',
  setup(build) {
    const umzugLib = `${path.sep}umzug${path.sep}lib${path.sep}`;
    build.onResolve({ filter: /^\.\/cli$/ }, ({ importer }) =>
      importer.includes(umzugLib) ? { path: 'umzug-cli', namespace: 'without-umzug-cli' } : undefined,
    );
    // getCli() is the only user of the module; the rest of it is re-exported, never called.
    build.onLoad({ filter: /.*/, namespace: 'without-umzug-cli' }, () => ({
      loader: 'js',
      contents: `exports.UmzugCLI = class { constructor() { throw new Error("Umzug's command-line interface is left out of the test bundle"); } };`,
    }));
  },
};
