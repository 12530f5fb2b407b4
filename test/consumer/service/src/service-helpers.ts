// A service's own module of helpers over the package, compiled (never run) with declarations
// and exactOptionalPropertyTypes on (tsconfig.json):
// - the compiler writes each inferred type by a name it can import from the package's entries,
//   or refuses the module (TS2742, "cannot be named without a reference to …/dist/src/…"): so
//   every type that the public functions take or give must be exported there;
// - a service passes what it has, an environment variable or a request's field, `undefined`
//   when absent, to the package's optional fields: each takes `undefined` as left out, and is
//   typed so.
import { type Kysely } from 'kysely';
import {
  createDb,
  incidentTimers,
  migrate,
  migrationStatus,
  phrases,
  phraseSuggestions,
  poolOf,
  refreshTokens,
  users,
  withTimeouts,
  type CamelCasedDB,
  type DB,
  type DbConfigInput,
} from '@kennwilliamson/db';
import {
  backupDatabase,
  backupSettings,
  downloadBackup,
  ensureAppRole,
  ensureDatabase,
  provisionAppRole,
  provisionDatabase,
  restoreDatabase,
  verifyBackupFile,
  type BackupGrantees,
  type DatabaseTarget,
  type FindPgToolOptions,
  type LoginRoleChange,
  type PgTool,
  type RestoreOwner,
  type RestoreSession,
  type SshTarget,
  type StatementBounds,
  type VerifyBackupFileOptions,
} from '@kennwilliamson/db/operations';

const never = <T>(): T => undefined as T;

export const makeDb = (config: DbConfigInput) => createDb(config);
export const poolStats = (db: ReturnType<typeof createDb>) => poolOf(db).statementNaming();
export const bounded = (db: ReturnType<typeof createDb>) => withTimeouts(db, { statementTimeout: '1s' }, async () => 1);
export const makeAppRole = () => provisionAppRole(never());
export const keepAppRole = () => ensureAppRole(never());
export const makeDatabase = () => provisionDatabase(never());
export const keepDatabase = () => ensureDatabase(never(), never());
export const backUp = () => backupDatabase(never());
export const settings = () => backupSettings({});
export const check = () => verifyBackupFile('x.dump', never<VerifyBackupFileOptions>());
export const restore = () => restoreDatabase(never());
export const download = () => downloadBackup(never());

// And a service's code may name what it passes and keeps.
export interface ServiceOperations {
  owner: RestoreOwner;
  session: RestoreSession;
  grantees: BackupGrantees;
  tools: FindPgToolOptions;
  pgRestore: PgTool;
  target: DatabaseTarget;
  host: SshTarget;
  bounds: StatementBounds;
  change: LoginRoleChange;
}

declare const env: Record<string, string | undefined>;
declare const body: { limit?: number; offset?: number; search?: string; reason?: string; userAgent?: string; excludeUserId?: string };
const maybe = <T>(): T | undefined => undefined;

export async function everyOptionalField(db: Kysely<DB>): Promise<void> {
  const own = createDb({ databaseUrl: env.DATABASE_URL!, applicationName: env.APP_NAME, statementTimeoutMs: maybe<number>() }, { log: maybe(), onPoolError: maybe() });
  await poolOf(own).ready({ timeoutMs: maybe<number>() });
  await withTimeouts(db, { statementTimeout: env.TIMEOUT, lockTimeout: maybe<string>() }, async () => undefined);

  await incidentTimers.create(db, { userId: 'u', resetAt: maybe<Date>(), notes: body.reason });
  await incidentTimers.listForUser(db, 'u', { limit: body.limit, offset: body.offset });
  await incidentTimers.update(db, { id: 't', userId: 'u' }, { notes: maybe<string>(), resetAt: maybe<Date>() });
  await phrases.listForUser(db, 'u', { limit: body.limit, search: body.search });
  await phrases.list(db, 'admin', { search: body.search, includeInactive: maybe<boolean>() });
  await phrases.update(db, { phraseId: 'p', adminId: 'a' }, { text: body.search, active: maybe<boolean>() });
  await phraseSuggestions.listPending(db, 'admin', { limit: body.limit });
  await phraseSuggestions.approve(db, { suggestionId: 's', adminId: 'a', reason: body.reason });
  await users.updateProfile(db, 'u', { displayName: maybe<string>(), slug: maybe<string>() });
  await users.updatePassword(db, 'u', 'hash', { keepFamilyId: maybe<string>() });
  await users.isSlugAvailable(db, 'slug', { excludeUserId: body.excludeUserId });
  await users.grantRole(db, 'u', 'admin', { grantedBy: maybe<string>() });
  refreshTokens.configure({ slidingTtlSeconds: maybe<number>(), reuseGraceSeconds: maybe<number>() });
  await refreshTokens.issue(db, { userId: 'u', deviceInfo: { userAgent: body.userAgent }, slidingTtlSeconds: maybe<number>() });
  await refreshTokens.rotate(db, 'token', { deviceInfo: maybe(), reuseGraceSeconds: maybe<number>() });
  await refreshTokens.purgeExpired(db, { batchSize: maybe<number>() });

  await migrate({ databaseUrl: env.MIGRATION_DATABASE_URL, migrationsDir: maybe<string>(), lockWait: { totalMs: maybe<number>() } });
  await migrationStatus({ databaseUrl: env.MIGRATION_DATABASE_URL });

  await backupDatabase({ databaseUrl: env.DATABASE_URL!, backupDir: 'backups', environment: 'production', keep: 7, stallTimeoutMs: maybe<number>(), log: maybe() });
  const backup = await verifyBackupFile('x.dump', { database: maybe<string>(), stallTimeoutMs: maybe<number>(), signal: maybe<AbortSignal>() });
  await restoreDatabase({ databaseUrl: env.DATABASE_URL!, backup, owner: { user: env.DB_OWNER_USER, password: env.DB_OWNER_PASSWORD }, appRole: env.DB_APP_USER, lockTimeoutMs: maybe<number>() });
  await downloadBackup({ host: 'backups.example.org', file: 'x.dump', backupDir: 'backups', user: env.BACKUP_SSH_USER, port: maybe<number>(), key: env.BACKUP_SSH_KEY });
  await ensureDatabase(env.ADMIN_DATABASE_URL!, { owner: env.DB_OWNER_USER });
  await provisionDatabase({ adminUrl: env.ADMIN_DATABASE_URL!, owner: { user: 'owner', password: 'secret' }, log: maybe(), lockTimeoutMs: maybe<number>(), warn: maybe() });
  await provisionAppRole({ adminUrl: env.ADMIN_DATABASE_URL!, user: 'app', password: 'secret', statementBounds: maybe() });
  await ensureAppRole({ databaseUrl: env.DATABASE_URL!, user: 'app', lockTimeoutMs: maybe<number>() });
}

// withTimeouts given a transaction the service holds, of each kind: `work` gets that
// transaction's type (from a transaction alone, TS2345 named an index signature of our tables).
export async function timeoutsInTransactions(db: Kysely<DB>, camel: Kysely<CamelCasedDB>, wide: Kysely<DB & { audit_log: { id: number } }>): Promise<void> {
  await db.transaction().execute((trx) => withTimeouts(trx, { lockTimeout: '1s' }, (t) => users.setActive(t, 'u', false)));
  await camel.transaction().execute((trx) => withTimeouts(trx, {}, (t) => users.findById(t, 'u')));
  await wide.transaction().execute((trx) => withTimeouts(trx, {}, (t) => users.findById(t, 'u')));
  const controlled = await db.startTransaction().execute();
  await withTimeouts(controlled, {}, (t) => users.findById(t, 'u'));
}
