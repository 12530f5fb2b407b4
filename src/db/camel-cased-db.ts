import type { DB } from '../../generated/db.js';

/** `display_name` → `displayName`, at the type level, as Kysely's CamelCasePlugin converts names. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/**
 * The database as a `Kysely` with Kysely's `CamelCasePlugin` sees it: every table and column
 * camelCased (`incidentTimers.resetAt`). For a service's own queries through the plugin; the
 * query functions take such an instance too, and give the same results as with `DB`.
 *
 * @example
 * const camel = createDb().withPlugin(new CamelCasePlugin()) as unknown as Kysely<CamelCasedDB>
 * await camel.selectFrom('incidentTimers').select(['id', 'resetAt']).where('userId', '=', userId).execute()
 */
export type CamelCasedDB = {
  [Table in keyof DB as Table extends string ? CamelCase<Table> : Table]: {
    [Column in keyof DB[Table] as Column extends string ? CamelCase<Column> : Column]: DB[Table][Column];
  };
};
