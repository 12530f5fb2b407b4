// The public API of @kennwilliamson/db. Nothing else is exported.
export type { DB } from '../generated/db.js';
export type { CamelCasedDB } from './db/camel-cased-db.js';
export type { Executor } from './db/query-function.js';
export { createDb, poolOf, type CreateDbOptions } from './db/create-db.js';
export { loadDbConfig, type DbConfig, type PreparedStatementsMode } from './db/db-config.js';
export type { TunedPool, PoolErrorListener } from './db/tuned-pool.js';
export type { StatementNamingReport, ConnectionRoute } from './db/statement-naming.js';
export { withSavepoint } from './db/with-savepoint.js';
export { withTimeouts, type StatementTimeouts } from './db/with-timeouts.js';
export * from './errors.js';
export { migrate, migrateDown, migrationStatus } from './migrations/on-demand-migrator.js';
export type { MigrationRun, MigrationState, MigratorOptions, PlannedMigration } from './migrations/migrator.js';
export type { LockWaitPolicy } from './migrations/lock-retries.js';
export * as users from './queries/users.js';
export * as incidentTimers from './queries/incident-timers.js';
export * as refreshTokens from './queries/refresh-tokens.js';
export * as phrases from './queries/phrases.js';
export * as phraseSuggestions from './queries/phrase-suggestions.js';
