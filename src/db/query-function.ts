import type { ControlledTransaction, Kysely, Transaction } from 'kysely';
import type { DB } from '../../generated/db.js';
import { mapDatabaseError } from '../errors.js';
import type { CamelCasedDB } from './camel-cased-db.js';
import { requireExecutor } from './require-executor.js';
import { attachRowGates, rowGatesOf } from './row-gate.js';

/**
 * What a query function takes first: the root `Kysely` from createDb, a service's own
 * `Kysely<DB>`, a transaction of either, or the same typed for CamelCasePlugin
 * (`Kysely<CamelCasedDB>`), whatever plugins it carries.
 */
export type Executor = Kysely<DB> | Kysely<CamelCasedDB>;

/**
 * A `Kysely<D>` or any transaction of one, as a parameter from which TypeScript infers `D`: a
 * controlled transaction (`startTransaction()`) and its savepoints are named beside
 * `Transaction<D>`, since against `Kysely<D> | Transaction<D>` alone TypeScript inferred no `D`
 * from one of `Kysely<DB & ServiceTables>`, fell back to `DB`, and refused it.
 */
// `any`: the savepoint names a controlled transaction carries are the caller's, and any will do.
export type ExecutorOf<D> = Kysely<D> | Transaction<D> | ControlledTransaction<D, any>;

/**
 * A public query function: it takes an {@link Executor}, or a service's own `Kysely` whose
 * `DB` adds tables of its own to ours (`Kysely<DB & ServiceTables>`, camel-cased or not), and
 * its transactions.
 */
export interface QueryFunction<A extends unknown[], R> {
  <D extends DB>(db: ExecutorOf<D>, ...args: A): Promise<R>;
  <D extends CamelCasedDB>(db: ExecutorOf<D>, ...args: A): Promise<R>;
  // Last: what `Parameters<typeof users.findById>` and the like read, as before.
  (db: Executor, ...args: A): Promise<R>;
}

/**
 * The caller's executor without its plugins: the same pool, or the same transaction and
 * connection, with none of the plugins that rewrite our statements or their results.
 * A plugin that renames result keys (CamelCasePlugin, on the service's own `Kysely` or through
 * `db.withPlugin(…)`) would otherwise make the function's own reads of its rows come back
 * wrong, rename the keys inside jsonb values, or turn the names of the columns it writes.
 *
 * @example const own = withoutPlugins(db.withPlugin(new CamelCasePlugin())) // runs our SQL as written
 */
export function withoutPlugins(db: Executor): Kysely<DB> {
  requireExecutor(db);
  const own = db as unknown as Kysely<DB>;
  if (own.getExecutor().plugins.length === 0) return own;
  // The class's own method, not the one createDb gives its db's derived instances (which keep
  // the pool reachable and closable, at about 1.5 µs a call): this instance only runs the
  // function's statements, on every call.
  const stripped = (Object.getPrototypeOf(own) as Kysely<DB>).withoutPlugins.call(own);
  // It reaches the same pool, through the same row gates.
  const gates = rowGatesOf(own);
  if (gates !== undefined) attachRowGates(stripped, gates);
  return stripped;
}

/**
 * Makes a public query function of `run`: it is given the caller's executor without plugins
 * (see {@link withoutPlugins}), so it returns the same whatever plugins the caller's `Kysely`
 * carries, and every error it throws is a typed `DbError`, mapped by SQLSTATE and scrubbed
 * (see mapDatabaseError) also on a `Kysely` that createDb did not make. Errors of a `Kysely`
 * from createDb are mapped already; mapping a `DbError` again returns it unchanged.
 *
 * @example
 * export const findById = queryFunction(async function findById(db, userId: string) {
 *   return (await byId.execute(db, { id: requireUuid('userId', userId) })).rows[0] ?? null
 * })
 */
export function queryFunction<A extends unknown[], R>(
  run: (db: Kysely<DB>, ...args: A) => Promise<R>,
): QueryFunction<A, R> {
  const guarded = async (db: Executor, ...args: A): Promise<R> => {
    try {
      return await run(withoutPlugins(db), ...args);
    } catch (error) {
      throw mapDatabaseError(error);
    }
  };
  Object.defineProperty(guarded, 'name', { value: run.name });
  return guarded as QueryFunction<A, R>;
}
