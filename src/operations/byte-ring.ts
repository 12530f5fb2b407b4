/**
 * A one-way byte pipe between two threads in shared memory: one thread writes without ever
 * blocking (its event loop keeps running), the other reads synchronously, blocking in
 * `Atomics.wait` until bytes arrive. The WebAssembly pg_dump reads the server's bytes this
 * way, because its libpq calls `read` synchronously from inside `main`.
 */
export interface ByteRingMemory {
  /** Int32 counters: see the slot constants below. */
  control: SharedArrayBuffer;
  /** The bytes; its length is a power of two. */
  data: SharedArrayBuffer;
}

// In Node since 16, typed only from TypeScript's ES2024 library on.
const waitAsync = (Atomics as unknown as {
  waitAsync: (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: unknown };
}).waitAsync;

// Counters in `control`. WRITTEN and READ count bytes since the start, modulo 2^32 (Int32
// arithmetic wraps; the capacity is far below 2^31, so their difference is exact). SEQUENCE
// changes on every write and on end, so a reader that saw nothing new can wait on one slot.
const sequenceSlot = 0;
const writtenSlot = 1;
const readSlot = 2;
const endedSlot = 3;

/**
 * Allocates the shared memory of a ring holding up to `capacity` bytes (rounded up to a power of two).
 *
 * @example
 * const memory = createByteRing(1 << 22) // pass to a ByteRingWriter and, in another thread, a ByteRingReader
 */
export function createByteRing(capacity: number): ByteRingMemory {
  let size = 1024;
  while (size < capacity) size *= 2;
  return { control: new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT), data: new SharedArrayBuffer(size) };
}

/** The writing end; never blocks. */
export class ByteRingWriter {
  readonly #control: Int32Array;
  readonly #data: Uint8Array;

  constructor(memory: ByteRingMemory) {
    this.#control = new Int32Array(memory.control);
    this.#data = new Uint8Array(memory.data);
  }

  /** Bytes that can be written now. */
  get free(): number {
    return this.#data.length - ((Atomics.load(this.#control, writtenSlot) - Atomics.load(this.#control, readSlot)) | 0);
  }

  /**
   * Copies as much of `bytes` as fits and wakes the reader; returns how many bytes were taken.
   *
   * @example
   * const taken = writer.write(chunk) // keep chunk.subarray(taken) for later: await writer.spaceFreed()
   */
  write(bytes: Uint8Array): number {
    const count = Math.min(bytes.length, this.free);
    if (count === 0) return 0;
    const written = Atomics.load(this.#control, writtenSlot);
    const start = written & (this.#data.length - 1);
    const first = Math.min(count, this.#data.length - start);
    this.#data.set(bytes.subarray(0, first), start);
    this.#data.set(bytes.subarray(first, count), 0);
    Atomics.store(this.#control, writtenSlot, (written + count) | 0);
    this.#wake();
    return count;
  }

  /** Marks the end of the stream: once the reader has taken every byte, its reads return 0. */
  end(): void {
    Atomics.store(this.#control, endedSlot, 1);
    this.#wake();
  }

  /**
   * Resolves when the reader has taken bytes since this call (or after `timeoutMs`).
   *
   * @example
   * while (rest.length > 0) { rest = rest.subarray(writer.write(rest)); if (rest.length) await writer.spaceFreed() }
   */
  async spaceFreed(timeoutMs = 1_000): Promise<void> {
    const read = Atomics.load(this.#control, readSlot);
    if (this.free > 0) return;
    const waiting = waitAsync(this.#control, readSlot, read, timeoutMs);
    if (waiting.async) await waiting.value;
  }

  #wake(): void {
    Atomics.add(this.#control, sequenceSlot, 1);
    Atomics.notify(this.#control, sequenceSlot);
  }
}

/** The reading end; blocks its thread. */
export class ByteRingReader {
  readonly #control: Int32Array;
  readonly #data: Uint8Array;
  #lastReadTookBytes = false;

  constructor(memory: ByteRingMemory) {
    this.#control = new Int32Array(memory.control);
    this.#data = new Uint8Array(memory.data);
  }

  /**
   * Copies available bytes into `target` and returns how many, blocking while there are none.
   * Returns 0 at the end of the stream and, once, right after a read that took bytes while
   * nothing more has arrived: libpq reads again after a large read to gather the rest of a
   * long message, and the server may have nothing more to send until libpq answers, so
   * blocking there would hang both. libpq treats a 0 after a successful read as "nothing
   * more for now"; only a 0 right after a poll (which always says ready here) means the
   * connection closed, and that 0 is never returned unless the stream really ended.
   *
   * @example
   * const count = reader.read(heap.subarray(pointer, pointer + length))
   */
  read(target: Uint8Array): number {
    for (;;) {
      const sequence = Atomics.load(this.#control, sequenceSlot);
      const read = Atomics.load(this.#control, readSlot);
      const available = (Atomics.load(this.#control, writtenSlot) - read) | 0;
      if (available > 0) {
        const count = Math.min(available, target.length);
        const start = read & (this.#data.length - 1);
        const first = Math.min(count, this.#data.length - start);
        target.set(this.#data.subarray(start, start + first), 0);
        target.set(this.#data.subarray(0, count - first), first);
        Atomics.store(this.#control, readSlot, (read + count) | 0);
        Atomics.notify(this.#control, readSlot);
        this.#lastReadTookBytes = true;
        return count;
      }
      if (Atomics.load(this.#control, endedSlot) === 1 || this.#lastReadTookBytes) {
        this.#lastReadTookBytes = false;
        return 0;
      }
      Atomics.wait(this.#control, sequenceSlot, sequence);
    }
  }
}
