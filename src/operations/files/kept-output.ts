/**
 * What a program wrote to a stream of messages (its stderr), kept within a bound: the first
 * `head` and the last `tail` characters, with a mark where the middle was cut. A program's
 * stderr is as long as the program likes: an ssh host passes its remote command's on, and
 * pg_restore reports on a backup, which is untrusted input; kept whole, ~700 MB of it ended
 * the process (V8's longest string). The first lines say what went wrong first, the last how
 * the program ended.
 *
 * @example
 * const kept = keptOutput({ head: 0, tail: 8192 });
 * child.stderr.setEncoding('utf8').on('data', (chunk: string) => kept.add(chunk));
 * child.on('close', () => console.error(kept.text()));
 */
export function keptOutput(bounds: { head: number; tail: number }): { add(chunk: string): void; text(): string } {
  let head = '';
  let tail = '';
  let cut = false;
  return {
    add(chunk) {
      let rest = chunk;
      if (head.length < bounds.head) {
        const room = bounds.head - head.length;
        head += rest.slice(0, room);
        rest = rest.slice(room);
      }
      if (rest === '') return;
      tail += rest;
      // Trimmed once it holds twice its bound, not at every chunk: a copy per chunk would cost
      // as much as keeping it all.
      if (tail.length > 2 * bounds.tail) {
        tail = tail.slice(-bounds.tail);
        cut = true;
      }
    },
    text() {
      if (!cut && tail.length <= bounds.tail) return head + tail;
      return `${head}${head === '' ? '' : '\n'}[earlier output cut]\n${tail.slice(-bounds.tail)}`;
    },
  };
}
