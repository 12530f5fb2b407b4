import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from '../../generated/db.js';
import { createDb } from '../../src/db/create-db.js';
import type { DbConfig } from '../../src/db/db-config.js';
import { prepareQuery } from '../../src/db/prepared-query.js';

/** A statement prepareQuery builds, small enough to read in pg_prepared_statements. */
export const displayNameById = prepareQuery((db, p: { id: string }) =>
  db.selectFrom('users').select('display_name').where('id', '=', p.id).where('active', '=', true),
);

export interface PreparedStatement {
  name: string;
  statement: string;
  executions: number;
}

/** The statements the connection of `db` holds prepared; `db` must have one connection. */
export async function preparedOn(db: Kysely<DB>): Promise<PreparedStatement[]> {
  const { rows } = await sql<PreparedStatement>`
    SELECT name, statement, (generic_plans + custom_plans)::int AS executions
    FROM pg_prepared_statements ORDER BY prepare_time, name`.execute(db);
  return rows;
}

/** A `db` of one connection, opened on first use, whose pool errors go to `poolErrors`. */
export function singleConnectionDb(url: string, config: Partial<DbConfig> = {}, poolErrors: string[] = []): Kysely<DB> {
  return createDb(
    { databaseUrl: url, maxConnections: 1, minConnections: 0, ...config },
    { onPoolError: (message) => poolErrors.push(message) },
  );
}

/**
 * Runs `work` once on each of the `count` connections of `db` (whose pool holds exactly that
 * many): `count` transactions at once, each kept open until all have run, so no two share one.
 */
export async function onEachConnection<T>(db: Kysely<DB>, count: number, work: (trx: Transaction<DB>) => Promise<T>): Promise<T[]> {
  let arrived = 0;
  let allThere!: () => void;
  const barrier = new Promise<void>((resolve) => (allThere = resolve));
  return Promise.all(
    Array.from({ length: count }, () =>
      db.transaction().execute(async (trx) => {
        const result = await work(trx);
        if (++arrived === count) allThere();
        await barrier;
        return result;
      }),
    ),
  );
}

/**
 * The names of the statements the connection of `trx` holds prepared, but for a pooler probe's
 * own: behind a pooler that loses statements, traffic during the probe may send the probe's
 * Close to another server connection and leave its `kw_probe_…` statement behind.
 */
export const preparedNames = async (trx: Kysely<DB>) =>
  (await sql<{ name: string }>`SELECT name FROM pg_prepared_statements WHERE name NOT LIKE 'kw\\_probe\\_%' ORDER BY name`.execute(trx)).rows.map(
    (row) => row.name,
  );

/**
 * `workers` callers run `work` in a loop; once each has done it `before` times, `change` runs
 * (from another session), and each caller goes on for `after` calls more. Returns every error
 * a call met, in order.
 */
export async function trafficAround(
  work: () => Promise<unknown>,
  change: () => Promise<void>,
  { workers = 3, before = 3, after = 6 } = {},
): Promise<unknown[]> {
  const errors: unknown[] = [];
  let warm = 0;
  let changed = false;
  let allWarm!: () => void;
  const changing = new Promise<void>((resolve) => (allWarm = resolve)).then(change).then(() => {
    changed = true;
  });
  await Promise.all([
    changing,
    ...Array.from({ length: workers }, async () => {
      let calls = 0;
      let callsAfter = 0;
      while (callsAfter < after) {
        const afterChange = changed;
        await work().catch((error: unknown) => errors.push(error));
        if (++calls === before && ++warm === workers) allWarm();
        if (afterChange) callsAfter++;
      }
    }),
  ]);
  return errors;
}

/** The SQLSTATE (or code) of each error, the mapped ones' by their cause. */
export const codesOf = (errors: unknown[]) =>
  errors.map((error) => (error as { cause?: { code?: string }; code?: string }).cause?.code ?? (error as { code?: string }).code);
