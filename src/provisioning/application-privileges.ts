/** A kind of object in `public` that the application role holds privileges on. */
export type ApplicationObjectKind = 'schema' | 'tables' | 'migrationsRecord' | 'sequences' | 'routines' | 'types';

/**
 * What the application role holds in `public`, by kind of object, as PostgreSQL names the
 * privileges: the rows of tables and views (never TRUNCATE, REFERENCES, TRIGGER or MAINTAIN),
 * only reading the migrations record (only the owner records migrations), the sequences
 * behind defaults (never UPDATE, which sets them), the routines, and USAGE on the schema
 * (never CREATE) and on types.
 *
 * One table for the three that must agree: the release step grants this (`grantAppRole`; all
 * but `types`, which PostgreSQL gives PUBLIC), a backup may grant the role no more (the
 * restore's statement allow-list), and the restore's catalog check before COMMIT refuses
 * anything beyond it (`excessRestoredPrivileges`).
 *
 * @example
 * applicationPrivileges.tables // ['SELECT', 'INSERT', 'UPDATE', 'DELETE']
 */
export const applicationPrivileges: Readonly<Record<ApplicationObjectKind, readonly string[]>> = {
  schema: ['USAGE'],
  tables: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
  migrationsRecord: ['SELECT'],
  sequences: ['USAGE', 'SELECT'],
  routines: ['EXECUTE'],
  // PostgreSQL gives PUBLIC USAGE on types already; a backup may name the role as well.
  types: ['USAGE'],
};

// The privileges PostgreSQL has on one column; a table's others (DELETE, TRUNCATE, …) exist
// only on the whole table.
const columnPrivileges: readonly string[] = ['SELECT', 'INSERT', 'UPDATE', 'REFERENCES'];

/**
 * Those of `privileges` (a table's) that a column can carry: the column grants that give no
 * more than the table's.
 *
 * @example
 * onColumns(applicationPrivileges.tables) // ['SELECT', 'INSERT', 'UPDATE']
 */
export function onColumns(privileges: readonly string[]): string[] {
  return privileges.filter((privilege) => columnPrivileges.includes(privilege));
}
