/**
 * A pool of chunk buffers with reference counts and a memory budget.
 *
 * Why: allocating a fresh 8 MiB buffer per chunk makes V8 run a full mark-compact for "external
 * memory pressure" every few MB (521 of them, ~10 s, in a 1 GiB copy). Reusing a small set of
 * buffers removes that, and the budget bounds the bytes in flight whatever the backup's size.
 *
 * Small buffers (a file of a few KB, the tail of a file) are charged their own size against the
 * budget, not a whole chunk: charging a whole chunk for a 4 KB read let only `budget / chunk` (8)
 * small files be in flight at once, and kept an 8 MiB buffer per file in use. They are cut from
 * buffers of a power-of-two size that are reused too (a few MB of them kept free): allocating
 * one per file made 100,000 small files 100,000 ArrayBuffers for the garbage collector to find
 * and free, and fragmented the process's memory (issue 13).
 *
 * Every buffer handed out has one reference; `retain` adds more (one per destination that will
 * write it), `release` drops one, and at zero the buffer's bytes return to the budget (and a
 * pooled buffer to the pool).
 *
 * Pooled buffers are shared memory (`SharedArrayBuffer`): the CPU pool's worker threads read a
 * chunk in place for the MD5 of an S3 part or the sealing of an encrypted one, where a buffer of
 * its own would be copied (src/runtime/cpu-pool.ts).
 *
 * Free chunk buffers are kept only while chunk buffers are in demand: once none has been taken for
 * `idleFreeMs` they are dropped, and the allocator can give their memory to what comes next. A run
 * whose few large files come first and whose 100,000 small files follow held four free 8 MiB
 * buffers, 32 MB, through all of the small files, and `watch` held them between backups. (The
 * C allocator keeps freed memory for the process's later allocations rather than returning it,
 * so this lowers what is held, not necessarily the peak RSS of one run.)
 *
 * `peakBytes` is the most ever charged at once: the fan-out engine keeps it within the budget
 * (see src/core/fanout.ts), and tests assert on it.
 */

/** Small buffers are at least 2 ** this (256) bytes. */
const MIN_SMALL_CLASS = 8;
/** Bytes of free small buffers kept for reuse. */
const MAX_SMALL_FREE_BYTES = 8 * 1024 * 1024;

/** Free chunk buffers are dropped once no chunk buffer has been taken for this long. */
const IDLE_FREE_MS = 2000;

/** The pool: see the file comment. */
export class ChunkPool {
  private readonly free: Buffer[] = [];
  /** When a chunk buffer was last taken (performance.now()). */
  private lastChunkTaken = 0;
  /** Drops the free chunk buffers once idle (unref'd: never keeps the process alive). */
  private trimTimer: NodeJS.Timeout | undefined;
  private readonly idleFreeMs: number;
  /** Free small buffers by size class: `smallFree[k]` holds buffers of `2 ** k` bytes. */
  private readonly smallFree: Buffer[][] = [];
  private smallFreeBytes = 0;
  private readonly owned = new Map<ArrayBufferLike, { backing: Buffer; refs: number; bytes: number; small: boolean }>();
  private waiters: (() => void)[] = [];
  private charged = 0;
  private peak = 0;
  /** Buffers of at most this many bytes are allocated at their size instead of taken from the pool. */
  readonly smallBytes: number;

  /**
   * @param chunkBytes capacity of every pooled buffer
   * @param budgetBytes bytes of buffers in use before `room()` waits @default 64 MiB
   * @param options.idleFreeMs free chunk buffers are dropped once none was taken for this long @default 2000
   */
  constructor(readonly chunkBytes: number, readonly budgetBytes = 64 * 1024 * 1024, options: { readonly idleFreeMs?: number } = {}) {
    this.smallBytes = Math.floor(chunkBytes / 8);
    this.idleFreeMs = options.idleFreeMs ?? IDLE_FREE_MS;
  }

  /** Free chunk buffers kept for reuse. */
  get freeChunks(): number {
    return this.free.length;
  }

  /** Buffers currently handed out. */
  get inUse(): number {
    return this.owned.size;
  }

  /** Bytes charged against the budget by the buffers handed out. */
  get inUseBytes(): number {
    return this.charged;
  }

  /** The most bytes ever charged at once. */
  get peakBytes(): number {
    return this.peak;
  }

  /** Bytes a buffer of `size` bytes is charged (see the class comment). */
  chargeOf(size: number): number {
    if (size > this.chunkBytes || size === 0) return 0;
    return size <= this.smallBytes ? size : this.chunkBytes;
  }

  /** Whether `buffer` is a buffer of this pool still handed out. */
  owns(buffer: Uint8Array): boolean {
    return this.owned.has(buffer.buffer);
  }

  private charge(bytes: number): void {
    this.charged += bytes;
    if (this.charged > this.peak) this.peak = this.charged;
  }

  /** A buffer of `size` bytes (at most `chunkBytes`), uninitialized, with one reference. */
  allocate = (size: number): Buffer => {
    if (size > this.chunkBytes || size === 0) return Buffer.allocUnsafe(size);
    if (size <= this.smallBytes) {
      const sizeClass = Math.max(MIN_SMALL_CLASS, 32 - Math.clz32(size - 1));
      const reused = this.smallFree[sizeClass]?.pop();
      if (reused) this.smallFreeBytes -= reused.length;
      // Its own ArrayBuffer: how the pool tells buffers apart.
      const small = reused ?? sharedBuffer(2 ** sizeClass);
      this.owned.set(small.buffer, { backing: small, refs: 1, bytes: size, small: true });
      this.charge(size);
      return size === small.length ? small : small.subarray(0, size);
    }
    this.lastChunkTaken = performance.now();
    const backing = this.free.pop() ?? sharedBuffer(this.chunkBytes);
    this.owned.set(backing.buffer, { backing, refs: 1, bytes: this.chunkBytes, small: false });
    this.charge(this.chunkBytes);
    return size === this.chunkBytes ? backing : backing.subarray(0, size);
  };

  /** Adds `count` references to a buffer from this pool (no-op for other buffers). */
  retain(buffer: Uint8Array, count = 1): void {
    const entry = this.owned.get(buffer.buffer);
    if (entry) entry.refs += count;
  }

  /** Drops one reference; at zero the buffer's bytes return to the budget. Other buffers are ignored. */
  release(buffer: Uint8Array): void {
    const entry = this.owned.get(buffer.buffer);
    if (!entry || --entry.refs > 0) return;
    this.owned.delete(entry.backing.buffer);
    this.charged -= entry.bytes;
    const backing = entry.backing;
    if (entry.small) {
      if (this.smallFreeBytes + backing.length <= MAX_SMALL_FREE_BYTES) {
        const sizeClass = 31 - Math.clz32(backing.length);
        (this.smallFree[sizeClass] ??= []).push(backing);
        this.smallFreeBytes += backing.length;
      }
    } else if (backing.length === this.chunkBytes && this.free.length < Math.max(2, this.budgetBytes / this.chunkBytes)) {
      this.free.push(backing);
      this.trimWhenIdle();
    }
    this.wake();
  }

  /** Drops the free chunk buffers once no chunk buffer has been taken for `idleFreeMs` (see the file comment). */
  private trimWhenIdle(): void {
    if (this.trimTimer !== undefined) return;
    const check = (): void => {
      const idleFor = performance.now() - this.lastChunkTaken;
      if (idleFor >= this.idleFreeMs) {
        this.free.length = 0;
        this.trimTimer = undefined;
      } else {
        this.trimTimer = setTimeout(check, this.idleFreeMs - idleFor).unref();
      }
    };
    this.trimTimer = setTimeout(check, this.idleFreeMs).unref();
  }

  /**
   * Stops counting a buffer that will never be released (the read-ahead of a stream destroyed
   * before it was consumed): its bytes leave the budget, and the buffer is not reused, since a
   * read may still be filling it.
   */
  forget(buffer: Uint8Array): void {
    const entry = this.owned.get(buffer.buffer);
    if (!entry) return;
    this.owned.delete(entry.backing.buffer);
    this.charged -= entry.bytes;
    this.wake();
  }

  private wake(): void {
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
    if (this.charged < this.budgetBytes) return;
    const deadline = Date.now() + maxWaitMs;
    while (this.charged >= this.budgetBytes && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(deadline - Date.now(), 0));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }
}

/** A buffer of `bytes` bytes of its own, in shared memory (see the file comment). */
function sharedBuffer(bytes: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(bytes));
}
