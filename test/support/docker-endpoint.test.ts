import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dockerEndpointMayExist } from './docker-endpoint.js';

describe('whether a Docker engine might answer, asked before importing testcontainers', () => {
  let home: string;
  let runtime: string;
  beforeEach(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'kw-docker-home-'));
    runtime = await mkdtemp(path.join(os.tmpdir(), 'kw-docker-runtime-'));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
    await rm(runtime, { recursive: true, force: true });
  });
  const ask = (env: NodeJS.ProcessEnv = {}, systemSockets: string[] = []) => dockerEndpointMayExist({ env, home, systemSockets });

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
      const fresh = await mkdtemp(path.join(os.tmpdir(), 'kw-docker-home-'));
      await mkdir(path.join(fresh, '.docker', folder), { recursive: true });
      await writeFile(path.join(fresh, '.docker', folder, 'docker.sock'), '');
      expect(dockerEndpointMayExist({ env: {}, home: fresh, systemSockets: [] })).toBe(true);
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
