// A service's own module of helpers over the package, compiled with declarations on
// (tsconfig.json): the compiler writes each inferred type by a name it can import from the
// package's entries, or refuses the module (TS2742, "cannot be named without a reference to
// …/dist/src/…"). So every type that the public functions take or give must be exported there.
// Compiled only; never run.
import { createDb, poolOf, withTimeouts, type DbConfig } from '@kennwilliamson/db';
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

export const makeDb = (config: Partial<DbConfig> & { databaseUrl: string }) => createDb(config);
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
