/**
 * A resource helper of the object driver (./driver.ts): `ByteStash` reuses the buffers in which
 * single-part sessions hold their bytes between `write` and `commit`. (The cap on uploads in
 * flight is the toolkit's `Semaphore`, src/drivers/toolkit/semaphore.ts.)
 */

/** Smallest buffer the stash hands out; smaller requests get one of this size. */
const MIN_CAPACITY = 64 * 1024;

/**
 * Reusable buffers for bytes that must outlive the caller's buffer. Why: a single-part session
 * keeps its part from `write` until `commit` (the hash stored with the object is only known then,
 * and the engine reuses its buffer once `write` resolves), so it copies it. A fresh allocation per
 * small file (most files of a backup) makes V8 collect for external memory again and again and lets
 * garbage copies pile up in RSS; reused buffers avoid both. Buffers come in powers of two from
 * 64 KiB, so a copy wastes less than half of its buffer; at most `maxIdleBytes` wait for reuse.
 *
 * The copies in use are bounded by the sessions holding one (one per open single-part session, so
 * by the engine's file concurrency), not by the stash.
 */
export class ByteStash {
  readonly #idle = new Map<number, Buffer[]>();
  #idleBytes = 0;

  constructor(readonly maxIdleBytes: number) {}

  /** Bytes waiting for reuse (for tests). */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** A copy of `bytes`, exactly as long, in a reused buffer when one of the right class is idle. */
  copy(bytes: Uint8Array): Buffer {
    const capacity = capacityFor(bytes.length);
    const backing = this.#idle.get(capacity)?.pop();
    if (backing !== undefined) this.#idleBytes -= capacity;
    // Shared memory: the MD5 of the part (src/runtime/cpu-pool.ts) reads it in place, without a copy.
    const view = (backing ?? Buffer.from(new SharedArrayBuffer(capacity))).subarray(0, bytes.length);
    view.set(bytes);
    return view;
  }

  /** Takes back a buffer from `copy` (the caller must not touch it afterwards). Others are ignored. */
  release(view: Buffer): void {
    const capacity = view.buffer.byteLength;
    if (capacity !== capacityFor(view.length) || view.byteOffset !== 0 || this.#idleBytes + capacity > this.maxIdleBytes) return;
    const list = this.#idle.get(capacity) ?? [];
    this.#idle.set(capacity, list);
    list.push(Buffer.from(view.buffer, 0, capacity));
    this.#idleBytes += capacity;
  }
}

function capacityFor(length: number): number {
  let capacity = MIN_CAPACITY;
  while (capacity < length) capacity *= 2;
  return capacity;
}
