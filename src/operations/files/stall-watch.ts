/** A watch on a producer (a child's output, a remote copy) that may stop without a word. */
export interface StallWatch {
  /** A sign of life: output arrived. */
  progress(): void;
  /** Ends the watch; `onStall` is not called after it. */
  stop(): void;
}

/**
 * Calls `onStall` once nothing has shown progress for `stallTimeoutMs` while the producer was
 * waited for: time during which `waitedFor()` says false (the consumer is the one behind: a
 * stream paused for a slow disk) does not count. For what TCP never reports: a peer whose
 * kernel acknowledges while the program behind it is stuck (a frozen server backend, a remote
 * `cat` on a hung disk), or a child process that stopped.
 *
 * @example
 * const watch = stallWatch(60_000, () => child.kill('SIGKILL'), () => !child.stdout.isPaused())
 * child.stdout.on('data', watch.progress)
 * child.once('close', watch.stop)
 */
export function stallWatch(stallTimeoutMs: number, onStall: () => void, waitedFor: () => boolean = () => true): StallWatch {
  let lastProgressAt = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const now = performance.now();
    if (!waitedFor()) lastProgressAt = now;
    const quiet = now - lastProgressAt;
    if (quiet < stallTimeoutMs) {
      timer = setTimeout(check, stallTimeoutMs - quiet);
      return;
    }
    timer = undefined;
    onStall();
  };
  timer = setTimeout(check, stallTimeoutMs);
  return {
    progress: () => void (lastProgressAt = performance.now()),
    stop: () => {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
