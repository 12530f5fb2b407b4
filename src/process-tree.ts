import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * The processes below `pid`, deepest first, from Linux's /proc (none elsewhere, or once they
 * are gone).
 *
 * @example
 * descendantsOf(child.pid!) // [4242, 4241]: a wrapper's program and the wrapper's shell
 */
export function descendantsOf(pid: number): number[] {
  let children: number[];
  try {
    children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
  return children.flatMap((child) => [...descendantsOf(child), child]);
}

/**
 * Sends `signal` to what `child` started, then to `child` itself: a program run through a
 * wrapper that does not `exec` it (a shell script, `sudo -u`, a logging shim), or a helper it
 * started (ssh's ProxyCommand), holds the pipes that `child`'s 'close' waits for, and outlived
 * a signal to `child` alone. Nothing is sent once `child` has exited: its pid may be another
 * process's by then, and what it left is init's, out of reach here.
 *
 * @example
 * signalProcessTree(child, 'SIGKILL')
 */
export function signalProcessTree(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  // Its descendants first, read while the child still holds them (once it is gone they are init's).
  for (const pid of [...descendantsOf(child.pid), child.pid]) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
}

/**
 * Ends `child` and what it started at once (SIGKILL), and lets go of its pipes: a program that
 * a SIGKILL cannot reach (run as another user through `sudo -u`, where the signal is refused)
 * or that left the tree still holds them, and `child`'s 'close' would never come.
 *
 * @example killProcessTree(child) // a stalled pg_dump, and its wrapper
 */
export function killProcessTree(child: ChildProcess): void {
  signalProcessTree(child, 'SIGKILL');
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.destroy();
}
