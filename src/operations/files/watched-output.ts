import type { ChildProcess } from 'node:child_process';
import { Transform } from 'node:stream';
import { stallWatch } from './stall-watch.js';

/**
 * How long pg_restore may write nothing while its output is waited for, before it is taken for
 * stuck (stopped, or reading the archive from a hung disk) and stopped.
 */
export const defaultPgRestoreStallTimeoutMs = 60_000;

/**
 * A child's stdout (pg_restore's), as a stream whose every chunk is a sign of life for a watch that stops
 * the child (SIGKILL: a stopped process never acts on SIGTERM) and fails the stream with
 * `stalled()`'s error once it wrote nothing for `stallTimeoutMs` while it was waited for. Time
 * its output waits for the reader (a statement running on the server) does not count.
 *
 * @example
 * const source = watchedOutput(child, 60_000, () => new Error('pg_restore stopped writing'))
 */
export function watchedOutput(child: ChildProcess, stallTimeoutMs: number, stalled: () => Error): Transform {
  const stdout = child.stdout!;
  // The child is waited for only while what it wrote has all been read (nothing buffered here)
  // and its pipe is not held back by us; once its output ended there is nothing to wait for.
  const watch = stallWatch(
    stallTimeoutMs,
    () => {
      child.kill('SIGKILL');
      output.destroy(stalled());
    },
    () => output.readableLength === 0 && !stdout.isPaused(),
  );
  const output = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      watch.progress();
      done(null, chunk);
    },
  });
  stdout.once('end', watch.stop);
  output.once('close', watch.stop);
  // The reader meets the error where it reads; one that has not begun to read (a restore still
  // taking its locks) must not see it thrown as an uncaught 'error' event meanwhile.
  output.on('error', () => undefined);
  stdout.on('error', (error) => output.destroy(error));
  return stdout.pipe(output);
}
