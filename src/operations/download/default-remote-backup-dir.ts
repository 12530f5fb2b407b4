/** The remote folder backups are read from unless told otherwise. */
export const defaultRemoteBackupDir = '/var/backups/kennwilliamson';
