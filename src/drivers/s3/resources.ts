/**
 * Resource helpers of the object driver (./driver.ts): `Slots` caps the uploads in flight
 * against one destination (`maxConcurrency`).
 */
import { AbortedError } from '../../errors.js';

/** At most `limit` holders at once; the others wait, first come first served. */
export class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`slots: limit must be a positive integer, got ${limit}`);
    this.#free = limit;
  }

  /** Holders right now (for tests). */
  get busy(): number {
    return this.limit - this.#free;
  }

  /**
   * Runs `fn` once a slot is free and frees it when `fn` settles. Waiting ends with an
   * `AbortedError` (`what aborted`) as soon as `signal` fires; `fn` is then never called.
   */
  async run<T>(signal: AbortSignal | undefined, what: string, fn: () => Promise<T>): Promise<T> {
    await this.#acquire(signal, what);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  async #acquire(signal: AbortSignal | undefined, what: string): Promise<void> {
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

  #release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#free++;
  }
}
