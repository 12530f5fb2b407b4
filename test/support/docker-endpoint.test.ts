import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { dockerEndpointMayExist } from './docker-endpoint.js';

describe('whether a Docker engine might answer, asked before importing testcontainers', () => {
  let scratch: string;
  let home: string;
  let runtime: string;
  beforeEach(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kw-docker-'));
    home = path.join(scratch, 'home');
    runtime = path.join(scratch, 'runtime');
    await mkdir(home);
    await mkdir(runtime);
  });
  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });
  const ask = (env: NodeJS.ProcessEnv = {}, systemSockets: string[] = [], at = home) => dockerEndpointMayExist({ env, home: at, systemSockets });

  it('is no where nothing names or offers an endpoint', () => {
    expect(ask({ XDG_RUNTIME_DIR: runtime })).toBe(false);
  });

  it('is yes for DOCKER_HOST, and for a ~/.testcontainers.properties (it may name tc.host or docker.host)', async () => {
    expect(ask({ DOCKER_HOST: 'tcp://127.0.0.1:2375' })).toBe(true);
    await writeFile(path.join(home, '.testcontainers.properties'), 'docker.host=tcp://127.0.0.1:2375\n');
    expect(ask()).toBe(true);
  });

  it("is yes for each socket testcontainers tries: the system's, the rootless runtime folder's, the home folder's", async () => {
    const system = path.join(runtime, 'system-docker.sock');
    await writeFile(system, '');
    expect(ask({}, [system])).toBe(true);
    await writeFile(path.join(runtime, 'docker.sock'), '');
    expect(ask({ XDG_RUNTIME_DIR: runtime })).toBe(true);
    for (const folder of ['run', 'desktop']) {
      const other = path.join(scratch, `home-${folder}`);
      await mkdir(path.join(other, '.docker', folder), { recursive: true });
      await writeFile(path.join(other, '.docker', folder, 'docker.sock'), '');
      expect(ask({}, [], other)).toBe(true);
    }
  });

  it('knows every strategy the installed testcontainers has: a new one would need a look here', () => {
    // The lookout above mirrors these: tc.host and docker.host (the properties file),
    // DOCKER_HOST, /var/run/docker.sock, the rootless sockets, and Windows' named pipe.
    const strategies = path.join(packageRoot(), 'node_modules', 'testcontainers', 'build', 'container-runtime', 'strategies');
    expect(readdirSync(strategies).filter((file) => file.endsWith('-strategy.js')).sort()).toEqual([
      'configuration-strategy.js',
      'npipe-socket-strategy.js',
      'rootless-unix-socket-strategy.js',
      'testcontainers-host-strategy.js',
      'unix-socket-strategy.js',
    ]);
  });
});
