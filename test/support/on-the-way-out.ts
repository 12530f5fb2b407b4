const endingSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs `cleanUp`, synchronously, when this process ends: on 'exit', and first on SIGINT,
 * SIGTERM or SIGHUP, which may end it without 'exit' (a SIGINT did, in a vitest run writing to
 * a file). After a signal the process ends as the signal would have, unless someone else
 * listens for it too, who then decides; should the process go on, 'exit' runs `cleanUp`
 * again, so it must be safe to run twice. Returns what takes these listeners away.
 *
 * @example
 * const stopListening = onTheWayOut(healAllPartitions)
 */
export function onTheWayOut(cleanUp: () => void): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    cleanUp();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  process.once('exit', cleanUp);
  for (const signal of endingSignals) process.once(signal, onSignal);
  return () => {
    process.off('exit', cleanUp);
    for (const signal of endingSignals) process.off(signal, onSignal);
  };
}
