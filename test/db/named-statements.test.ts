import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';
import { nodeEsmBundle } from '../support/node-esm-bundle.js';
import { createDb, poolOf } from '../../src/db/create-db.js';
import { withClient } from '../../src/db/with-client.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { isRetryable, PreparedStatementError } from '../../src/errors.js';
import { phraseSuggestions, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import {
  codesOf,
  displayNameById,
  onEachConnection,
  preparedNames,
  preparedOn,
  singleConnectionDb,
  trafficAround,
} from '../support/prepared-statements.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();

describe('named statements on a direct connection', () => {
  // Node's --disallow-code-generation-from-strings is a common hardening of a service: the rows
  // of a named statement are then built without compiling code, and a failure to build them
  // would be thrown inside pg's socket handler, ending the process rather than the call.
  it('reads rows in a process that disallows code generation from strings', async () => {
    const user = await newUser(testDb.db);
    // Inside the package, where the bundle's run-time require of pg's own files resolves.
    const cache = path.join(packageRoot(), 'node_modules', '.cache');
    await mkdir(cache, { recursive: true });
    const dir = await mkdtemp(path.join(cache, 'kw-no-codegen-'));
    try {
      const script = path.join(dir, 'find.mjs');
      const src = path.join(packageRoot(), 'src');
      await build({
        ...nodeEsmBundle,
        stdin: {
          contents: `import { createDb, poolOf } from ${JSON.stringify(path.join(src, 'db', 'create-db.ts'))};
import { users } from ${JSON.stringify(path.join(src, 'index.ts'))};
const db = createDb({ databaseUrl: process.env.DATABASE_URL, minConnections: 0 });
try {
  const found = [await users.findById(db, process.env.USER_ID), await users.findById(db, process.env.USER_ID)];
  const { named } = await poolOf(db).statementNaming();
  process.stdout.write(JSON.stringify({ named, displayNames: found.map((user) => user?.displayName) }));
} finally {
  await db.destroy();
}`,
          resolveDir: src,
          loader: 'ts',
        },
        outfile: script,
      });
      const { stdout } = await promisify(execFile)(process.execPath, ['--disallow-code-generation-from-strings', script], {
        env: { ...process.env, DATABASE_URL: testDb.url, USER_ID: user.id },
        timeout: 20_000,
      });
      expect(JSON.parse(stdout)).toEqual({ named: true, displayNames: [user.displayName, user.displayName] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs a prepareQuery statement as a named statement, parsed once and bound on every call', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url);
    try {
      for (let call = 0; call < 3; call++) {
        expect((await displayNameById.execute(db, { id: user.id })).rows).toEqual([{ display_name: user.displayName }]);
      }
      const [prepared, ...others] = await preparedOn(db);
      expect(others).toEqual([]);
      expect(prepared).toMatchObject({ name: expect.stringMatching(/^kw_[0-9a-f]{24}$/), executions: 3 });
      expect(prepared!.statement).toBe('select "display_name" from "public"."users" where "id" = $1 and "active" = true');
    } finally {
      await db.destroy();
    }
  });

  it('names the statements of a transaction too: approve’s lock and update', async () => {
    const user = await newUser(testDb.db);
    const admin = await newAdmin(testDb.db);
    const db = singleConnectionDb(testDb.url);
    try {
      for (let round = 0; round < 2; round++) {
        const suggestion = await phraseSuggestions.submit(testDb.db, user.id, `Named in a transaction ${round}`);
        await phraseSuggestions.approve(db, { suggestionId: suggestion.id, adminId: admin.id });
      }
      const prepared = await preparedOn(db);
      expect(prepared.map((p) => p.executions)).toEqual([2, 2]);
      expect(prepared[0]!.statement).toMatch(/^select .* from "public"."phrase_suggestions" .* for update$/);
      expect(prepared[1]!.statement).toMatch(/update "public"."phrase_suggestions" set "status" = 'approved'/);
    } finally {
      await db.destroy();
    }
  });

  it('gives the same rows, types and counts as unnamed statements, on the first run and the later ones', async () => {
    const user = await newUser(testDb.db);
    const typed = prepareQuery((db, p: { id: string; bytes: Buffer; json: string }) =>
      db
        .selectFrom('users')
        .select([
          'id',
          'active',
          'created_at',
          sql<Buffer>`cast(${p.bytes} as bytea)`.as('bytes'),
          sql<unknown>`cast(${p.json} as jsonb)`.as('json'),
          sql<number | null>`null::int`.as('nothing'),
          sql<string>`count(*) over ()`.as('total'),
        ])
        .where('id', '=', p.id),
    );
    const rename = prepareQuery((db, p: { id: string; name: string }) =>
      db.updateTable('users').set({ display_name: p.name }).where('id', '=', p.id),
    );
    const params = { id: user.id, bytes: Buffer.from([0, 1, 254]), json: '{"a": [1, "x"]}' };
    const named = singleConnectionDb(testDb.url);
    const unnamed = singleConnectionDb(testDb.url, { preparedStatements: 'off' });
    try {
      for (let call = 0; call < 3; call++) {
        const [a, b] = [await typed.execute(named, params), await typed.execute(unnamed, params)];
        expect(a).toEqual(b);
        expect(a.rows[0]).toMatchObject({ active: true, bytes: params.bytes, json: { a: [1, 'x'] }, nothing: null, total: '1' });
        expect(a.rows[0]!.created_at).toBeInstanceOf(Date);
        expect(await rename.execute(named, { id: user.id, name: `Renamed ${call}` })).toEqual({ rows: [], numAffectedRows: 1n });
      }
      expect((await preparedOn(named)).map((p) => p.executions)).toEqual([3, 3]);
    } finally {
      await named.destroy();
      await unnamed.destroy();
    }
  });

  it('keeps the connection usable after a value pg cannot send', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    try {
      await expect(displayNameById.execute(db, { id: circular as unknown as string })).rejects.toThrow();
      expect((await displayNameById.execute(db, { id: user.id })).rows).toEqual([{ display_name: user.displayName }]);
    } finally {
      await db.destroy();
    }
  });

  it('sends nothing named with DB_PREPARED_STATEMENTS=off', async () => {
    const user = await newUser(testDb.db);
    const db = singleConnectionDb(testDb.url, { preparedStatements: 'off' });
    try {
      expect((await displayNameById.execute(db, { id: user.id })).rows).toHaveLength(1);
      expect(await users.findById(db, user.id)).toMatchObject({ id: user.id });
      expect(await preparedOn(db)).toEqual([]);
    } finally {
      await db.destroy();
    }
  });
  it('reports that it names statements because the connections reach PostgreSQL itself', async () => {
    const db = singleConnectionDb(testDb.url);
    try {
      expect(await poolOf(db).statementNaming()).toMatchObject({ mode: 'auto', named: true, route: 'direct' });
    } finally {
      await db.destroy();
    }
  });

  it.each([
    ['DISCARD ALL', 'auto'],
    ['DEALLOCATE ALL', 'auto'],
    ['DISCARD ALL', 'on'],
    ['DEALLOCATE ALL', 'on'],
  ] as const)(
    'after %s on one connection (%s), that connection prepares its statements again and the others keep theirs: nothing fails, naming goes on',
    async (command, mode) => {
      const user = await newUser(testDb.db);
      const poolErrors: string[] = [];
      const db = createDb(
        { databaseUrl: testDb.url, maxConnections: 2, minConnections: 0, preparedStatements: mode },
        { onPoolError: (m) => poolErrors.push(m) },
      );
      try {
        // Both connections prepare the statement (in transactions, so that they are two).
        await onEachConnection(db, 2, (trx) => displayNameById.execute(trx, { id: user.id }));
        const [name] = await preparedNames(db);
        // One of them loses every statement it prepared; pg still believes it holds them.
        await sql.raw(command).execute(db);

        // Calls on both connections at once: the emptied one meets 26000 and retries.
        for (let round = 0; round < 3; round++) {
          const results = await Promise.all([1, 2].map(() => displayNameById.execute(db, { id: user.id })));
          expect(results.map((result) => result.rows)).toEqual([[{ display_name: user.displayName }], [{ display_name: user.displayName }]]);
        }
        expect(poolErrors).toEqual([]);
        expect(await onEachConnection(db, 2, preparedNames)).toEqual([[name], [name]]);
      } finally {
        await db.destroy();
      }
    },
  );

  it('in a transaction, a statement the connection lost fails that transaction with a retryable PreparedStatementError, and the next one runs named', async () => {
    const user = await newUser(testDb.db);
    const poolErrors: string[] = [];
    const db = singleConnectionDb(testDb.url, {}, poolErrors);
    try {
      await displayNameById.execute(db, { id: user.id });
      await sql`DISCARD ALL`.execute(db);
      const failed = await db
        .transaction()
        .execute((trx) => displayNameById.execute(trx, { id: user.id }))
        .catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(PreparedStatementError);
      expect(failed).toMatchObject({ sqlState: '26000' });
      expect(isRetryable(failed)).toBe(true);

      const retried = await db.transaction().execute((trx) => displayNameById.execute(trx, { id: user.id }));
      expect(retried.rows).toEqual([{ display_name: user.displayName }]);
      expect((await preparedOn(db)).map((p) => p.name)).toEqual([expect.stringMatching(/^kw_[0-9a-f]{24}$/)]);
      expect(poolErrors).toEqual([]);
    } finally {
      await db.destroy();
    }
  });

  it('a migration that changes a column’s type while traffic runs fails no call: the statement is prepared again under a new name', async () => {
    const user = await newUser(testDb.db);
    const poolErrors: string[] = [];
    const db = createDb({ databaseUrl: testDb.url, maxConnections: 3, minConnections: 0 }, { onPoolError: (m) => poolErrors.push(m) });
    try {
      const errors = await trafficAround(
        async () => expect(await users.findById(db, user.id)).toMatchObject({ displayName: user.displayName }),
        () => withClient(testDb.directUrl, async (client) => void (await client.query('ALTER TABLE users ALTER COLUMN display_name TYPE varchar(200)'))),
      );
      expect(codesOf(errors)).toEqual([]);
      expect(poolErrors).toEqual([]);
      // The connections that ran it since hold the new name, and closed the outdated one.
      const held = await onEachConnection(db, 3, preparedNames);
      const renewed = held.filter((names) => names.some((name) => /^kw_[0-9a-f]{24}_1$/.test(name)));
      expect(renewed.length).toBeGreaterThan(0);
      for (const names of renewed) expect(names).toEqual([expect.stringMatching(/^kw_[0-9a-f]{24}_1$/)]);
      // In a transaction, a connection that meets an outdated statement fails once, retryably,
      // and the whole pool switched already.
      const lone = singleConnectionDb(testDb.url);
      try {
        await users.findById(lone, user.id);
        await withClient(testDb.directUrl, (client) => client.query('ALTER TABLE users ALTER COLUMN display_name TYPE text'));
        const failed = await lone.transaction().execute((trx) => users.findById(trx, user.id)).catch((error: unknown) => error);
        expect(failed).toBeInstanceOf(PreparedStatementError);
        expect(failed).toMatchObject({ sqlState: '0A000' });
        expect(await lone.transaction().execute((trx) => users.findById(trx, user.id))).toMatchObject({ id: user.id });
      } finally {
        await lone.destroy();
      }
    } finally {
      await db.destroy();
      await withClient(testDb.directUrl, (client) => client.query('ALTER TABLE users ALTER COLUMN display_name TYPE text'));
    }
  });
});
