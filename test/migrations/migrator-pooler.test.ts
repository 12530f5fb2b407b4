import { describe, expect, inject, it } from 'vitest';
import { listMigrationFiles } from '../../src/migrations/migration-files.js';
import { defaultMigrationsDir } from '../../src/migrations/migrator.js';
import { withClient } from '../../src/db/with-client.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';
import { pgBouncerPath } from '../support/pgbouncer.js';
import { toolsAvailable } from '../support/required-tools.js';
import { runCli } from '../support/run-cli.js';
import { createTestDatabase } from '../support/test-database.js';

describe.skipIf(!toolsAvailable([pgBouncerPath], 'the migrations-through-PgBouncer tests'))('migrations through PgBouncer in transaction mode', () => {
  it.each([1, 2, 3])(
    'round %i: 8 `migrate` processes started together on an empty database all exit 0 and apply each migration once',
    async () => {
      const names = (await listMigrationFiles(defaultMigrationsDir())).map((file) => file.name);
      const database = await createTestDatabase({ empty: true });
      try {
        const throughPooler = databaseUrlWith(inject('poolerUrl'), database.name);
        expect(new URL(throughPooler).port).not.toBe(new URL(database.url).port);

        // A bounded lock wait turns a hang (the old session lock behind a pooler) into a failure.
        const results = await Promise.all(
          Array.from({ length: 8 }, () =>
            runCli('migrate', [], { MIGRATION_DATABASE_URL: throughPooler, DATABASE_URL: '', MIGRATION_LOCK_TIMEOUT: '20' }),
          ),
        );

        for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0 });
        const applyLines = results.flatMap((result) => result.stdout.split('\n').filter((line) => line.startsWith('applied ')));
        expect(applyLines.map((line) => line.split(' ')[1]).sort()).toEqual(names);
        const recorded = await withClient(database.url, async (client) =>
          (await client.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name')).rows.map((row) => row.name),
        );
        expect(recorded).toEqual(names);
      } finally {
        await database.drop();
      }
    },
  );
});
