import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where to look for a Docker engine (see {@link dockerEndpointMayExist}); defaults are this machine's. */
export interface DockerLookout {
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** The sockets outside the home folder that testcontainers tries. */
  systemSockets?: string[];
}

/**
 * Whether testcontainers might find a Docker engine here: an endpoint named by `DOCKER_HOST`
 * or by `~/.testcontainers.properties`, or one of the sockets its strategies try (those of
 * testcontainers 11: `/var/run/docker.sock`, the rootless ones, Docker Desktop's; on Windows,
 * its named pipe, so always). Where none exists the run need not import testcontainers (0.35 s
 * of CPU in the set-up, on the way to the first test) only to hear that no engine answers.
 *
 * @example dockerEndpointMayExist() // false on a machine without Docker's engine
 */
export function dockerEndpointMayExist(lookout: DockerLookout = {}): boolean {
  if (process.platform === 'win32') return true;
  const env = lookout.env ?? process.env;
  if (env.DOCKER_HOST) return true;
  const home = lookout.home ?? os.homedir();
  const uid = process.getuid?.();
  const systemSockets = lookout.systemSockets ?? ['/var/run/docker.sock', ...(uid === undefined ? [] : [path.join('/run/user', String(uid), 'docker.sock')])];
  const candidates = [
    path.join(home, '.testcontainers.properties'),
    path.join(home, '.docker', 'run', 'docker.sock'),
    path.join(home, '.docker', 'desktop', 'docker.sock'),
    // As testcontainers joins it, an empty one too.
    ...(env.XDG_RUNTIME_DIR === undefined ? [] : [path.join(env.XDG_RUNTIME_DIR, 'docker.sock')]),
    ...systemSockets,
  ];
  return candidates.some((candidate) => existsSync(candidate));
}
