import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { appendFile, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MigrationChecksumError, MigrationError, MigrationMissingError, ConfigError } from '../../src/errors.js';
import { defaultMigrationsDir } from '../../src/migrations/default-migrations-dir.js';
import { checksumOf } from '../../src/migrations/migration-files.js';
import { packageRoot } from '../../src/package-root.js';
import { migrate, migrateDown, migrationStatus } from '../../src/migrations/migrator.js';
import { runCli } from '../support/run-cli.js';
import { createMigrationSandbox } from '../support/migration-sandbox.js';
import type { TestDatabase } from '../support/test-database.js';

const names = [
  '20250914134643_initial_schema',
  '20250914134654_add_refresh_tokens_and_user_active',
  '20250914134703_add_phrases_system',
  '20261126174308_add_password_changed_revoked_reason',
  '20261204210000_index_refresh_tokens_by_user',
];

let database: TestDatabase;
let migrationsDir: string;
let remove: () => Promise<void>;

beforeEach(async () => {
  ({ database, migrationsDir, remove } = await createMigrationSandbox());
});

afterEach(async () => {
  await remove();
});

async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function recorded(): Promise<string[]> {
  return (await query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name')).map((row) => row.name);
}

async function tableExists(table: string): Promise<boolean> {
  const [row] = await query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [table]);
  return row!.exists;
}

describe('migrate', () => {
  it('applies every migration in order and records name, checksum, applied time and duration', async () => {
    const lines: string[] = [];
    const runs = await migrate({ databaseUrl: database.url, migrationsDir, log: (line) => lines.push(line) });

    expect(runs.map((run) => run.name)).toEqual(names);
    expect(lines.filter((line) => line.startsWith('applied'))).toHaveLength(names.length);
    expect(lines[0]).toMatch(/^applied 20250914134643_initial_schema \(\d+ ms\)$/);
    const rows = await query<{ name: string; checksum: string; applied_at: Date; duration_ms: number }>(
      'SELECT * FROM schema_migrations ORDER BY name',
    );
    expect(rows.map((row) => row.name)).toEqual(names);
    const first = await readFile(path.join(migrationsDir, `${names[0]}.up.sql`));
    expect(rows[0]!.checksum).toBe(checksumOf(first));
    expect(rows[0]!.applied_at).toBeInstanceOf(Date);
    expect(rows.every((row) => row.duration_ms >= 0)).toBe(true);
  });

  it('does nothing when every migration is applied', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    expect(await migrate({ databaseUrl: database.url, migrationsDir })).toEqual([]);
  });

  it('opens two connections for a run, the lock holder and the one that migrates, whether it applies all or nothing', async () => {
    // A release step may meet a server with few connection slots to spare; the check that
    // refuses a pooler is made on the lock holder's connection, not on a third.
    const connect = vi.spyOn(pg.Client.prototype, 'connect');
    try {
      await migrate({ databaseUrl: database.url, migrationsDir });
      expect(connect).toHaveBeenCalledTimes(2);
      connect.mockClear();
      await migrate({ databaseUrl: database.url, migrationsDir });
      expect(connect).toHaveBeenCalledTimes(2);
    } finally {
      connect.mockRestore();
    }
  });

  it('applies each migration exactly once when 8 `npm run migrate` processes start together', async () => {
    const results = await Promise.all(
      // As the owner, as the commands migrate (they refuse a superuser).
      Array.from({ length: 8 }, () => runCli('migrate', [], { DATABASE_URL: database.ownerUrl })),
    );

    for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0 });
    const applyLines = results.flatMap((result) => result.stdout.split('\n').filter((line) => line.startsWith('applied ')));
    expect(applyLines.map((line) => line.split(' ')[1]).sort()).toEqual(names);
    expect(await recorded()).toEqual(names);
  });

  it('stops before applying anything when an applied migration file has changed, naming the file', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    await migrateDown({ databaseUrl: database.url, migrationsDir, to: names[2] });
    await appendFile(path.join(migrationsDir, `${names[0]}.up.sql`), '\n-- edited after it was applied\n');

    const run = migrate({ databaseUrl: database.url, migrationsDir });

    await expect(run).rejects.toBeInstanceOf(MigrationChecksumError);
    await expect(run).rejects.toThrow(`${names[0]}.up.sql`);
    expect(await recorded()).toEqual(names.slice(0, 2));
    expect(await tableExists('phrases')).toBe(false);
  });

  // A checkout with CRLF line endings (Windows, core.autocrlf) read every applied file as changed.
  it('checks out the migrations with LF line endings whatever git is set to, as their checksums were taken', () => {
    const shipped = readdirSync(defaultMigrationsDir()).filter((file) => file.endsWith('.sql')).map((file) => path.join('migrations', file));
    const { stdout } = spawnSync('git', ['check-attr', 'eol', '--', ...shipped], { cwd: packageRoot(), encoding: 'utf8' });
    expect(stdout.trim().split('\n')).toEqual(shipped.map((file) => `${file}: eol: lf`));
  });

  // Names that the locale orders otherwise than their code points: status listed them in the
  // locale's order, and `migrate down` named the last of that one, not the one it reverts.
  it('lists migrations in the order they apply and revert, whatever the locale says of their names', async () => {
    for (const name of ['29990101000000_Zeta', '29990101000000_alpha']) {
      await writeFile(path.join(migrationsDir, `${name}.up.sql`), `CREATE TABLE "${name}" (id int);\n`);
      await writeFile(path.join(migrationsDir, `${name}.down.sql`), `DROP TABLE "${name}";\n`);
    }
    const applied = (await migrate({ databaseUrl: database.url, migrationsDir })).map((run) => run.name);
    const listed = (await migrationStatus({ databaseUrl: database.url, migrationsDir })).map((migration) => migration.name);
    const reverted = (await migrateDown({ databaseUrl: database.url, migrationsDir })).map((run) => run.name);

    expect(applied.slice(-2)).toEqual(['29990101000000_Zeta', '29990101000000_alpha']);
    expect(listed.slice(-2)).toEqual(applied.slice(-2));
    expect(reverted).toEqual([listed.at(-1)]);
  });

  it('refuses to run when a recorded migration file is missing', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    await unlink(path.join(migrationsDir, `${names[1]}.up.sql`));

    await expect(migrate({ databaseUrl: database.url, migrationsDir })).rejects.toThrow(MigrationMissingError);
    await expect(migrate({ databaseUrl: database.url, migrationsDir })).rejects.toThrow(names[1]);
    // The way back, for an older release deployed over a newer schema (README: Rolling back).
    await expect(migrate({ databaseUrl: database.url, migrationsDir })).rejects.toThrow(
      'Deploy it without migrating (its release step, or a migration at start-up), and revert the schema, if at all, once no instance of the newer release (which fails on the older schema) runs, with the release that applied it (migrate down --to NAME)',
    );
  });

  it('rolls a failed migration back completely and names the file, the line and PostgreSQL’s message', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    const broken = '20990101000000_broken';
    await writeFile(
      path.join(migrationsDir, `${broken}.up.sql`),
      [
        '-- creates a table, then fails',
        'CREATE TABLE half_done (id int);',
        '',
        'INSERT INTO half_done VALUES (1);',
        'SELECT *',
        '  FROM table_that_does_not_exist;',
      ].join('\n'),
    );
    await writeFile(path.join(migrationsDir, `${broken}.down.sql`), 'DROP TABLE half_done;');

    const error = await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(MigrationError);
    const failure = error as MigrationError;
    expect(failure.file).toBe(`${broken}.up.sql`);
    expect(failure.line).toBe(6);
    expect(failure.message).toContain(`${broken}.up.sql failed at line 6`);
    expect(failure.message).toContain('relation "table_that_does_not_exist" does not exist');
    expect((failure.cause as { code?: string }).code).toBe('42P01');
    expect(await tableExists('half_done')).toBe(false);
    expect(await recorded()).toEqual(names);
  });

  it('names the line of a statement that fails without a position', async () => {
    const broken = '20990101000000_duplicate_role';
    await writeFile(
      path.join(migrationsDir, `${broken}.up.sql`),
      "SELECT 1;\n\nINSERT INTO roles (name) VALUES ('admin');\n",
    );
    await writeFile(path.join(migrationsDir, `${broken}.down.sql`), '');

    const error = (await migrate({ databaseUrl: database.url, migrationsDir }).catch((e: unknown) => e)) as MigrationError;

    expect(error).toBeInstanceOf(MigrationError);
    expect(error.line).toBe(3);
    expect(error.message).toContain('duplicate key value violates unique constraint "roles_name_key"');
    expect(await recorded()).toEqual(names);
  });
});

describe('migrateDown', () => {
  it('reverts the last migration, or back to and including a named one', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });

    const last = await migrateDown({ databaseUrl: database.url, migrationsDir });
    expect(last.map((run) => run.name)).toEqual([names[4]]);
    expect(await recorded()).toEqual(names.slice(0, 4));

    const third = await migrateDown({ databaseUrl: database.url, migrationsDir, to: names[2] });
    expect(third.map((run) => run.name)).toEqual([names[3], names[2]]);
    expect(await tableExists('phrases')).toBe(false);

    const rest = await migrateDown({ databaseUrl: database.url, migrationsDir, to: names[0] });
    expect(rest.map((run) => run.name)).toEqual([names[1], names[0]]);
    expect(await recorded()).toEqual([]);
    expect(await tableExists('users')).toBe(false);
  });

  it('refuses a `to` that names no applied migration (mistyped, or pending) as a ConfigError naming the applied ones, reverting nothing', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir, to: names[3] });

    const error = await migrateDown({ databaseUrl: database.url, migrationsDir, to: `${names[0]}x` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `to ${names[0]}x names no applied migration (applied, newest first: ${names.slice(0, 4).reverse().join(', ')}); nothing was reverted`,
    );
    await expect(migrateDown({ databaseUrl: database.url, migrationsDir, to: names[4] })).rejects.toThrow(`to ${names[4]} names no applied migration`);
    expect(await recorded()).toEqual(names.slice(0, 4));
  });
});

describe('migrationStatus', () => {
  it('lists applied, pending and changed migrations', async () => {
    await migrate({ databaseUrl: database.url, migrationsDir });
    await migrateDown({ databaseUrl: database.url, migrationsDir });
    await appendFile(path.join(migrationsDir, `${names[1]}.up.sql`), '\n-- changed\n');

    const states = await migrationStatus({ databaseUrl: database.url, migrationsDir });

    expect(states.map((m) => [m.name, m.state])).toEqual([
      [names[0], 'applied'],
      [names[1], 'changed'],
      [names[2], 'applied'],
      [names[3], 'applied'],
      [names[4], 'pending'],
    ]);
    expect(states[0]!.appliedAt).toBeInstanceOf(Date);
  });

  it('reports every migration pending on a database never migrated', async () => {
    const states = await migrationStatus({ databaseUrl: database.url, migrationsDir });
    expect(states.map((m) => m.state)).toEqual(names.map(() => 'pending'));
    expect((await readdir(migrationsDir)).length).toBe(2 * names.length);
  });
});
