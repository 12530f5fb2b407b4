import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * A file named on the command line, found; two different files the name could mean; or a name
 * found only in the folder npm runs the command in, not in the operator's.
 */
export type OperatorFile =
  | { file: string }
  | { ambiguous: readonly [fromCommandFolder: string, fromOperatorFolder: string] }
  | { onlyInCommandFolder: string; fromOperatorFolder: string };

/**
 * Finds the file an operator named on the command line, for a command that npm may have
 * started in another folder than the operator's. `npm run db:restore -- backups/x.dump` runs
 * in the package's root, wherever in the package the operator typed it (npm looks upwards
 * for package.json) and says where that was in `INIT_CWD`: a relative name means that folder,
 * as in any other command. Nothing is guessed at, since the caller may replace a database with
 * the file: where only the command's own folder holds a file by that name (a mistyped name
 * that happens to exist in the package root), or both folders hold different ones, the caller
 * refuses, naming them.
 *
 * @example
 * // typed in /srv/app/backups, run by npm in /srv/app
 * operatorFile('x.dump', { INIT_CWD: '/srv/app/backups' }, '/srv/app') // { file: '/srv/app/backups/x.dump' }
 */
export function operatorFile(name: string, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): OperatorFile {
  const fromCommandFolder = path.resolve(cwd, name);
  const operatorFolder = env.INIT_CWD?.trim();
  if (path.isAbsolute(name) || !operatorFolder || path.resolve(operatorFolder) === path.resolve(cwd)) return { file: fromCommandFolder };
  const fromOperatorFolder = path.resolve(operatorFolder, name);
  const inCommandFolder = existsSync(fromCommandFolder);
  if (!existsSync(fromOperatorFolder)) return inCommandFolder ? { onlyInCommandFolder: fromCommandFolder, fromOperatorFolder } : { file: fromOperatorFolder };
  if (!inCommandFolder || realpathSync(fromCommandFolder) === realpathSync(fromOperatorFolder)) return { file: fromOperatorFolder };
  return { ambiguous: [fromCommandFolder, fromOperatorFolder] };
}
