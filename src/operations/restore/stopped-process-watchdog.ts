import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

// The watchdog itself: plain JavaScript for `node -e`, with Node's own modules only, so that
// it runs from a JavaScript bundle as from the package. It reads the watched process's state
// from /proc each second; once that process has been stopped (T) for `limit` ms on a monotonic
// clock, it sends SIGTERM and SIGCONT, so that it acts on the SIGTERM at once; stopped that
// long again (its clean-up stopped too), SIGKILL. It ends when the process is gone, or when its
// start time says the pid is another's now. (Under a debugger, t, it waits: SIGCONT does not
// resume a traced process.)
const watchdogSource = `
const fs = require('node:fs');
const [pid, limit, started] = process.argv.slice(1).map(Number);
const read = () => {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], started: Number(fields[19]) };
  } catch {
    return undefined;
  }
};
let since;
let fired = false;
setInterval(() => {
  const now = read();
  if (now === undefined || now.started !== started) process.exit(0);
  if (now.state !== 'T') {
    since = undefined;
    return;
  }
  since ??= performance.now();
  if (performance.now() - since < limit) return;
  since = undefined;
  try {
    process.kill(pid, fired ? 'SIGKILL' : 'SIGTERM');
    process.kill(pid, 'SIGCONT');
  } catch {
    process.exit(0);
  }
  fired = true;
}, 1000);
`;

// Whether `process.execPath` is a node that runs `-e`: not a single executable application's
// or pkg's binary (it would start the application again).
function runsNodeCode(): boolean {
  if ((process as { pkg?: unknown }).pkg !== undefined) return false;
  // (getBuiltinModule: the same from the ES module and the CommonJS builds; Node 20.16+.)
  const sea = (process as { getBuiltinModule?: (name: string) => { isSea?: () => boolean } | undefined }).getBuiltinModule?.('node:sea');
  return sea?.isSea?.() !== true;
}

/**
 * While a restore holds every table of `public`, a process of its own watches that the restore's
 * process is not stopped: Ctrl-Z in its terminal, or SIGSTOP. Stopped in the middle of a
 * table's rows, the restore left the server waiting in its COPY for as long as it stayed
 * stopped, with every service query failing on the tables: PostgreSQL ends neither an idle
 * transaction's wait there (a COPY is none) nor a statement_timeout's (it acts on none while
 * it reads from its client), and the stopped host's kernel answers keepalive. After `limitMs`
 * stopped, the watchdog sends SIGTERM (with SIGCONT): the command's interrupt handling ends
 * the restore and its server session, rolled back; a service that restores in-process gets
 * SIGTERM as from an orchestrator (without a handler it ends, and the server rolls back when
 * the connection closes). The watchdog runs detached, in a process group and session of its
 * own, which the terminal's Ctrl-Z does not reach; it ends with `stop()`, or when the watched
 * process is gone. Linux only (it reads /proc), and only where `node -e` can be started (not
 * in a single executable application, nor under Node's permission model without child
 * processes): elsewhere nothing is watched. A paused virtual machine pauses it too.
 *
 * @example
 * const watchdog = watchForStop(70_000)
 * try { … } finally { watchdog.stop() }
 */
export function watchForStop(limitMs: number, pid: number = process.pid): { stop(): void } {
  const nothing = { stop: () => undefined };
  let started: string;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
  } catch {
    return nothing;
  }
  if (!runsNodeCode()) return nothing;
  // Without NODE_OPTIONS (a service's --import would load its modules here too); Electron's
  // binary runs as node only when told to.
  const { NODE_OPTIONS: _options, ...env } = process.env;
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(process.execPath, ['-e', watchdogSource, String(pid), String(Math.max(1, Math.round(limitMs))), started], {
      detached: true,
      stdio: 'ignore',
      env: { ...env, ...(process.versions.electron ? { ELECTRON_RUN_AS_NODE: '1' } : {}) },
    });
  } catch {
    // Node's permission model without child processes, say: the restore goes on, unwatched.
    return nothing;
  }
  child.on('error', () => undefined);
  child.unref();
  return {
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
