import { defaultRemoteBackupDir, downloadBackup } from '../operations/download-backup.js';
import { backupSettings } from '../operations/backup-settings.js';
import { ConfigError } from '../errors.js';
import { interruptSignal } from './interrupt-signal.js';
import { runCli } from './run-cli.js';

const usage = `Usage: npm run db:download-backup -- HOST FILE [--key PATH] [--user NAME] [--port N] [--remote-dir DIR]
       (or scripts/download-backup.sh HOST FILE …)

Copies the backup FILE (and FILE.sha256, when the host has one) from the backup folder on
HOST into BACKUP_DIR over SSH: into FILE.part first, checked against the remote size and
checksum, then renamed. HOST 'localhost' copies from the folder on this machine instead.

SSH never prompts (BatchMode) and checks the host key strictly: a host that is not in
known_hosts is refused, not trusted on first use. Add it once after checking its
fingerprint: ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts. HOST may be user@host or an
alias from ~/.ssh/config.

Options (and the variables they override):
  --key PATH        private key to log in with       BACKUP_SSH_KEY
  --user NAME       remote user                      BACKUP_SSH_USER
  --port N          SSH port (default 22)            BACKUP_SSH_PORT
  --remote-dir DIR  folder on HOST                   BACKUP_REMOTE_DIR (default ${defaultRemoteBackupDir})

Environment:
  BACKUP_DIR              local folder of the backups (default ./backups)
  BACKUP_SSH_KNOWN_HOSTS  known_hosts file to use instead of ~/.ssh/known_hosts
`;

const valueOptions = new Map([
  ['--key', 'BACKUP_SSH_KEY'],
  ['--user', 'BACKUP_SSH_USER'],
  ['--port', 'BACKUP_SSH_PORT'],
  ['--remote-dir', 'BACKUP_REMOTE_DIR'],
]);

runCli(async (args) => {
  if (args.includes('--help') || args.includes('-h')) return void console.log(usage);
  const values: Record<string, string | undefined> = {};
  for (const variable of valueOptions.values()) values[variable] = process.env[variable]?.trim() || undefined;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [name, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    const variable = valueOptions.get(name);
    if (variable) {
      const value = inline ?? args[++i];
      if (!value) throw new Error(`${name} needs a value\n\n${usage}`);
      values[variable] = value;
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option '${arg}'\n\n${usage}`);
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== 2) throw new Error(`expected HOST and FILE\n\n${usage}`);
  const [host, file] = positional as [string, string];

  const rawPort = values.BACKUP_SSH_PORT;
  const port = rawPort === undefined ? undefined : Number(rawPort);
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new ConfigError('BACKUP_SSH_PORT', `the SSH port must be a number from 1 to 65535, got '${rawPort}'`);
  }
  const knownHostsFile = process.env.BACKUP_SSH_KNOWN_HOSTS?.trim();
  const result = await downloadBackup({
    host,
    file,
    backupDir: backupSettings().backupDir,
    ...(values.BACKUP_REMOTE_DIR ? { remoteDir: values.BACKUP_REMOTE_DIR } : {}),
    ...(values.BACKUP_SSH_KEY ? { key: values.BACKUP_SSH_KEY } : {}),
    ...(values.BACKUP_SSH_USER ? { user: values.BACKUP_SSH_USER } : {}),
    ...(port === undefined ? {} : { port }),
    ...(knownHostsFile ? { knownHostsFile } : {}),
    log: (line) => console.error(line),
    signal: interruptSignal(),
  });
  console.log(result.file);
});
