import type { ChildProcess } from 'node:child_process';
import { type Readable, Transform } from 'node:stream';
import { killProcessTree } from '../../process-tree.js';
import { stallWatch } from './stall-watch.js';

/**
 * How long pg_restore may write nothing while its output is waited for, before it is taken for
 * stuck (stopped, or reading the archive from a hung disk) and stopped.
 */
export const defaultPgRestoreStallTimeoutMs = 60_000;

/**
 * A child's stdout (pg_restore's), as a stream whose every chunk is a sign of life for a watch that stops
 * the child and what it started (SIGKILL: a stopped process never acts on SIGTERM) and fails the stream with
 * `stalled()`'s error once it wrote nothing for `stallTimeoutMs` while it was waited for. Time
 * its output waits for the reader (a statement running on the server) does not count.
 *
 * @example
 * const source = watchedOutput(child, 60_000, () => new Error('pg_restore stopped writing'))
 */
export function watchedOutput(child: ChildProcess, stallTimeoutMs: number, stalled: () => Error): Transform {
  return watchedStream(child.stdout!, stallTimeoutMs, stalled, () => killProcessTree(child));
}

/**
 * `input` (a file read from a disk that may hang, a child's output), as a stream that fails with
 * `stalled()`'s error once `input` brought nothing for `stallTimeoutMs` while it was waited for
 * (`onStall` first stops what feeds it). Time it waits for the reader does not count.
 *
 * @example
 * const source = watchedStream(createReadStream(file), 60_000, () => new Error('reading the backup stalled'))
 */
export function watchedStream(input: Readable, stallTimeoutMs: number, stalled: () => Error, onStall: () => void = () => undefined): Transform {
  // The input is waited for only while what it brought has all been read (nothing buffered
  // here) and it is not held back by us; once it ended there is nothing to wait for.
  const watch = stallWatch(
    stallTimeoutMs,
    () => {
      onStall();
      output.destroy(stalled());
    },
    () => output.readableLength === 0 && !input.isPaused(),
  );
  const output = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      watch.progress();
      done(null, chunk);
    },
  });
  input.once('end', watch.stop);
  output.once('close', watch.stop);
  // The reader meets the error where it reads; one that has not begun to read (a restore still
  // taking its locks) must not see it thrown as an uncaught 'error' event meanwhile.
  output.on('error', () => undefined);
  input.on('error', (error) => output.destroy(error));
  return input.pipe(output);
}
