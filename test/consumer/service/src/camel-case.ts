// A service that wires in Kysely's CamelCasePlugin: on the package's db (`withPlugin`), on its
// own Kysely, and in its own Kysely's transactions. Every query function must return and write
// what it does on the plain db (the cases of test/support/plugin-cases.ts, copied beside this
// file), and the service's own queries are typed by CamelCasedDB.
import { isDeepStrictEqual } from 'node:util';
import { CamelCasePlugin, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import * as api from '@kennwilliamson/db';
import { type CamelCasedDB, createDb, type DB, type Executor } from '@kennwilliamson/db';
import { caseTable, exportedQueryFunctions, pluginCases, recordRun } from './plugin-cases.js';

const url = process.env.DATABASE_URL!;
const db = createDb({ databaseUrl: url });
// The service's own queries through the plugin, typed by CamelCasedDB.
const camel = db.withPlugin(new CamelCasePlugin()) as unknown as Kysely<CamelCasedDB>;
const own = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }), plugins: [new CamelCasePlugin()] });
try {
  const table = caseTable(pluginCases(api));
  const missing = exportedQueryFunctions(api).filter((name) => !table.some(([covered]) => covered === name));
  if (missing.length > 0) throw new Error(`no case for ${missing.join(', ')}`);
  const executors: Array<[string, Executor, boolean]> = [
    ['db.withPlugin(new CamelCasePlugin())', camel, false],
    ['the service’s own Kysely with CamelCasePlugin', own, false],
    ['a transaction of the service’s own Kysely', own, true],
  ];
  const differing: string[] = [];
  for (const [name, testCase] of table) {
    for (const [label, executor, inTransaction] of executors) {
      const plain = await recordRun(testCase, db, db, inTransaction);
      const plugged = await recordRun(testCase, db, executor, inTransaction);
      if (!isDeepStrictEqual(plugged, plain)) {
        differing.push(`${name} through ${label}:\n  plain:  ${JSON.stringify(plain)}\n  plugin: ${JSON.stringify(plugged)}`);
      }
    }
  }
  if (differing.length > 0) throw new Error(`${differing.length} results differ through CamelCasePlugin:\n${differing.join('\n')}`);
  const timers = await camel.selectFrom('incidentTimers').select(['id', 'resetAt', 'userId']).limit(1).execute();
  if (timers.length !== 1 || !(timers[0]!.resetAt instanceof Date)) throw new Error('the service’s own camelCased query failed');
  console.log(`CamelCasePlugin service: ok (${table.length} query functions, each the same through ${executors.length} executors with the plugin)`);
} finally {
  await own.destroy();
  await db.destroy();
}
