import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { packageRoot } from '../src/package-root.js';

// No Docker engine runs on our machines, so the compose file is checked for structure here.
interface ComposeFile {
  services: Record<
    string,
    {
      image: string;
      ports: string[];
      volumes: string[];
      healthcheck: { test: string[] };
      environment: Record<string, string>;
    }
  >;
  volumes: Record<string, unknown>;
}

describe('docker-compose.yml', async () => {
  const compose = parse(await readFile(path.join(packageRoot(), 'docker-compose.yml'), 'utf8')) as ComposeFile;
  const postgres = compose.services.postgres!;

  it('runs PostgreSQL 17 with pg_uuidv7 as the postgres service', () => {
    expect(postgres.image).toBe('ghcr.io/fboulnois/pg_uuidv7:1.6.0');
  });

  it('keeps data in a named volume and mounts ./backups at /backups', () => {
    const [dataVolume] = postgres.volumes.filter((volume) => volume.endsWith(':/var/lib/postgresql/data'));
    const volumeName = dataVolume!.split(':')[0]!;
    expect(Object.keys(compose.volumes)).toContain(volumeName);
    expect(postgres.volumes).toContain('./backups:/backups');
  });

  it('publishes the port on 127.0.0.1 only', () => {
    expect(postgres.ports).toHaveLength(1);
    expect(postgres.ports[0]).toMatch(/^127\.0\.0\.1:.+:5432$/);
  });

  it('checks health with pg_isready', () => {
    expect(postgres.healthcheck.test.join(' ')).toContain('pg_isready');
  });
});
