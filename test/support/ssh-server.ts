import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/embedded/free-port.js';

const run = promisify(execFile);

/** sshd must be started by absolute path (it re-executes itself). */
export const sshdPath = '/usr/sbin/sshd';

/** A throwaway OpenSSH server on 127.0.0.1 that accepts one client key. */
export interface SshServer {
  host: '127.0.0.1';
  port: number;
  /** The account to log in as: whoever runs the tests (root in CI). */
  user: string;
  /** Private key the server accepts (mode 0600). */
  clientKey: string;
  /** A known_hosts file holding exactly this server's host key. */
  knownHostsFile: string;
  stop: () => Promise<void>;
}

async function keyPair(file: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kw-test', '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

async function waitForPort(port: number, child: ChildProcess, logs: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${logs()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port} within ${timeoutMs} ms: ${logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What the server's sessions run with, beyond sshd's defaults. */
export interface SshServerOptions {
  /**
   * Variables every session gets (sshd's `SetEnv`, which overrides sshd's own, `PATH` too):
   * a `PATH` with a folder of the test's first puts its programs in place of the host's.
   */
  env?: Record<string, string>;
}

/**
 * Starts Debian's OpenSSH server in the foreground on a free port of 127.0.0.1 with a fresh
 * host key, a fresh client key, and a config of its own in `root` (no PAM, no passwords,
 * StrictModes off because the temporary folder is not a home directory).
 */
export async function startSshServer(root: string, options: SshServerOptions = {}): Promise<SshServer> {
  const port = await freePort();
  const user = os.userInfo().username;
  const hostKey = path.join(root, 'host_ed25519_key');
  const clientKey = path.join(root, 'client_ed25519_key');
  const [hostPublic, clientPublic] = await Promise.all([keyPair(hostKey), keyPair(clientKey)]);
  const authorizedKeys = path.join(root, 'authorized_keys');
  const knownHostsFile = path.join(root, 'known_hosts');
  await writeFile(authorizedKeys, `${clientPublic}\n`, { mode: 0o600 });
  await writeFile(knownHostsFile, `[127.0.0.1]:${port} ${hostPublic.split(' ').slice(0, 2).join(' ')}\n`);
  const config = path.join(root, 'sshd_config');
  const setEnv = Object.entries(options.env ?? {}).map(([name, value]) => {
    // One double-quoted word of sshd_config; what would need escaping in it is refused.
    if (/["\\\n]/.test(name + value)) throw new Error(`SetEnv cannot carry ${name}=${value}`);
    return `SetEnv "${name}=${value}"`;
  });
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(root, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `AllowUsers ${user}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'LoginGraceTime 20',
      'LogLevel ERROR',
      ...setEnv,
      '',
    ].join('\n'),
  );
  // Run as root, sshd insists on its privilege-separation folder (Debian's service makes it).
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });

  const child = spawn(sshdPath, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (logs += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForPort(port, child, () => logs, 10_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    clientKey,
    knownHostsFile,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
