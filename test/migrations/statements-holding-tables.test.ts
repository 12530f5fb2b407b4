import { describe, expect, it, onTestFinished } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { parseMigrationScript } from '../../src/migrations/migration-script.js';
import { migrate } from '../../src/migrations/migrator.js';
import { createMigrationSandbox, writeMigration } from '../support/migration-sandbox.js';

const holdsOf = async (sql: string) => (await parseMigrationScript('x.up.sql', sql)).statements.map((statement) => statement.holds?.doing ?? null);

/**
 * A migrated sandbox of the test's own, `prepare` run on it (rows, ANALYZE), and a pending file
 * `name` of `up`: the lines a dry run says of tables held, and a count of a table's rows.
 */
async function holdsSaidByDryRun(name: string, prepare: string, up: string): Promise<{ said: string[]; rowsOf: (table: string) => Promise<number> }> {
  const { database, migrationsDir, remove } = await createMigrationSandbox();
  onTestFinished(remove);
  await migrate({ databaseUrl: database.url, migrationsDir });
  await withClient(database.url, (client) => client.query(prepare));
  await writeMigration(migrationsDir, name, up, '');
  const planned: string[] = [];
  await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, warn: (line) => planned.push(line) });
  const rowsOf = (table: string) => withClient(database.url, async (client) => (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n);
  return { said: planned.filter((line) => line.includes(' holds ')), rowsOf };
}

// The lock attempts bound a migration's wait, not its hold: a statement that rewrites or scans
// a table with rows keeps its traffic waiting for the whole statement.
describe('statements that hold a table while they go through every row', () => {
  it.each([
    ['ALTER TABLE users ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid()', /^may rewrite every row/],
    ['ALTER TABLE users ADD COLUMN n text GENERATED ALWAYS AS (email) STORED', /^rewrites every row \(a stored generated column\)$/],
    ['ALTER TABLE users ADD CONSTRAINT c CHECK (length(email) > 3)', /^scans every row \(a CHECK without NOT VALID\)$/],
    ['ALTER TABLE incident_timers ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES users (id)', /^scans every row \(a FOREIGN KEY without NOT VALID\)$/],
    ['ALTER TABLE users ALTER COLUMN display_name TYPE varchar(200)', /^rewrites every row unless the new type is binary-compatible/],
    ['ALTER TABLE users ALTER COLUMN slug SET NOT NULL', /^scans every row \(SET NOT NULL/],
    ['ALTER TABLE users ADD CONSTRAINT u UNIQUE (slug)', /^builds an index over every row$/],
    ['CREATE INDEX users_created ON users (created_at)', /^builds an index over every row \(writes wait/],
    ['VACUUM FULL users', /^rewrites every row \(VACUUM FULL\)$/],
    ['CLUSTER users USING users_pkey', /^rewrites every row \(CLUSTER\)$/],
    ['ALTER TABLE users ADD COLUMN n bigserial', /^rewrites every row \(a serial column numbers each one\)$/],
    ['ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY', /^rewrites every row \(an identity column numbers each one\)$/],
    ['ALTER TABLE users SET UNLOGGED', /^rewrites every row \(SET LOGGED or UNLOGGED\)$/],
    ['ALTER TABLE users ADD COLUMN n int, ALTER COLUMN slug TYPE text', /^rewrites every row unless/],
    ['REFRESH MATERIALIZED VIEW daily_counts', /^computes every row again \(REFRESH MATERIALIZED VIEW without CONCURRENTLY/],
  ])('%s', async (sql, doing) => {
    expect((await holdsOf(sql))[0]).toMatch(doing);
  });

  it.each([
    'ALTER TABLE users ADD COLUMN theme text NOT NULL DEFAULT \'light\'',
    "ALTER TABLE users ADD COLUMN since date DEFAULT '2025-01-01'::date",
    'ALTER TABLE users ADD CONSTRAINT c CHECK (length(email) > 3) NOT VALID',
    'ALTER TABLE users VALIDATE CONSTRAINT c',
    'ALTER TABLE users ADD CONSTRAINT u UNIQUE USING INDEX users_slug_idx',
    'CREATE INDEX CONCURRENTLY users_created ON users (created_at)',
    'VACUUM users',
    'VACUUM (FULL false) users',
    'ALTER TABLE users DROP COLUMN theme',
    'ALTER TABLE users ADD COLUMN seen timestamptz NOT NULL DEFAULT now()',
    'ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT CURRENT_TIMESTAMP',
    'ALTER TABLE users ADD COLUMN tags text[] NOT NULL DEFAULT ARRAY[]::text[]',
    "ALTER TABLE users ADD COLUMN label text DEFAULT 'a' || 'b'",
    'ALTER TABLE users ADD COLUMN referrer uuid REFERENCES users (id)',
    'REFRESH MATERIALIZED VIEW CONCURRENTLY daily_counts',
  ])('not: %s', async (sql) => {
    expect(await holdsOf(sql)).toEqual([null]);
  });

  it('counts the table alone under ONLY, which the parser says by leaving inh out', async () => {
    const [hold] = (await parseMigrationScript('x.up.sql', 'ALTER TABLE ONLY events ADD CONSTRAINT c CHECK (n > 0)')).statements;
    expect(hold?.holds).toMatchObject({ table: 'events', only: true });
    const [whole] = (await parseMigrationScript('x.up.sql', 'ALTER TABLE events ADD CONSTRAINT c CHECK (n > 0)')).statements;
    expect(whole?.holds).toMatchObject({ table: 'events', only: false });
  });

  it('not on a table the same file created before, in the same schema', async () => {
    expect(await holdsOf('CREATE TABLE audit (id int); ALTER TABLE audit ADD CONSTRAINT p CHECK (id > 0); CREATE INDEX audit_id ON public.audit (id)')).toEqual([null, null, null]);
    expect(await holdsOf('CREATE TABLE archive.users (id int); ALTER TABLE users ADD CONSTRAINT p CHECK (id IS NOT NULL)')).toEqual([
      null,
      'scans every row (a CHECK without NOT VALID)',
    ]);
  });

  // Locks last until COMMIT: the ALTER TABLE that adds a column holds ACCESS EXCLUSIVE for a
  // moment's work, and a backfill after it in the same file keeps the table's every read waiting
  // for as long as the backfill runs (2 million rows: 54 s, every read of the table failing).
  describe('a bulk write after a statement of the same transactional file locked a table', () => {
    // The tables kept locked, the one said first (the written table's, else the strongest lock).
    const heldOf = async (sql: string) => (await parseMigrationScript('x.up.sql', sql)).statements.map((statement) => statement.whileLocked ?? null);
    const underLock = (line: number, words: string) =>
      `writes rows while the lock line ${line}'s ${words} took stays, until the file's COMMIT (write rows in batches, in a later file with -- migrate:no-transaction)`;

    it.each([
      ["ALTER TABLE refresh_tokens ADD COLUMN client_version text;\nUPDATE refresh_tokens SET client_version = 'v1';", 'refresh_tokens', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      // Any table's: the lock lasts while the other table's rows are written.
      ['ALTER TABLE users ADD COLUMN theme text;\nDELETE FROM phrases WHERE active = false;', 'users', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      // The written table's own, where it is one of them.
      ['ALTER TABLE users ADD COLUMN theme text;\nALTER TABLE public.phrases ADD COLUMN n int;\nUPDATE phrases SET n = 1;', 'public.phrases', 'ACCESS EXCLUSIVE', 2, 'ALTER TABLE'],
      // A table's strongest lock, whichever statement took it.
      ['CREATE INDEX users_theme ON users (theme);\nALTER TABLE users ADD COLUMN n int;\nUPDATE users SET n = 1;', 'users', 'ACCESS EXCLUSIVE', 2, 'ALTER TABLE'],
      // Another table's stronger lock before a weaker one's.
      ['CREATE INDEX phrases_text ON phrases (phrase_text);\nALTER TABLE users ADD COLUMN n int;\nDELETE FROM refresh_tokens;', 'users', 'ACCESS EXCLUSIVE', 2, 'ALTER TABLE'],
      ['TRUNCATE phrases;\nINSERT INTO phrases (phrase_text) SELECT phrase_text FROM phrase_suggestions;', 'phrases', 'ACCESS EXCLUSIVE', 1, 'TRUNCATE'],
      ['CREATE INDEX users_theme ON users (theme);\nUPDATE users SET theme = lower(theme);', 'users', 'SHARE', 1, 'CREATE INDEX'],
      ['CREATE UNIQUE INDEX users_theme ON users (theme);\nUPDATE users SET theme = lower(theme);', 'users', 'SHARE', 1, 'CREATE UNIQUE INDEX'],
      ['LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;\nUPDATE users SET theme = lower(theme);', 'users', 'SHARE ROW EXCLUSIVE', 1, 'LOCK TABLE'],
      ['LOCK TABLE users IN EXCLUSIVE MODE;\nUPDATE users SET theme = lower(theme);', 'users', 'EXCLUSIVE', 1, 'LOCK TABLE'],
      ["ALTER TABLE incident_timers ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\nUPDATE incident_timers SET notes = '';", 'incident_timers', 'SHARE ROW EXCLUSIVE', 1, 'ALTER TABLE'],
      // The table a foreign key references: its writes wait.
      ['CREATE TABLE audit (user_id uuid REFERENCES users (id));\nINSERT INTO audit SELECT id FROM users;', 'users', 'SHARE ROW EXCLUSIVE', 1, 'CREATE TABLE'],
      ['ALTER TABLE incident_timers ADD CONSTRAINT f FOREIGN KEY (user_id) REFERENCES public.users (id) NOT VALID;\nUPDATE users SET slug = lower(slug);', 'public.users', 'SHARE ROW EXCLUSIVE', 1, 'ALTER TABLE'],
      ['ALTER TABLE users RENAME COLUMN slug TO handle;\nUPDATE users SET handle = lower(handle);', 'users', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      ['ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM (1) TO (2);\nUPDATE events_2027 SET n = 1;', 'events_2027', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      ['CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM (1) TO (2);\nUPDATE events SET n = 1;', 'events', 'ACCESS EXCLUSIVE', 1, 'CREATE TABLE'],
      ['CREATE TRIGGER t BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION f();\nUPDATE users SET slug = lower(slug);', 'users', 'SHARE ROW EXCLUSIVE', 1, 'CREATE TRIGGER'],
      ['REINDEX TABLE users;\nUPDATE users SET slug = lower(slug);', 'users', 'SHARE', 1, 'REINDEX'],
      ['ALTER TABLE users ADD COLUMN theme text;\nMERGE INTO users u USING phrases p ON false WHEN NOT MATCHED THEN DO NOTHING;', 'users', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      // A write inside a WITH.
      ["ALTER TABLE users ADD COLUMN theme text;\nWITH u AS (UPDATE users SET theme = 'light' RETURNING 1) SELECT count(*) FROM u;", 'users', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      // A policy or a rule, made or dropped, a trigger dropped, a materialized view refreshed.
      ['CREATE POLICY own_rows ON users USING (true);\nUPDATE users SET slug = lower(slug);', 'users', 'ACCESS EXCLUSIVE', 1, 'CREATE POLICY'],
      ['CREATE RULE keep AS ON DELETE TO phrases DO INSTEAD NOTHING;\nUPDATE users SET slug = lower(slug);', 'phrases', 'ACCESS EXCLUSIVE', 1, 'CREATE RULE'],
      ['DROP TRIGGER IF EXISTS users_touch ON public.users;\nUPDATE users SET slug = lower(slug);', 'public.users', 'ACCESS EXCLUSIVE', 1, 'DROP TRIGGER'],
      ['DROP POLICY own_rows ON users;\nUPDATE users SET slug = lower(slug);', 'users', 'ACCESS EXCLUSIVE', 1, 'DROP POLICY'],
      ['REFRESH MATERIALIZED VIEW daily_counts;\nUPDATE users SET slug = lower(slug);', 'daily_counts', 'ACCESS EXCLUSIVE', 1, 'REFRESH MATERIALIZED VIEW'],
      // Rows of a UNION's query.
      ['ALTER TABLE users ADD COLUMN n int;\nINSERT INTO audit (id) SELECT id FROM users UNION ALL SELECT id FROM phrases;', 'users', 'ACCESS EXCLUSIVE', 1, 'ALTER TABLE'],
      // The index it names stands for its table, which the catalog tells (below).
      ['DROP INDEX IF EXISTS public.users_slug_idx;\nUPDATE users SET slug = lower(slug);', 'public.users_slug_idx', 'ACCESS EXCLUSIVE', 1, 'DROP INDEX'],
      // An index the file created names its own table, the written one first.
      ['ALTER TABLE phrases ADD COLUMN n int;\nCREATE INDEX users_theme ON users (theme);\nDROP INDEX users_theme;\nUPDATE users SET theme = lower(theme);', 'users', 'ACCESS EXCLUSIVE', 3, 'DROP INDEX'],
    ])('%s', async (sql, table, lock, line, words) => {
      expect((await heldOf(sql)).at(-1)?.[0]).toMatchObject({ table, lock, doing: underLock(line as number, words as string) });
    });

    it('names every table kept locked, for the one that has rows to be said', async () => {
      const [, , whileLocked] = await heldOf('CREATE INDEX phrases_text ON phrases (phrase_text);\nALTER TABLE users ADD COLUMN n int;\nDELETE FROM refresh_tokens;');
      expect(whileLocked?.map(({ table, lock }) => `${lock} ${table}`)).toEqual(['ACCESS EXCLUSIVE users', 'SHARE phrases']);
    });

    it.each([
      // Its own file, without a transaction: each statement's locks end with it.
      "-- migrate:no-transaction\nALTER TABLE users ADD COLUMN theme text;\nUPDATE users SET theme = 'light';",
      // Locks that neither reads nor writes wait for.
      "ALTER TABLE users VALIDATE CONSTRAINT c;\nUPDATE users SET theme = 'light';",
      "ALTER TABLE users ALTER COLUMN slug SET (n_distinct = 10);\nUPDATE users SET theme = 'light';",
      "CREATE INDEX CONCURRENTLY users_theme ON users (theme);\nUPDATE users SET theme = 'light';",
      "-- migrate:no-transaction\nDROP INDEX CONCURRENTLY users_theme;\nUPDATE users SET theme = 'light';",
      // Dropping a table leaves nothing locked that traffic could reach.
      "DROP TABLE IF EXISTS audit;\nUPDATE users SET theme = 'light';",
      'LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE;\nUPDATE users SET theme = lower(theme);',
      // Rows listed, not a query's.
      "ALTER TABLE roles ADD COLUMN label text;\nINSERT INTO roles (name) VALUES ('auditor');",
      "ALTER TABLE roles ADD COLUMN label text;\nINSERT INTO roles (name) SELECT 'auditor';",
      // A table the file made has no traffic yet, nor does an index it made on one (the catalog
      // may hold an older index of that name, on the table the file dropped).
      'CREATE TABLE audit (id int);\nALTER TABLE audit ADD COLUMN at date;\nUPDATE audit SET at = now();',
      'DROP TABLE audit;\nCREATE TABLE audit (id int);\nCREATE INDEX audit_id ON audit (id);\nDROP INDEX audit_id;\nINSERT INTO audit SELECT 1 FROM users;',
    ])('not: %s', async (sql) => {
      expect((await heldOf(sql)).every((hold) => hold === null)).toBe(true);
    });

    it("says a DROP INDEX's lock on the table of the index, which the catalog tells, and counts that table's rows", async () => {
      const name = '20990101000000_lower_slugs';
      const { said, rowsOf } = await holdsSaidByDryRun(
        name,
        'CREATE INDEX users_created_at_brin ON users USING brin (created_at); ' +
          "INSERT INTO users (email, password_hash, display_name, slug) SELECT 'u' || i || '@example.org', 'h', 'U', 'u-' || i FROM generate_series(1, 30) i; ANALYZE users",
        'DROP INDEX users_created_at_brin;\nUPDATE users SET slug = lower(slug);\n',
      );
      const users = await rowsOf('users');
      expect(said).toEqual([
        `${name}.up.sql:2: UPDATE holds ACCESS EXCLUSIVE on users (the table of the index users_created_at_brin) (about ${users} rows) while it ${underLock(1, 'DROP INDEX')}: ` +
          "the table's queries wait for the whole statement, and past the services' lock_timeout they fail. Unless that is meant " +
          '(a maintenance window), write it in steps that hold the lock briefly (README: A migration that meets a long transaction)',
      ]);
    });

    it('are said before anything is applied, with the row count of the table held', async () => {
      const name = '20990101000000_add_theme';
      const { said, rowsOf } = await holdsSaidByDryRun(
        name,
        "INSERT INTO users (email, password_hash, display_name, slug) SELECT 'u' || i || '@example.org', 'h', 'U', 'u-' || i FROM generate_series(1, 40) i; ANALYZE users",
        "ALTER TABLE users ADD COLUMN theme text;\nUPDATE users SET theme = 'light';\n",
      );
      const users = await rowsOf('users');
      expect(said).toEqual([
        `${name}.up.sql:2: UPDATE holds ACCESS EXCLUSIVE on users (about ${users} rows) while it ${underLock(1, 'ALTER TABLE')}: ` +
          "the table's queries wait for the whole statement, and past the services' lock_timeout they fail. Unless that is meant " +
          '(a maintenance window), write it in steps that hold the lock briefly (README: A migration that meets a long transaction)',
      ]);
    });
  });

  // The README's steps for a NOT NULL column: a CHECK … NOT VALID, VALIDATE, then SET NOT NULL,
  // which the validated CHECK spares its scan: warned about all the same, the warnings would
  // teach that they may be ignored.
  it("says SET NOT NULL's scan only where no validated CHECK (column IS NOT NULL) proves it", async () => {
    const name = '20990101000000_not_null';
    const { said } = await holdsSaidByDryRun(
      name,
      'CREATE TABLE proven (n int, m int); CREATE TABLE unproven (n int); INSERT INTO proven SELECT i, i FROM generate_series(1, 60) i; ' +
        'INSERT INTO unproven SELECT i FROM generate_series(1, 60) i; ' +
        'CREATE TABLE proven_here (n int, m int); INSERT INTO proven_here SELECT i, i FROM generate_series(1, 60) i; ANALYZE proven, unproven, proven_here; ' +
        'ALTER TABLE proven ADD CONSTRAINT proven_n_not_null CHECK (n IS NOT NULL) NOT VALID; ALTER TABLE proven VALIDATE CONSTRAINT proven_n_not_null; ' +
        'ALTER TABLE unproven ADD CONSTRAINT unproven_n_not_null CHECK (n IS NOT NULL) NOT VALID; ' +
        'ALTER TABLE proven_here ADD CONSTRAINT proven_here_n_not_null CHECK (n IS NOT NULL) NOT VALID; ' +
        'ALTER TABLE proven_here ADD CONSTRAINT proven_here_m_positive CHECK (m > 0) NOT VALID',
      'ALTER TABLE proven ALTER COLUMN n SET NOT NULL;\nALTER TABLE unproven ALTER COLUMN n SET NOT NULL;\n' +
        // Beside other work, the statement scans all the same.
        'ALTER TABLE proven ALTER COLUMN n SET NOT NULL, ALTER COLUMN m SET NOT NULL;\nALTER TABLE proven ALTER COLUMN n SET NOT NULL, ADD CONSTRAINT m_positive CHECK (m > 0);\n' +
        // The README's steps in one file: validated by the statement before, not in the catalog
        // yet; another CHECK validated proves nothing of n (nor of m).
        'ALTER TABLE proven_here VALIDATE CONSTRAINT proven_here_n_not_null;\nALTER TABLE proven_here VALIDATE CONSTRAINT proven_here_m_positive;\n' +
        'ALTER TABLE proven_here ALTER COLUMN n SET NOT NULL;\nALTER TABLE proven_here ALTER COLUMN m SET NOT NULL;\n',
    );
    expect(said.map((line) => line.split(' while ')[0])).toEqual([
      `${name}.up.sql:2: ALTER TABLE holds ACCESS EXCLUSIVE on unproven (about 60 rows)`,
      `${name}.up.sql:3: ALTER TABLE holds ACCESS EXCLUSIVE on proven (about 60 rows)`,
      `${name}.up.sql:4: ALTER TABLE holds ACCESS EXCLUSIVE on proven (about 60 rows)`,
      `${name}.up.sql:8: ALTER TABLE holds ACCESS EXCLUSIVE on proven_here (about 60 rows)`,
    ]);
  });

  it('are said before anything is applied, on a table with rows only, and by a dry run too', async ({ onTestFinished }) => {
    const { database, migrationsDir, remove } = await createMigrationSandbox();
    onTestFinished(remove);
    await migrate({ databaseUrl: database.url, migrationsDir });
    const name = '20990101000000_check_emails';
    await writeMigration(
      migrationsDir,
      name,
      'ALTER TABLE users ADD CONSTRAINT users_email_long CHECK (length(email) > 3);\n' +
        'ALTER TABLE phrases ADD CONSTRAINT phrases_text_long CHECK (length(phrase_text) > 0);\n' +
        'ALTER TABLE events ADD CONSTRAINT events_n CHECK (n > 0);\n',
      'ALTER TABLE users DROP CONSTRAINT users_email_long;\nALTER TABLE phrases DROP CONSTRAINT phrases_text_long;\n',
    );
    const users = await withClient(database.url, async (client) => {
      await client.query("INSERT INTO users (email, password_hash, display_name, slug) SELECT 'u' || i || '@example.org', 'h', 'U', 'u-' || i FROM generate_series(1, 50) i");
      await client.query('TRUNCATE phrases CASCADE');
      // A partitioned table's rows are its partitions', which alone autovacuum counts.
      await client.query("CREATE TABLE events (at date, n int) PARTITION BY RANGE (at); CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')");
      await client.query("INSERT INTO events SELECT date '2025-01-01' + i % 300, i FROM generate_series(1, 200) i");
      await client.query('ANALYZE users, phrases, events_2025');
      return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n;
    });
    const said = (warnings: string[]) => warnings.filter((line) => line.includes(' holds '));

    const planned: string[] = [];
    await migrate({ databaseUrl: database.url, migrationsDir, dryRun: true, warn: (line) => planned.push(line) });
    const applied: string[] = [];
    await migrate({ databaseUrl: database.url, migrationsDir, warn: (line) => applied.push(line) });

    const rest =
      "the table's queries wait for the whole statement, and past the services' lock_timeout they fail. Unless that is meant " +
      '(a maintenance window), write it in steps that hold the lock briefly (README: A migration that meets a long transaction)';
    const expected = [
      `${name}.up.sql:1: ALTER TABLE holds ACCESS EXCLUSIVE on users (about ${users} rows) while it scans every row (a CHECK without NOT VALID): ${rest}`,
      `${name}.up.sql:3: ALTER TABLE holds ACCESS EXCLUSIVE on events (about 200 rows) while it scans every row (a CHECK without NOT VALID): ${rest}`,
    ];
    expect(said(planned)).toEqual(expected);
    expect(said(applied)).toEqual(expected);
  });
});
