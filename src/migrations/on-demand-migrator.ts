import type * as Migrator from './migrator.js';

// The migrator and what only it needs (Umzug and its dependencies, PostgreSQL's parser compiled
// to WebAssembly) load on the first call: a service that imports the package for its queries
// never loads them, and starts as fast as Kysely and pg alone.
let loading: Promise<typeof Migrator> | undefined;
const migrator = (): Promise<typeof Migrator> => (loading ??= import('./migrator.js'));

/**
 * Applies every pending migration, or those up to and including `to`; with `dryRun: true`
 * lists what would run and changes nothing. Loads the migrator on first use (see
 * `migrate` in src/migrations/migrator.ts for the whole contract).
 *
 * @example
 * const applied = await migrate({ log: console.log }) // MIGRATION_DATABASE_URL, else DATABASE_URL
 * const plan = await migrate({ dryRun: true }) // [{ name, file, checksum, transactional }, …]
 */
export const migrate = (async (options?: Migrator.MigratorOptions & { to?: string; dryRun?: boolean }) =>
  (await migrator()).migrate(options as Parameters<typeof Migrator.migrate>[0])) as typeof Migrator.migrate;

/**
 * Reverts the last applied migration, or every one back to and including `to` (`to: 0`: all).
 * Loads the migrator on first use.
 *
 * @example await migrateDown({ databaseUrl, to: '20250914134654_add_refresh_tokens_and_user_active' })
 */
export const migrateDown: typeof Migrator.migrateDown = async (options) => (await migrator()).migrateDown(options);

/**
 * Lists every migration with its state: applied, pending, changed or missing. Reads only.
 * Loads the migrator on first use.
 *
 * @example (await migrationStatus({ databaseUrl })).filter((m) => m.state === 'pending')
 */
export const migrationStatus: typeof Migrator.migrationStatus = async (options) => (await migrator()).migrationStatus(options);
