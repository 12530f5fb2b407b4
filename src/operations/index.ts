// The `@kennwilliamson/db/operations` entry: what the bin's backup, restore, download-backup
// and setup commands do, for services and scripts that drive them from code. Kept apart from
// the main entry so that importing the query layer loads none of it.
export { backupDatabase, type BackupOptions, type BackupResult } from './backup/backup.js';
export type { BackupFormat } from './backup/backup-name.js';
export { backupSettings, type BackupSettings } from './backup/backup-settings.js';
export { downloadBackup, type DownloadOptions, type DownloadResult } from './download/download-backup.js';
export { restoreDatabase, type RestoreOptions, type RestoreResult } from './restore/restore.js';
export { verifyBackupFile, type VerifiedBackup } from './vetting/verify-backup-file.js';
export { ensureAppRole, provisionAppRole, type AppRoleChange, type AppRoleOptions } from '../provisioning/app-role.js';
export { provisionDatabase, type ProvisionOptions, type ProvisionResult, type RoleCredentials } from '../provisioning/provision-database.js';
export { databaseUrlAs, ensureDatabase } from '../provisioning/database-admin.js';
