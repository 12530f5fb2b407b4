import { type Compilable, type CompiledQuery, type Kysely, type QueryResult } from 'kysely';
import type { DB } from '../../generated/db.js';
import { directQueryRunner } from './create-db.js';

/** Stands in for a parameter while the query is built once; its position is what we keep. */
class Placeholder {
  constructor(readonly name: string) {}
}

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
 * again (most of Kysely's cost over hand-written SQL on `pg`). On a `Kysely` from createDb
 * (not a transaction) the SQL runs straight on the tuned pool, past Kysely's executor
 * layers, with the same checkout, error mapping and result shape. The builder may use each
 * parameter only where a value goes (`where('id', '=', p.id)`, `sql\`lower(${p.email})\``,
 * `.limit(p.limit)`), never to decide the query's shape: it runs once, with placeholders.
 *
 * @example
 * const byId = prepareQuery((db, p: { id: string }) => db.selectFrom('users').select(['id', 'email']).where('id', '=', p.id))
 * const { rows } = await byId.execute(db, { id }) // SELECT "id", "email" FROM "users" WHERE "id" = $1
 */
export function prepareQuery<P extends object, Q extends Compilable<unknown>>(
  build: (db: Kysely<DB>, params: P) => Q,
): PreparedQuery<P, ResultOf<Q>> {
  type R = ResultOf<Q>;
  let compiled: CompiledQuery<R> | undefined;
  let slots: Slot[] = [];

  const compile = (db: Kysely<DB>): CompiledQuery<R> => {
    const used = new Set<string>();
    const placeholders = new Proxy({} as P, {
      get: (_, name) => {
        if (typeof name !== 'string') return undefined;
        used.add(name);
        return new Placeholder(name);
      },
    });
    const query = build(db, placeholders).compile() as CompiledQuery<R>;
    slots = query.parameters.map((value) => (value instanceof Placeholder ? { name: value.name } : { value }));
    const bound = new Set(slots.flatMap((slot) => ('name' in slot ? [slot.name] : [])));
    for (const name of used) {
      if (!bound.has(name)) throw new TypeError(`prepareQuery: parameter '${name}' was not used as a value`);
    }
    return query;
  };

  return {
    async execute(db, params) {
      compiled ??= compile(db);
      const parameters = slots.map((slot) => ('name' in slot ? params[slot.name as keyof P] : slot.value));
      const direct = directQueryRunner(db);
      return direct ? direct<R>(compiled.sql, parameters) : db.executeQuery<R>({ ...compiled, parameters });
    },
  };
}
