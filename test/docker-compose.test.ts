import { readdir, readFile } from 'node:fs/promises';
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
      depends_on: Record<string, { condition: string }>;
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

  it('makes its superuser the admin, never the owner role migrations and restores run as', () => {
    expect(postgres.environment.POSTGRES_USER).toBe('${POSTGRES_USER:-postgres}');
    expect(postgres.environment.POSTGRES_USER).not.toContain('DB_OWNER_USER');
  });

  // A superuser can run programs as the server's account (COPY … TO PROGRAM), and 127.0.0.1
  // is open to every account of the host: its password is never a default anyone can guess.
  it("requires the admin's password from the environment, with no default", () => {
    expect(postgres.environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?[^}]+\}$/);
  });

  it('checks health with pg_isready', () => {
    expect(postgres.healthcheck.test.join(' ')).toContain('pg_isready');
  });

  describe('the pgbouncer service', () => {
    const pgbouncer = compose.services.pgbouncer!;

    it('is a maintained image pinned to a PgBouncer version of at least 1.21', () => {
      const [, version] = /^edoburu\/pgbouncer:v?(\d+\.\d+)\.\d+(?:-p\d+)?$/.exec(pgbouncer.image) ?? [];
      expect(version, pgbouncer.image).toBeDefined();
      const [major, minor] = version!.split('.').map(Number) as [number, number];
      expect(major > 1 || minor >= 21).toBe(true);
    });

    it('pools in transaction mode in front of the postgres service, once it is healthy', () => {
      expect(pgbouncer.environment.POOL_MODE).toBe('transaction');
      expect(pgbouncer.environment.DB_HOST).toBe('postgres');
      expect(pgbouncer.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    });

    it('lets services in as the application role, not the owner', () => {
      expect(pgbouncer.environment.DB_USER).toContain('DB_APP_USER');
      expect(pgbouncer.environment.DB_USER).not.toContain('POSTGRES_USER');
      expect(pgbouncer.environment.AUTH_TYPE).toBe('scram-sha-256');
    });

    it("requires the application role's password from the environment, with no default", () => {
      expect(pgbouncer.environment.DB_PASSWORD).toMatch(/^\$\{DB_APP_PASSWORD:\?[^}]+\}$/);
    });

    it('keeps named statements in transaction mode: max_prepared_statements holds every hot statement, twice over', async () => {
      // The library's default (auto) names the statements prepareQuery builds behind a
      // PgBouncer that keeps them (1.21+, max_prepared_statements > 0). PgBouncer keeps that
      // many per server connection, least recently used out: room for each hot statement and
      // its renewed form after a migration changes a result type (see statement-naming.ts).
      const queries = path.join(packageRoot(), 'src', 'queries');
      let hot = 0;
      for (const file of await readdir(queries)) {
        hot += ((await readFile(path.join(queries, file), 'utf8')).match(/\bprepareQuery\(/g) ?? []).length;
      }
      expect(hot).toBeGreaterThan(0);
      expect(Number(pgbouncer.environment.MAX_PREPARED_STATEMENTS)).toBeGreaterThanOrEqual(2 * hot);
    });

    it('publishes its port on 127.0.0.1 only, apart from the server’s', () => {
      expect(pgbouncer.ports).toEqual(['127.0.0.1:${PGBOUNCER_PORT:-6432}:6432']);
      expect(pgbouncer.ports[0]).not.toBe(postgres.ports[0]);
    });
  });
});
