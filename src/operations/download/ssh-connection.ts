import { DownloadError } from '../../errors.js';

/** How to reach a host over SSH. Unset fields fall back to ssh's own configuration (~/.ssh/config). */
export interface SshTarget {
  /** Host name or address, optionally `user@host`. */
  host: string;
  port?: number | undefined;
  user?: string | undefined;
  /** Private key file (`ssh -i`); when set, only this key is offered. */
  key?: string | undefined;
  /** known_hosts file to check the host key against, instead of ~/.ssh/known_hosts. */
  knownHostsFile?: string | undefined;
  /** Seconds to wait for the TCP connection and the SSH handshake (default 10). */
  connectTimeoutSeconds?: number | undefined;
}

/**
 * The `ssh` arguments that run `remoteCommand` on the target, never waiting for a person:
 * BatchMode (no password or passphrase prompt), strict host key checking (an unknown or
 * changed host key fails instead of being trusted on first use: a backup holds password
 * hashes, so the host must be the one you think), a connect timeout, and keepalives that end
 * a session whose connection died within about a minute. They do not end a live session whose
 * remote command stopped writing (sshd answers them itself): bounding that is the caller's.
 *
 * @example
 * spawn('ssh', sshArguments({ host: 'backup.example.org', key: '~/.ssh/backups' }, "cat -- '/var/backups/kennwilliamson/x.dump'"))
 */
export function sshArguments(target: SshTarget, remoteCommand: string): string[] {
  if (!target.host || target.host.startsWith('-')) throw new DownloadError('connect', `'${target.host}' is not a host name`);
  const args = [
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `ConnectTimeout=${target.connectTimeoutSeconds ?? 10}`,
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=4',
    '-o', 'LogLevel=ERROR',
    '-T',
  ];
  if (target.knownHostsFile) args.push('-o', `UserKnownHostsFile=${target.knownHostsFile}`);
  if (target.key) args.push('-i', target.key, '-o', 'IdentitiesOnly=yes');
  if (target.port !== undefined) args.push('-p', String(target.port));
  if (target.user) args.push('-l', target.user);
  args.push('--', target.host, remoteCommand);
  return args;
}

/**
 * Turns ssh's exit (255 with its message on stderr) into a {@link DownloadError} that says
 * what went wrong and what to do, keeping ssh's own words at the end.
 *
 * @example
 * throw sshFailure('Host key verification failed.', { host: '10.0.0.5', port: 22 })
 * // DownloadError(host-key): the SSH host key of 10.0.0.5 is not in known_hosts …
 */
export function sshFailure(stderr: string, target: SshTarget): DownloadError {
  const said = stderr
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean)
    .join('\n');
  const where = `${target.host}${target.port === undefined ? '' : ` port ${target.port}`}`;
  const own = said ? `\nssh: ${said}` : '';
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key is known for/i.test(said)) {
    const keyscan = `ssh-keyscan${target.port === undefined ? '' : ` -p ${target.port}`} ${target.host.replace(/^.*@/, '')}`;
    return new DownloadError(
      'host-key',
      `the SSH host key of ${where} is unknown or has changed, so the host cannot be trusted; ` +
        `compare its fingerprint with the host's administrator, then add it to known_hosts (${keyscan})${own}`,
    );
  }
  if (/Load key|invalid format|UNPROTECTED PRIVATE KEY|bad permissions|no such identity/i.test(said)) {
    return new DownloadError('key', `ssh cannot use the key${target.key ? ` ${target.key}` : ''}${own}`);
  }
  if (/Permission denied|Too many authentication failures/i.test(said)) {
    return new DownloadError('auth', `the SSH login to ${where} was refused; check the key and the user${own}`);
  }
  if (/Could not resolve hostname|Name or service not known|nodename nor servname/i.test(said)) {
    return new DownloadError('connect', `unknown host ${target.host}: the name does not resolve${own}`);
  }
  if (/Connection refused|timed out|No route to host|Network is unreachable|Connection closed|Connection reset|Broken pipe/i.test(said)) {
    return new DownloadError('connect', `cannot reach ${where} over SSH${own}`);
  }
  return new DownloadError('transfer', `ssh to ${where} failed${own || ' without a message'}`);
}
