import type { Command } from '../command.js';
import { backupCommand } from './backup.js';
import { downloadBackupCommand } from './download-backup.js';
import { migrateCommand } from './migrate.js';
import { restoreCommand } from './restore.js';
import { setupCommand } from './setup.js';

/** The commands of the shipped `kennwilliamson-db` bin, in the order `--help` lists them. */
export const shippedCommands: readonly Command[] = [migrateCommand, setupCommand, backupCommand, restoreCommand, downloadBackupCommand];
