/**
 * A counting semaphore: at most `limit` holders at once; the others wait, first come first
 * served. Used for the requests in flight of one file (sftp `concurrencyPerFile`) and for the
 * uploads in flight against one destination (s3 `maxConcurrency`).
 */
import { AbortedError } from '../../errors.js';

export class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore: limit must be a positive integer, got ${limit}`);
    this.#free = limit;
  }

  /** Holders right now (for tests). */
  get busy(): number {
    return this.limit - this.#free;
  }

  /**
   * Waits for a slot. With a `signal`, waiting ends with an `AbortedError` (`<what> aborted`)
   * as soon as it fires, and no slot is then held. Every successful acquire needs one `release`.
   */
  async acquire(signal?: AbortSignal, what = 'wait'): Promise<void> {
    if (signal?.aborted) throw new AbortedError(what);
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#waiting.indexOf(grant);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(new AbortedError(what));
      };
      // A freed slot passes straight to the first waiter (#free stays as it is).
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#free++;
  }

  /** Runs `fn` once a slot is free and frees it when `fn` settles; `fn` never runs when `signal` fires first. */
  async run<T>(signal: AbortSignal | undefined, what: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(signal, what);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
