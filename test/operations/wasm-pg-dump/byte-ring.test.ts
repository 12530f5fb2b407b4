import { describe, expect, it } from 'vitest';
import { ByteRingReader, ByteRingWriter, createByteRing, type ByteRingMemory } from '../../../src/operations/wasm-pg-dump/byte-ring.js';

/**
 * A reader whose first empty take lets `between` run before read() goes on: the writer's
 * last bytes and its end land exactly between the look for bytes and the look for the end,
 * the window another thread hits by chance. No thread, no timing: the same every run.
 */
class ReaderWithAGap extends ByteRingReader {
  constructor(
    memory: ByteRingMemory,
    private between: (() => void) | undefined,
  ) {
    super(memory);
  }

  override take(target: Uint8Array): number {
    const count = super.take(target);
    if (count === 0 && this.between) {
      const run = this.between;
      this.between = undefined;
      run();
    }
    return count;
  }
}

describe('ByteRingReader.read', () => {
  it('returns the last bytes written just before the end, not the end', () => {
    const memory = createByteRing(1024);
    const writer = new ByteRingWriter(memory);
    const fatal = Buffer.from('FATAL:  password authentication failed for user "app"');
    const reader = new ReaderWithAGap(memory, () => {
      writer.write(fatal);
      writer.end();
    });
    const target = new Uint8Array(1024);

    const count = reader.read(target);

    expect(Buffer.from(target.subarray(0, count)).toString()).toBe(fatal.toString());
    expect(reader.read(target)).toBe(0);
    expect(reader.ended).toBe(true);
  });

  it('returns 0 at the end once every byte was read', () => {
    const memory = createByteRing(1024);
    const writer = new ByteRingWriter(memory);
    writer.write(Buffer.from('last'));
    writer.end();
    const reader = new ByteRingReader(memory);
    const target = new Uint8Array(2);

    expect([reader.read(target), reader.read(target), reader.read(target), reader.read(target)]).toEqual([2, 2, 0, 0]);
  });
});
