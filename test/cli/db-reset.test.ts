import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/run-cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

describe('npm run db:reset', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database.drop());

  it('refuses a non-local host without --force, and never prints the password', async () => {
    const result = await runCli('db-reset', [], { DATABASE_URL: 'postgresql://app:hunter2-secret@db.example.com:5432/prod' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to reset a database on the non-local host 'db.example.com'");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  // pg sends a URL without a host to PGHOST: the guard must see that server, not "no host".
  it('refuses a URL without a host when PGHOST names a remote server, before connecting', async () => {
    const result = await runCli('db-reset', [], { DATABASE_URL: 'postgresql://app:hunter2-secret@/kennwilliamson', PGHOST: 'db.invalid' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("refusing to reset a database on the non-local host 'db.invalid' (from PGHOST); pass --force");
    expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
  });

  it('drops, recreates and migrates a local database', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await client.query("INSERT INTO users (email, password_hash, display_name, slug) VALUES ('gone@example.org', 'h', 'Gone', 'gone')");
    await client.end();

    const result = await runCli('db-reset', [], { DATABASE_URL: database.url });

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('5 migration(s) applied.');
    const after = new pg.Client({ connectionString: database.url });
    await after.connect();
    const { rows } = await after.query("SELECT count(*)::int AS n FROM users WHERE email = 'gone@example.org'");
    const { rows: migrations } = await after.query('SELECT count(*)::int AS n FROM schema_migrations');
    await after.end();
    expect(rows[0]).toEqual({ n: 0 });
    expect(migrations[0]).toEqual({ n: 5 });
  });
});

describe('npm run migrate', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => database.drop());

  it('status lists the five applied migrations', async () => {
    const result = await runCli('migrate', ['status'], { DATABASE_URL: database.url });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^applied +20250914134643_initial_schema applied .+ in \d+ ms$/m);
    expect(result.stdout).toContain('5 applied, 0 pending, 0 changed, 0 missing');
  });

  it('fails with a message on an unknown action', async () => {
    const result = await runCli('migrate', ['sideways'], { DATABASE_URL: database.url });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("unknown migrate action 'sideways'");
  });

  it('migrates with MIGRATION_DATABASE_URL when both URLs are set', async () => {
    const result = await runCli('migrate', ['status'], {
      MIGRATION_DATABASE_URL: database.url,
      DATABASE_URL: 'postgresql://app:app-secret@127.0.0.1:1/unreachable',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('5 applied, 0 pending, 0 changed, 0 missing');
  });
});
