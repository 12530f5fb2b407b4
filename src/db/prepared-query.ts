import {
  type Compilable,
  type CompiledQuery,
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely';
import type { DB } from '../../generated/db.js';
import { directQueryRunner } from './create-db.js';
import { inLibrarySchema, LibrarySchemaPlugin } from './library-schema.js';
import { mustRunOutsideTransactions } from './outside-transaction-statements.js';
import { registerStatement } from './statement-names.js';

/** Stands in for a parameter while the query is built once; its position is what we keep. */
class Placeholder {
  constructor(readonly name: string) {}
}

/**
 * Compiles the builder's constants (`active = true`, `status = 'approved'`, a fixed limit) into
 * the SQL as literals, and only the placeholders as `$n`. A named statement may run on a
 * generic plan, planned without its parameters' values: constants that shape the plan (a
 * partial index's predicate, a selective flag) must be in the text for the planner to see them.
 */
class PreparingCompiler extends PostgresQueryCompiler {
  protected override appendValue(value: unknown): void {
    if (typeof value === 'boolean' || value === null) this.append(String(value));
    else if (typeof value === 'number' && Number.isSafeInteger(value)) this.append(value < 0 ? `(${value})` : String(value));
    // Backslashes would depend on standard_conforming_strings: such a string stays a parameter.
    else if (typeof value === 'string' && !value.includes('\\') && !value.includes('\u0000')) this.appendStringLiteral(value);
    else super.appendValue(value);
  }
}

// A Kysely with no plugin but the library's schema and no connection, used only to compile:
// a prepared statement's SQL must not depend on which caller happened to run it first, and
// names its tables' schema (see inLibrarySchema) without a transformation per call.
const compiler = new Kysely<DB>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PreparingCompiler(),
  },
}).withPlugin(new LibrarySchemaPlugin());

type Slot = { name: string } | { value: unknown };

// Inferring the row type from the builder as a whole (rather than from `Compilable<R>` in
// the parameter's position) survives deep builders such as multi-CTE statements.
type ResultOf<Q> = Q extends Compilable<infer R> ? R : never;

/** A query built and compiled once, executed many times with new parameter values. */
export interface PreparedQuery<P, R> {
  /** Runs the query on `db` (or a transaction) with these parameter values. */
  execute(db: Kysely<DB>, params: P): Promise<QueryResult<R>>;
}

/**
 * Builds a Kysely query once and reuses its compiled SQL on every call, so hot paths keep
 * the generated types and Kysely's builder but skip building and compiling the same query
 * again (most of Kysely's cost over hand-written SQL on `pg`). The SQL is compiled on a plain
 * instance, with the builder's constants as literals and its tables' schema named; on a `db` from createDb it is sent as a
 * named (server-side prepared) statement where the pool allows it (see `preparedStatements` in
 * DbConfig), and on the root `db` (not a transaction) it runs straight on the tuned pool, past
 * Kysely's executor layers, with the same checkout, error mapping and result shape. An
 * executor with plugins or a schema (`db.withPlugin(…)`, `db.withSchema(…)`) gets Kysely's
 * normal path instead: built with its values, its tables in the library's schema still, and
 * run through its plugins. The builder may use
 * each parameter only where a value goes (`where('id', '=', p.id)`, `sql\`lower(${p.email})\``,
 * `.limit(p.limit)`), never to decide the query's shape: it runs once, with placeholders.
 *
 * @example
 * const byId = prepareQuery((db, p: { id: string }) => db.selectFrom('users').select(['id', 'email']).where('id', '=', p.id).where('active', '=', true))
 * const { rows } = await byId.execute(db, { id }) // select "id", "email" from "public"."users" where "id" = $1 and "active" = true
 */
export function prepareQuery<P extends object, Q extends Compilable<unknown>>(
  build: (db: Kysely<DB>, params: P) => Q,
  // The function whose statement must run outside any transaction (see mustRunOutsideTransactions).
  options: { outsideTransactionsOf?: string } = {},
): PreparedQuery<P, ResultOf<Q>> {
  type R = ResultOf<Q>;
  let compiled: CompiledQuery<R> | undefined;
  let slots: Slot[] = [];

  const compile = (): CompiledQuery<R> => {
    const used = new Set<string>();
    const placeholders = new Proxy({} as P, {
      get: (_, name) => {
        if (typeof name !== 'string') return undefined;
        used.add(name);
        return new Placeholder(name);
      },
    });
    const query = build(compiler, placeholders).compile() as CompiledQuery<R>;
    slots = query.parameters.map((value) => (value instanceof Placeholder ? { name: value.name } : { value }));
    const bound = new Set(slots.flatMap((slot) => ('name' in slot ? [slot.name] : [])));
    for (const name of used) {
      if (!bound.has(name)) throw new TypeError(`prepareQuery: parameter '${name}' was not used as a value`);
    }
    registerStatement(query.sql);
    if (options.outsideTransactionsOf !== undefined) mustRunOutsideTransactions(query.sql, options.outsideTransactionsOf);
    return query;
  };

  return {
    async execute(db, params) {
      if (db.getExecutor().plugins.length > 0) {
        // Plugins may rewrite the query (a schema, case conversion) and its result: let them see both.
        return db.executeQuery<R>(build(inLibrarySchema(db), params).compile() as CompiledQuery<R>);
      }
      compiled ??= compile();
      const parameters = slots.map((slot) => ('name' in slot ? params[slot.name as keyof P] : slot.value));
      const direct = directQueryRunner(db);
      return direct ? direct<R>(compiled.sql, parameters) : db.executeQuery<R>({ ...compiled, parameters });
    },
  };
}
