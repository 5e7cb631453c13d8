/**
 * The one timer the driver wrappers (retry, bandwidth limit) wait on: a sleep that ends early
 * with `AbortedError` when its signal fires, and leaves no timer or listener behind either way.
 */
import { AbortedError } from '../../errors.js';

/** Waits `ms` milliseconds; rejects with `AbortedError(what)` as soon as `signal` fires. */
export function abortableSleep(ms: number, signal?: AbortSignal, what = 'wait'): Promise<void> {
  if (signal?.aborted) return Promise.reject(new AbortedError(what));
  if (ms <= 0 && signal === undefined) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new AbortedError(what));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
