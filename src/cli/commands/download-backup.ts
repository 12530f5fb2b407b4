import { ConfigError } from '../../errors.js';
import { backupSettings } from '../../operations/backup/backup-settings.js';
import { defaultRemoteBackupDir } from '../../operations/download/default-remote-backup-dir.js';
import type { Command } from '../command.js';
import { interruptSignal } from '../interrupt-signal.js';
import { printLine, printNote } from '../terminal-text.js';

const usage = `Usage: kennwilliamson-db download-backup HOST FILE [--key PATH] [--user NAME] [--port N] [--remote-dir DIR]

Copies the backup FILE (and FILE.sha256, when the host has one) from the backup folder on
HOST into BACKUP_DIR over SSH: into a partial file of its own (.FILE.<host>.<pid>.<random>.part)
first, checked against the remote size and checksum, then given its name. HOST 'localhost'
copies from the folder on this machine instead.

SSH never prompts (BatchMode) and checks the host key strictly: a host that is not in
known_hosts is refused, not trusted on first use. Add it once, after comparing its
fingerprints with those its administrator reads on the host itself
(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub):
  ssh-keyscan -p PORT HOST > host-keys; ssh-keygen -lf host-keys
and only if they match: cat host-keys >> ~/.ssh/known_hosts (ssh-keyscan's output appended
unchecked trusts whoever answered). HOST may be user@host or an alias from ~/.ssh/config.

Options (and the variables they override):
  --key PATH        private key to log in with       BACKUP_SSH_KEY
  --user NAME       remote user                      BACKUP_SSH_USER
  --port N          SSH port (default 22)            BACKUP_SSH_PORT
  --remote-dir DIR  folder on HOST                   BACKUP_REMOTE_DIR (default ${defaultRemoteBackupDir})

Environment:
  BACKUP_DIR              local folder of the backups (default ./backups)
  BACKUP_SSH_KNOWN_HOSTS  known_hosts file to use instead of ~/.ssh/known_hosts
`;

/** `kennwilliamson-db download-backup`: copy a backup from a server over SSH, verified. */
export const downloadBackupCommand: Command = {
  name: 'download-backup',
  summary: 'copy a backup (and its .sha256) from a server over SSH, verified',
  usage,
  options: {
    key: { type: 'string' },
    user: { type: 'string' },
    port: { type: 'string' },
    'remote-dir': { type: 'string' },
  },
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }) {
    const [host, file] = positionals as [string, string];
    const setting = (option: string, variable: string) =>
      (values[option] as string | undefined) ?? (process.env[variable]?.trim() || undefined);
    const key = setting('key', 'BACKUP_SSH_KEY');
    const user = setting('user', 'BACKUP_SSH_USER');
    const remoteDir = setting('remote-dir', 'BACKUP_REMOTE_DIR');
    const rawPort = setting('port', 'BACKUP_SSH_PORT');
    const port = rawPort === undefined ? undefined : Number(rawPort);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
      throw new ConfigError('BACKUP_SSH_PORT', `the SSH port must be a number from 1 to 65535, got '${rawPort}'`);
    }
    const knownHostsFile = process.env.BACKUP_SSH_KNOWN_HOSTS?.trim();
    const { backupDir } = backupSettings();
    const { downloadBackup } = await import('../../operations/download/download-backup.js');
    const result = await downloadBackup({
      host,
      file,
      backupDir,
      ...(remoteDir ? { remoteDir } : {}),
      ...(key ? { key } : {}),
      ...(user ? { user } : {}),
      ...(port === undefined ? {} : { port }),
      ...(knownHostsFile ? { knownHostsFile } : {}),
      log: printNote,
      signal: interruptSignal(),
    });
    printLine(result.file);
  },
};
