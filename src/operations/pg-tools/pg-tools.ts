import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { DatabaseTarget } from '../../db/database-target.js';
import { ConfigError, PgToolNotFoundError } from '../../errors.js';
import { findPackageRoot } from '../../package-root.js';
import { composeServiceMismatch, parseComposePort } from './compose-service.js';

/** The PostgreSQL client programs the operations commands run. */
export type PgToolName = 'pg_dump' | 'pg_restore' | 'psql';

/** A PostgreSQL client program that answered `--version`. */
export interface PgTool {
  name: PgToolName;
  /** The program and its leading arguments: `['/usr/bin/pg_dump']`, or `['docker', 'compose', 'exec', '-T', 'postgres', 'pg_dump']`. */
  command: string[];
  /** Major version (`15`). */
  major: number;
  /** Full version (`15.18`). */
  version: string;
  /** Where it was found, for messages: a path, or `docker compose service 'postgres'`. */
  location: string;
  /** Runs inside the docker-compose container, which reaches the server on its own loopback. */
  inContainer: boolean;
}

/** Where {@link findPgTool} looks and what it accepts. */
export interface FindPgToolOptions {
  /** Accept only a program of at least this major version (pg_dump: the server's). */
  minMajor?: number | undefined;
  /** Environment with `PG_DUMP` / `PG_RESTORE` / `PSQL` and `PATH`; default `process.env`. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Look in this folder right after the variable: where the matching pg_dump was found. */
  preferDir?: string | undefined;
  /** Folder of versioned installations (`<dir>/<major>/bin`); default Debian's `/usr/lib/postgresql`. */
  installationsDir?: string | undefined;
  /** Also try `docker compose exec -T postgres` when that service runs (default true). */
  docker?: boolean | undefined;
  /**
   * The server the program will connect to. The compose container's program reaches only
   * the container's own server, so it is a candidate only when this is that server: a
   * local host and the port the service publishes. Leave it out for a program that
   * connects nowhere (pg_restore reading an archive).
   */
  target?: DatabaseTarget | undefined;
  /** How long a candidate's `--version` may take before it is killed and passed over (default 10 s). */
  versionTimeoutMs?: number | undefined;
}

const defaultVersionTimeoutMs = 10_000;
const composeService = 'postgres';
/** The port the server listens on inside the compose container. */
const composeContainerPort = 5432;

function variableOf(name: PgToolName): string {
  return name.toUpperCase();
}

// SIGKILL at the timeout: a stopped program (Ctrl-Z, a frozen container's docker client) never
// acts on SIGTERM, and execFile waits for the program to exit, so the probe held the backup for ever.
function run(file: string, args: string[], timeoutMs: number, cwd?: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', cwd, env: { ...env, LC_ALL: 'C' } }, (error, stdout) =>
      resolve(error ? undefined : stdout),
    );
  });
}

function parseVersion(output: string | undefined): { major: number; version: string } | undefined {
  // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"; 9.6 and older had two-part majors, irrelevant here.
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output ?? '');
  if (!match) return undefined;
  return { major: Number(match[1]), version: match[2] === undefined ? match[1]! : `${match[1]}.${match[2]}` };
}

async function isExecutable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

// Candidate paths in the documented order: the variable, the preferred folder, PATH, then
// every versioned installation, newest first. Lazily, so the first fit ends the search.
async function* candidatePaths(name: PgToolName, options: FindPgToolOptions): AsyncGenerator<string> {
  const env = options.env ?? process.env;
  // By real path: /bin is /usr/bin on merged-/usr systems, and one program is enough.
  const seen = new Set<string>();
  const fresh = async (file: string) => {
    if (!(await isExecutable(file))) return false;
    const real = await realpath(file).catch(() => file);
    return !seen.has(real) && (seen.add(real), true);
  };
  if (options.preferDir) {
    const file = path.join(options.preferDir, name);
    if (await fresh(file)) yield file;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    if (await fresh(file)) yield file;
  }
  const installations = options.installationsDir ?? '/usr/lib/postgresql';
  const versions = await readdir(installations).catch(() => [] as string[]);
  for (const version of versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))) {
    const file = path.join(installations, version, 'bin', name);
    if (await fresh(file)) yield file;
  }
}

async function composeServiceRuns(composeDir: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const output = await run('docker', ['compose', 'ps', '--status', 'running', '--format', '{{.Service}}'], defaultVersionTimeoutMs, composeDir, env);
  return (output ?? '').split('\n').some((line) => line.trim() === composeService);
}

// Why the container's program cannot serve `target`, or undefined when it can. The
// published address comes from `docker compose port`: the binding of the running service,
// with POSTGRES_PORT, .env files and override files already applied.
async function composeSkipReason(composeDir: string, target: DatabaseTarget | undefined, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (!target) return undefined;
  const output = await run('docker', ['compose', 'port', composeService, String(composeContainerPort)], defaultVersionTimeoutMs, composeDir, env);
  return composeServiceMismatch(target, parseComposePort(output ?? ''));
}

/**
 * Finds a PostgreSQL client program whose major version is at least `minMajor`, looking in
 * this order: the variable named after it (`PG_DUMP`, `PG_RESTORE`, `PSQL`), `preferDir`,
 * `PATH`, `/usr/lib/postgresql/<major>/bin` (newest first), and last
 * `docker compose exec -T postgres <program>` when the compose service runs and `target`
 * is that service's published port (otherwise it is skipped, and the error says why). pg_dump
 * refuses to dump a server newer than itself, so the caller passes the server's major.
 * Throws {@link PgToolNotFoundError} naming the version needed and every version found.
 *
 * @example
 * const pgDump = await findPgTool('pg_dump', { minMajor: 17 })
 * // PgToolNotFoundError: needs pg_dump >= 17, found 15 at /usr/bin/pg_dump, 15 at /usr/lib/postgresql/15/bin/pg_dump; …
 */
export async function findPgTool(name: PgToolName, options: FindPgToolOptions = {}): Promise<PgTool> {
  const env = options.env ?? process.env;
  const variable = variableOf(name);
  const found: string[] = [];
  const fits = (major: number) => options.minMajor === undefined || major >= options.minMajor;
  const versionTimeoutMs = options.versionTimeoutMs ?? defaultVersionTimeoutMs;

  // An explicit choice that cannot run is a configuration mistake, not something to skip.
  const explicit = env[variable]?.trim();
  if (explicit) {
    const parsed = parseVersion(await run(explicit, ['--version'], versionTimeoutMs));
    if (!parsed) throw new ConfigError(variable, `${variable}=${explicit} does not run or is not ${name}`);
    if (fits(parsed.major)) return { name, command: [explicit], ...parsed, location: explicit, inContainer: false };
    found.push(`${parsed.major} at ${explicit} (${variable})`);
  }

  for await (const file of candidatePaths(name, options)) {
    const parsed = parseVersion(await run(file, ['--version'], versionTimeoutMs));
    if (!parsed) continue;
    if (fits(parsed.major)) return { name, command: [file], ...parsed, location: file, inContainer: false };
    found.push(`${parsed.major} at ${file}`);
  }

  let lookedAt = `${variable}, PATH, ${options.installationsDir ?? '/usr/lib/postgresql'}/*/bin, docker compose service '${composeService}'`;
  // The compose set-up is this package's own (its docker-compose.yml): a service that bundled
  // the library runs away from it, and has none to look in.
  const composeDir = options.docker === false ? undefined : findPackageRoot();
  if (composeDir !== undefined && (await composeServiceRuns(composeDir, env))) {
    const location = `docker compose service '${composeService}'`;
    const skip = await composeSkipReason(composeDir, options.target, env);
    if (skip) {
      // Its program would connect to the container's own server, not the one asked for.
      // Said in the list of versions found, or (when there is none) where it looked.
      if (found.length > 0) found.push(`${location} skipped: ${skip}`);
      else lookedAt += ` (skipped: ${skip})`;
    } else {
      const command = ['docker', 'compose', 'exec', '-T', composeService, name];
      const parsed = parseVersion(await run(command[0]!, [...command.slice(1), '--version'], versionTimeoutMs, composeDir, env));
      if (parsed && fits(parsed.major)) return { name, command, ...parsed, location, inContainer: true };
      if (parsed) found.push(`${parsed.major} in ${location}`);
    }
  }

  throw new PgToolNotFoundError(name, options.minMajor, found, lookedAt);
}
