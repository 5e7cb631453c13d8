/**
 * A pool of chunk buffers with reference counts and a memory budget.
 *
 * Why: allocating a fresh 8 MiB buffer per chunk makes V8 run a full mark-compact for "external
 * memory pressure" every few MB (521 of them, ~10 s, in a 1 GiB copy). Reusing a small set of
 * buffers removes that, and the budget bounds the bytes in flight whatever the backup's size.
 *
 * Every buffer handed out has one reference; `retain` adds more (one per destination that will
 * write it), `release` drops one, and at zero the backing memory returns to the pool.
 */
export class ChunkPool {
  private readonly free: Buffer[] = [];
  private readonly owned = new Map<ArrayBufferLike, { backing: Buffer; refs: number }>();
  private waiters: (() => void)[] = [];

  /**
   * @param chunkBytes capacity of every pooled buffer
   * @param budgetBytes bytes of buffers in use before `room()` waits @default 64 MiB
   */
  constructor(readonly chunkBytes: number, readonly budgetBytes = 64 * 1024 * 1024) {}

  /** Buffers currently handed out. */
  get inUse(): number {
    return this.owned.size;
  }

  /** A buffer of `size` bytes (at most `chunkBytes`), uninitialized, with one reference. */
  allocate = (size: number): Buffer => {
    if (size > this.chunkBytes) return Buffer.allocUnsafe(size);
    const backing = this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes);
    this.owned.set(backing.buffer, { backing, refs: 1 });
    return size === this.chunkBytes ? backing : backing.subarray(0, size);
  };

  /** Adds `count` references to a pooled buffer (no-op for other buffers). */
  retain(buffer: Uint8Array, count = 1): void {
    const entry = this.owned.get(buffer.buffer);
    if (entry) entry.refs += count;
  }

  /** Drops one reference; the buffer returns to the pool at zero. Other buffers are ignored. */
  release(buffer: Uint8Array): void {
    const entry = this.owned.get(buffer.buffer);
    if (!entry || --entry.refs > 0) return;
    this.owned.delete(entry.backing.buffer);
    if (this.free.length < Math.max(2, this.budgetBytes / this.chunkBytes)) this.free.push(entry.backing);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Resolves when the buffers in use fit the budget again. Waits at most `maxWaitMs`: buffers
   * dropped on error paths (a destroyed stream's read-ahead) are never released, and must not
   * stall the run; the budget is then exceeded by those few buffers.
   */
  async room(maxWaitMs = 1000): Promise<void> {
    const deadline = Date.now() + maxWaitMs;
    while (this.owned.size * this.chunkBytes >= this.budgetBytes && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(deadline - Date.now(), 0));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }
}
