/**
 * A one-way byte pipe between two threads in fixed shared memory. Each end has a blocking
 * form, for a thread stuck inside WebAssembly (pg_dump's libpq reads and writes
 * synchronously from inside `main`), and a non-blocking one with an async wait, for a thread
 * whose event loop must keep running. The WebAssembly pg_dump gets the server's bytes
 * through one ring and hands its output over through another; nothing is allocated per chunk.
 */
export interface ByteRingMemory {
  /** Int32 counters: see the slot constants below. */
  control: SharedArrayBuffer;
  /** The bytes; its length is a power of two. */
  data: SharedArrayBuffer;
}

// In Node since 16, typed only from TypeScript's ES2024 library on.
const waitAsync = (
  Atomics as unknown as {
    waitAsync: (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: unknown };
  }
).waitAsync;

// Waits for a notification on `slot` (or `timeoutMs`) without blocking the thread. The
// timer also keeps the event loop alive: a pending Atomics.waitAsync alone does not, and a
// process with nothing else to wait for would exit in the middle.
async function notifiedOrTimeout(control: Int32Array, slot: number, value: number, timeoutMs: number): Promise<void> {
  const waiting = waitAsync(control, slot, value, timeoutMs);
  if (!waiting.async) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([waiting.value, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
}

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
 * const memory = createByteRing(1 << 20) // hand to a ByteRingWriter here and a ByteRingReader in another thread
 */
export function createByteRing(capacity: number): ByteRingMemory {
  let size = 1024;
  while (size < capacity) size *= 2;
  return { control: new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT), data: new SharedArrayBuffer(size) };
}

/** The writing end. */
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
   * Copies as much of `bytes` as fits, without waiting, and wakes the reader; returns how many were taken.
   *
   * @example
   * const taken = writer.write(chunk) // keep chunk.subarray(taken), then: await writer.spaceFreed()
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

  /**
   * Writes all of `bytes`, blocking this thread while the ring is full (worker threads only).
   *
   * @example
   * writer.writeAll(output) // returns once the reader made room for all of it
   */
  writeAll(bytes: Uint8Array): void {
    let offset = 0;
    while (offset < bytes.length) {
      const read = Atomics.load(this.#control, readSlot);
      const taken = this.write(bytes.subarray(offset));
      offset += taken;
      if (taken === 0) Atomics.wait(this.#control, readSlot, read);
    }
  }

  /** Marks the end of the stream: once the reader has taken every byte, it sees the end. */
  end(): void {
    Atomics.store(this.#control, endedSlot, 1);
    this.#wake();
  }

  /**
   * Resolves once the ring has room (the reader took bytes), or after `timeoutMs`.
   *
   * @example
   * while (rest.length > 0) { rest = rest.subarray(writer.write(rest)); if (rest.length) await writer.spaceFreed() }
   */
  async spaceFreed(timeoutMs = 1_000): Promise<void> {
    const read = Atomics.load(this.#control, readSlot);
    if (this.free > 0) return;
    await notifiedOrTimeout(this.#control, readSlot, read, timeoutMs);
  }

  #wake(): void {
    Atomics.add(this.#control, sequenceSlot, 1);
    Atomics.notify(this.#control, sequenceSlot);
  }
}

/** The reading end. */
export class ByteRingReader {
  readonly #control: Int32Array;
  readonly #data: Uint8Array;
  #lastReadTookBytes = false;

  constructor(memory: ByteRingMemory) {
    this.#control = new Int32Array(memory.control);
    this.#data = new Uint8Array(memory.data);
  }

  /** Whether the writer ended the stream and every byte has been taken. */
  get ended(): boolean {
    return Atomics.load(this.#control, endedSlot) === 1 && this.#available() === 0;
  }

  /**
   * Copies the bytes available now into `target`, without waiting; returns how many (0: none yet, or {@link ended}).
   *
   * @example
   * const count = reader.take(buffer); if (count === 0 && !reader.ended) await reader.dataArrived()
   */
  take(target: Uint8Array): number {
    const read = Atomics.load(this.#control, readSlot);
    const count = Math.min(this.#available(), target.length);
    if (count === 0) return 0;
    const start = read & (this.#data.length - 1);
    const first = Math.min(count, this.#data.length - start);
    target.set(this.#data.subarray(start, start + first), 0);
    target.set(this.#data.subarray(0, count - first), first);
    Atomics.store(this.#control, readSlot, (read + count) | 0);
    Atomics.notify(this.#control, readSlot);
    return count;
  }

  /**
   * Resolves when bytes arrive or the stream ends (or after `timeoutMs`), without blocking the thread.
   *
   * @example
   * await reader.dataArrived()
   */
  async dataArrived(timeoutMs = 1_000): Promise<void> {
    const sequence = Atomics.load(this.#control, sequenceSlot);
    if (this.#available() > 0 || Atomics.load(this.#control, endedSlot) === 1) return;
    await notifiedOrTimeout(this.#control, sequenceSlot, sequence, timeoutMs);
  }

  /**
   * libpq's `read`: copies available bytes into `target` and returns how many, blocking the
   * thread while there are none. Returns 0 at the end of the stream and, once, right after
   * a read that took bytes while nothing more has arrived: after a large read libpq reads
   * again to gather more of a long message, and the server may have nothing more to send
   * until libpq answers, so blocking there would hang both. libpq takes a 0 after a
   * successful read as "nothing more for now"; only a 0 after a poll (which always says
   * ready in this build) means the connection closed, and that 0 never comes unless the
   * stream really ended.
   *
   * @example
   * const count = reader.read(heap.subarray(pointer, pointer + length))
   */
  read(target: Uint8Array): number {
    for (;;) {
      const sequence = Atomics.load(this.#control, sequenceSlot);
      const count = this.take(target);
      if (count > 0) {
        this.#lastReadTookBytes = true;
        return count;
      }
      if (Atomics.load(this.#control, endedSlot) === 1) {
        // The writer may have written its last bytes and ended between the take above and
        // this look at the end (a failed login's FATAL, say): read them before the end.
        const rest = this.take(target);
        this.#lastReadTookBytes = rest > 0;
        return rest;
      }
      if (this.#lastReadTookBytes) {
        this.#lastReadTookBytes = false;
        return 0;
      }
      Atomics.wait(this.#control, sequenceSlot, sequence);
    }
  }

  #available(): number {
    return (Atomics.load(this.#control, writtenSlot) - Atomics.load(this.#control, readSlot)) | 0;
  }
}
