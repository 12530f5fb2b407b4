import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operatorFile } from '../../src/cli/operator-file.js';
import { packageRoot } from '../../src/package-root.js';
import { runCli } from '../support/run-cli.js';

// npm runs a script in the package's root (`cwd` here) and says in INIT_CWD where the operator
// typed it (`typedIn`).
describe('a file an operator names on the command line', () => {
  let root: string;
  let cwd: string;
  let typedIn: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kw-operator-file-'));
    cwd = path.join(root, 'package');
    typedIn = path.join(cwd, 'backups');
    await mkdir(typedIn, { recursive: true });
    await writeFile(path.join(typedIn, 'only-here.dump'), 'operator');
    await writeFile(path.join(cwd, 'only-in-package.dump'), 'package');
    await writeFile(path.join(typedIn, 'both.dump'), 'operator');
    await writeFile(path.join(cwd, 'both.dump'), 'package');
    await symlink(path.join(typedIn, 'both.dump'), path.join(typedIn, 'same.dump'));
    await symlink(path.join(typedIn, 'both.dump'), path.join(cwd, 'same.dump'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('is found from the folder it was typed in under npm run, not from the package root npm runs the command in', () => {
    expect(operatorFile('only-here.dump', { INIT_CWD: typedIn }, cwd)).toEqual({ file: path.join(typedIn, 'only-here.dump') });
    // Not found in either: the operator's folder, which the "cannot read" error then names.
    expect(operatorFile('missing.dump', { INIT_CWD: typedIn }, cwd)).toEqual({ file: path.join(typedIn, 'missing.dump') });
  });

  it('is never taken from the command folder alone: a name found only there (mistyped, say) is refused, naming both paths', () => {
    expect(operatorFile('only-in-package.dump', { INIT_CWD: typedIn }, cwd)).toEqual({
      onlyInCommandFolder: path.join(cwd, 'only-in-package.dump'),
      fromOperatorFolder: path.join(typedIn, 'only-in-package.dump'),
    });
  });

  it('is found in the command folder when npm ran nothing (no INIT_CWD, or the same folder), or given absolute', () => {
    expect(operatorFile('both.dump', {}, cwd)).toEqual({ file: path.join(cwd, 'both.dump') });
    expect(operatorFile('both.dump', { INIT_CWD: `${cwd}/` }, cwd)).toEqual({ file: path.join(cwd, 'both.dump') });
    expect(operatorFile(path.join(root, 'x.dump'), { INIT_CWD: typedIn }, cwd)).toEqual({ file: path.join(root, 'x.dump') });
  });

  it('is ambiguous when both folders hold a file by that name and they are different files', () => {
    expect(operatorFile('both.dump', { INIT_CWD: typedIn }, cwd)).toEqual({ ambiguous: [path.join(cwd, 'both.dump'), path.join(typedIn, 'both.dump')] });
    // Two names of one file are one file.
    expect(operatorFile('same.dump', { INIT_CWD: typedIn }, cwd)).toEqual({ file: path.join(typedIn, 'same.dump') });
  });

  it('that means two different files, or is found only in the package root, makes db:restore refuse before it connects, naming them', async () => {
    // The commands run in the package root: the same relative name there and in another folder.
    const relative = path.join('node_modules', '.cache', path.basename(root), 'both.dump');
    const inPackage = path.join(packageRoot(), relative);
    await mkdir(path.dirname(inPackage), { recursive: true });
    try {
      await writeFile(inPackage, 'package');
      const elsewhere = path.join(root, 'elsewhere');
      await mkdir(path.dirname(path.join(elsewhere, relative)), { recursive: true });
      await writeFile(path.join(elsewhere, relative), 'operator');

      // Port 9 has no server: a refusal that tried to connect would say so instead.
      const result = await runCli('db-restore', [relative, '--yes'], { INIT_CWD: elsewhere, DATABASE_URL: 'postgresql://kw@127.0.0.1:9/kw', MIGRATION_DATABASE_URL: '' });

      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`it names two different files, ${path.join(elsewhere, relative)} (from the folder you ran the command in) and ${inPackage}`);
      expect(result.stderr).toContain('The database was not touched');

      // Typed where there is no such file: the package root's is not taken in its place.
      const nowhere = path.join(root, 'nowhere');
      await mkdir(nowhere);
      const onlyThere = await runCli('db-restore', [relative, '--yes'], { INIT_CWD: nowhere, DATABASE_URL: 'postgresql://kw@127.0.0.1:9/kw', MIGRATION_DATABASE_URL: '' });
      expect(onlyThere.code).toBe(1);
      expect(onlyThere.stderr).toContain(`there is no ${path.join(nowhere, relative)} (from the folder you ran the command in), only ${inPackage}`);
    } finally {
      await rm(path.dirname(inPackage), { recursive: true, force: true });
    }
  });
});
