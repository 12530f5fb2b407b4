import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

// The watchdog itself: a POSIX shell loop. It starts in a few milliseconds (a node took 40 or
// more of CPU, for every restore), and needs nothing of the package, nor that process.execPath
// be a node that runs -e (a single executable application's is not). Each second it reads the
// watched process's state from /proc; once it has seen it stopped (T) for more than `limit`
// seconds in a row, it sends SIGTERM and SIGCONT, so that the process acts on the SIGTERM at
// once; stopped that long again (its clean-up stopped too), SIGKILL. It ends when the process
// is gone, or when its start time says the pid is another's now. (Under a debugger, t, it
// waits: SIGCONT does not resume a traced process.)
const watchdogScript = `
pid=$1 limit=$2 started=$3 stopped=0 signal=TERM
while :; do
  { read -r line < "/proc/$pid/stat"; } 2>/dev/null || exit 0
  set -- \${line##*) }
  [ "\${20}" = "$started" ] || exit 0
  if [ "$1" = T ]; then stopped=$((stopped + 1)); else stopped=0; fi
  if [ "$stopped" -gt "$limit" ]; then
    kill -"$signal" "$pid" 2>/dev/null || exit 0
    kill -CONT "$pid" 2>/dev/null
    signal=KILL stopped=0
  fi
  sleep 1
done
`;

/**
 * While a restore holds every table of `public`, a process of its own watches that the restore's
 * process is not stopped: Ctrl-Z in its terminal, or SIGSTOP. Stopped in the middle of a
 * table's rows, the restore left the server waiting in its COPY for as long as it stayed
 * stopped, with every service query failing on the tables: PostgreSQL ends neither an idle
 * transaction's wait there (a COPY is none) nor a statement_timeout's (it acts on none while
 * it reads from its client), and the stopped host's kernel answers keepalive. After `limitMs`
 * stopped (whole seconds, rounded up), the watchdog sends SIGTERM (with SIGCONT): the
 * command's interrupt handling ends the restore and its server session, rolled back; a service
 * that restores in-process gets SIGTERM as from an orchestrator (without a handler it ends, and
 * the server rolls back when the connection closes). The watchdog runs detached, in a process
 * group and session of its own, which the terminal's Ctrl-Z does not reach; it ends with
 * `stop()`, or when the watched process is gone. Linux only (it reads /proc, with /bin/sh), and
 * not under Node's permission model without child processes: elsewhere nothing is watched. A
 * paused virtual machine pauses it too.
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
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn('/bin/sh', ['-c', watchdogScript, 'kw-restore-watchdog', String(pid), String(Math.max(1, Math.ceil(limitMs / 1000))), started], {
      detached: true,
      stdio: 'ignore',
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
