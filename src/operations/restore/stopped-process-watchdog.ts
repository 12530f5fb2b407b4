import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

// The watchdog itself: plain JavaScript for `node -e`, with Node's own modules only, so that
// it runs from a bundled service as from the package. It reads the watched process's state
// from /proc each second; once that process has been stopped (T, or t under a debugger) for
// `limit` ms, it sends SIGTERM and SIGCONT, so that it acts on the SIGTERM at once, and ends.
// It ends as well when the process is gone, or its start time says the pid is another's now.
const watchdogSource = `
const fs = require('node:fs');
const pid = Number(process.argv[1]);
const limit = Number(process.argv[2]);
const read = () => {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], started: fields[19] };
  } catch {
    return undefined;
  }
};
const first = read();
if (first === undefined) process.exit(0);
let since;
setInterval(() => {
  const now = read();
  if (now === undefined || now.started !== first.started) process.exit(0);
  if (now.state !== 'T' && now.state !== 't') {
    since = undefined;
    return;
  }
  since ??= Date.now();
  if (Date.now() - since < limit) return;
  try {
    process.kill(pid, 'SIGTERM');
    process.kill(pid, 'SIGCONT');
  } finally {
    process.exit(0);
  }
}, 1000);
`;

/**
 * While a restore holds every table of `public`, a process of its own watches that the restore's
 * process is not stopped: Ctrl-Z in its terminal, or SIGSTOP. Stopped in the middle of a
 * table's rows, the restore left the server waiting in its COPY for as long as it stayed
 * stopped, with every service query failing on the tables: PostgreSQL ends neither an idle
 * transaction's wait there (a COPY is none) nor a statement_timeout's (it acts on none while
 * it reads from its client), and the stopped host's kernel answers keepalive. After `limitMs`
 * stopped, the watchdog sends SIGTERM (with SIGCONT): the command's interrupt handling ends
 * the restore and its server session, rolled back; a service without one ends, and the server
 * rolls back when the connection closes. The watchdog runs detached, in a process group and
 * session of its own, which the terminal's Ctrl-Z does not reach; it ends with `stop()`, or
 * when the watched process is gone. Linux only (it reads /proc): elsewhere nothing is watched.
 * A paused virtual machine pauses the watchdog with it.
 *
 * @example
 * const watchdog = watchForStop(70_000)
 * try { … } finally { watchdog.stop() }
 */
export function watchForStop(limitMs: number, pid: number = process.pid): { stop(): void } {
  try {
    readFileSync(`/proc/${pid}/stat`);
  } catch {
    return { stop: () => undefined };
  }
  // No environment: NODE_OPTIONS (a service's --import, say) would load its modules here too.
  const child = spawn(process.execPath, ['-e', watchdogSource, String(pid), String(Math.max(1, Math.round(limitMs)))], {
    detached: true,
    stdio: 'ignore',
    env: {},
  });
  child.on('error', () => undefined);
  child.unref();
  return {
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
