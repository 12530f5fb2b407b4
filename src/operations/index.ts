// The `@kennwilliamson/db/operations` entry: what the bin's backup, restore, download-backup
// and setup commands do, for services and scripts that drive them from code. Kept apart from
// the main entry so that importing the query layer loads none of it.
export { backupDatabase, type BackupOptions, type BackupResult } from './backup/backup.js';
export type { BackupFormat } from './backup/backup-name.js';
export { backupSettings, type BackupSettings } from './backup/backup-settings.js';
export { downloadBackup, type DownloadOptions, type DownloadResult } from './download/download-backup.js';
export type { SshTarget } from './download/ssh-connection.js';
export { restoreDatabase, type RestoreOptions, type RestoreResult } from './restore/restore.js';
export type { RestoreOwner, RestoreSession } from './restore/restore-session.js';
export { verifyBackupFile, type BackupFileIdentity, type VerifiedBackup, type VerifyBackupFileOptions } from './vetting/verify-backup-file.js';
export type { BackupGrantees } from './vetting/backup-statement-allow-list.js';
export type { FindPgToolOptions, PgTool } from './pg-tools/pg-tools.js';
export { ensureAppRole, provisionAppRole, type AppRoleChange, type AppRoleOptions } from '../provisioning/app-role.js';
export type { LoginRoleChange } from '../provisioning/login-role.js';
export { provisionDatabase, type ProvisionOptions, type ProvisionResult, type RoleCredentials } from '../provisioning/provision-database.js';
export { databaseUrlAs, ensureDatabase } from '../provisioning/database-admin.js';
// Types the functions above take or give, for a service to name them (and for its compiler to,
// writing a module's declarations).
export type { StatementBounds } from '../db/db-config.js';
export type { DatabaseTarget } from '../db/database-target.js';
