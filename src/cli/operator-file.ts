import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** A file named on the command line, found; or two different files the name could mean. */
export type OperatorFile = { file: string } | { ambiguous: readonly [fromCommandFolder: string, fromOperatorFolder: string] };

/**
 * Finds the file an operator named on the command line, for a command that npm may have
 * started in another folder than the operator's. `npm run db:restore -- backups/x.dump` runs
 * in the package's root, wherever in the package the operator typed it (npm looks upwards
 * for package.json) and says where that was in `INIT_CWD`: a relative name means that folder,
 * as in any other command. Where the name is found only in the command's own folder (a script
 * that changed folder, or the package root where the operator's folder has no such file), that
 * one; where both folders hold a file by that name and they differ, neither is guessed at:
 * the caller refuses, naming both, rather than replace a database with the wrong backup.
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
  if (!existsSync(fromOperatorFolder)) return { file: inCommandFolder ? fromCommandFolder : fromOperatorFolder };
  if (!inCommandFolder || realpathSync(fromCommandFolder) === realpathSync(fromOperatorFolder)) return { file: fromOperatorFolder };
  return { ambiguous: [fromCommandFolder, fromOperatorFolder] };
}
