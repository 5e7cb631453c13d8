/**
 * The bandwidth limit layer (`--bwlimit`, and per destination in the config), so an off-site
 * copy does not saturate the office uplink.
 *
 * `createRateLimiter(bytesPerSecond)` is a token bucket that any number of drivers may share:
 * one limiter given to every destination caps their sum, one per destination caps each.
 * `withBandwidthLimit(driver, [total, own])` charges every byte written through
 * `WriteSession.write` to all the given limiters before handing the part to the driver (and,
 * with `limitReads`, every byte of `openRead` streams before passing it on).
 *
 * The bucket starts empty and holds at most `burstBytes` (default: one second's worth, capped at
 * 4 MiB), so a limit holds from the first byte and an idle spell buys at most a short burst.
 * Takers never overdraw it in one go: a take is cut into slices of at most 256 KiB, each one
 * reserved in arrival order and paid for by waiting, so an 8 MiB part is paced in ~32 small
 * steps that interleave fairly with other writers, instead of one long sleep that locks
 * everybody else out. A write hands the whole part to the driver once it is paid for, so on the
 * wire the bytes of a part still leave in one burst (per part in flight); the average over a
 * part, and over the run, is the limit. Reads are paced per slice, which also slows the reads
 * from the network through the stream's backpressure.
 *
 * The driver's `readHashes` (a read that hashes without handing over the bytes) is not offered
 * through this layer: the engine then reads through `openRead`, paced.
 *
 * Not charged: `matches` (drivers that read a part back to compare it do so on their own
 * connection; S3 compares ETags), `copyWithin` (server-side), list/stat/delete, and writes opened
 * with `unpaced` (the lock file's few hundred bytes a minute, which must never make a stop wait). Put the retry
 * layer outside this one (`withRetry(withBandwidthLimit(d, ...))`) so that parts sent again are
 * charged again.
 */
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { DriverError, UsageError, throwIfAborted } from '../../errors.js';
import type { Driver, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../types.js';
import { ForwardingDriver, ForwardingWriteSession } from './forwarding.js';
import { abortableSleep } from './sleep.js';

const MiB = 1024 * 1024;
/** Largest amount reserved from a bucket at once. */
export const RATE_LIMIT_SLICE_BYTES = 256 * 1024;
/** Cap of the default burst. */
export const MAX_DEFAULT_BURST_BYTES = 4 * MiB;

export interface RateLimiter {
  /** The sustained rate. */
  readonly bytesPerSecond: number;
  /** Most bytes that can pass at once after an idle spell. */
  readonly burstBytes: number;
  /**
   * Resolves once `bytes` may pass. Concurrent takers are served in arrival order, slice by
   * slice. Rejects with `AbortedError` when `signal` fires (the unpaid slice is given back).
   */
  take(bytes: number, signal?: AbortSignal): Promise<void>;
}

export interface RateLimiterOptions {
  /** @default min(bytesPerSecond, 4 MiB) */
  readonly burstBytes?: number;
  /** Injectable clock for tests, in milliseconds. @default performance.now */
  readonly now?: () => number;
  /** Injectable sleep for tests; must reject when `signal` fires. */
  readonly sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
}

function checkRate(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${what} must be a positive number of bytes per second, got ${String(value)}`);
  }
  return value;
}

/**
 * A token bucket that may run into debt: a taker reserves its slice at once (the balance may go
 * negative) and then waits until the refill has paid the debt. Later takers see the debt and
 * wait behind it, which is what makes the order fair without a queue. Timer lateness never
 * accumulates: the balance is recomputed from the clock on every take.
 */
class TokenBucket implements RateLimiter {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  readonly #sliceBytes: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  #tokens = 0;
  #updatedAt: number;

  constructor(bytesPerSecond: number, options: RateLimiterOptions) {
    this.bytesPerSecond = checkRate(bytesPerSecond, 'bandwidth limit');
    const burst = options.burstBytes ?? Math.min(bytesPerSecond, MAX_DEFAULT_BURST_BYTES);
    if (!Number.isFinite(burst) || burst < 1) throw new UsageError(`bandwidth limit: burstBytes must be at least 1, got ${String(burst)}`);
    this.burstBytes = burst;
    this.#sliceBytes = Math.max(1, Math.min(RATE_LIMIT_SLICE_BYTES, Math.floor(burst)));
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? ((ms, signal) => abortableSleep(ms, signal, 'bandwidth limit wait'));
    this.#updatedAt = this.#now();
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) {
      throw new DriverError('E_BAD_ARGUMENT', `bandwidth limit: cannot take ${String(bytes)} bytes`, { kind: 'fatal' });
    }
    throwIfAborted(signal, 'bandwidth limit wait');
    for (let left = bytes; left > 0; left -= this.#sliceBytes) await this.#takeSlice(Math.min(left, this.#sliceBytes), signal);
  }

  async #takeSlice(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const now = this.#now();
    this.#tokens = Math.min(this.burstBytes, this.#tokens + ((now - this.#updatedAt) * this.bytesPerSecond) / 1000);
    this.#updatedAt = now;
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return;
    const waitMs = (-this.#tokens * 1000) / this.bytesPerSecond;
    try {
      await this.#sleep(Math.ceil(waitMs), signal);
    } catch (err) {
      this.#tokens += bytes; // not sent: others may use it
      throw err;
    }
  }
}

/**
 * A token bucket of `bytesPerSecond` (see `RateLimiter`). Throws `UsageError` unless the rate is
 * a positive finite number. Share one instance between drivers for a total limit.
 */
export function createRateLimiter(bytesPerSecond: number, options: RateLimiterOptions = {}): RateLimiter {
  return new TokenBucket(bytesPerSecond, options);
}

/** Waits until `bytes` may pass every limiter (slice by slice, all limiters at once). */
export async function takeFromAll(limiters: readonly RateLimiter[], bytes: number, signal?: AbortSignal): Promise<void> {
  if (limiters.length === 1) return (limiters[0] as RateLimiter).take(bytes, signal);
  throwIfAborted(signal, 'bandwidth limit wait');
  for (let left = bytes; left > 0; left -= RATE_LIMIT_SLICE_BYTES) {
    const slice = Math.min(left, RATE_LIMIT_SLICE_BYTES);
    await Promise.all(limiters.map((limiter) => limiter.take(slice, signal)));
  }
}

export interface BandwidthLimitOptions {
  /** Also pace the bytes of `openRead` streams (restores, pulls, deep verification). @default false */
  readonly limitReads?: boolean;
}

/** Charges every part written to the limiters before passing it on; everything else passes through. */
class LimitedWriteSession extends ForwardingWriteSession {
  constructor(inner: WriteSession, readonly limiters: readonly RateLimiter[]) {
    super(inner);
  }

  override async write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> {
    await takeFromAll(this.limiters, bytes.byteLength, options?.signal);
    return this.inner.write(index, bytes, options);
  }
}

/** Passes `inner`'s bytes on in slices, each one paid for first. Errors of `inner` pass through unchanged. */
function pacedStream(inner: Readable, limiters: readonly RateLimiter[], what: string, signal: AbortSignal | undefined): Readable {
  const paced = new Transform({
    readableHighWaterMark: inner.readableHighWaterMark,
    transform(chunk: Uint8Array, _encoding, callback) {
      void (async () => {
        for (let start = 0; start < chunk.length; start += RATE_LIMIT_SLICE_BYTES) {
          const slice = chunk.subarray(start, start + RATE_LIMIT_SLICE_BYTES);
          await takeFromAll(limiters, slice.length, signal);
          if (paced.destroyed) return;
          paced.push(slice);
        }
      })().then(() => callback(), (err: Error) => callback(err));
    },
  });
  inner.once('error', (err) => paced.destroy(err));
  inner.once('close', () => {
    if (!inner.readableEnded) paced.destroy(new DriverError('E_PREMATURE_CLOSE', `${what}: read stream closed before its end`, { kind: 'retryable' }));
  });
  paced.once('close', () => inner.destroy());
  inner.pipe(paced);
  return paced;
}

/** Paces `openWrite` sessions (and, with `limitReads`, `openRead` streams); everything else passes through. */
class BandwidthLimitedDriver extends ForwardingDriver {
  constructor(inner: Driver, readonly limiters: readonly RateLimiter[], readonly limitOptions: BandwidthLimitOptions) {
    super(inner);
  }

  /** Reads must come through `openRead`, where they are paced: no `readHashes` around it. */
  protected override get forwardsReadHashes(): boolean {
    return false;
  }

  override async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const stream = await this.inner.openRead(key, options);
    return this.limitOptions.limitReads ? pacedStream(stream, this.limiters, `${this.name}: ${key}`, options.signal) : stream;
  }

  /** Sessions opened with `unpaced` (our lock file) are not paced: a stop must not wait for them. */
  override async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const session = await this.inner.openWrite(key, options);
    return options.unpaced ? session : new LimitedWriteSession(session, this.limiters);
  }
}

/**
 * Wraps `driver` so that bytes written (and with `limitReads`, bytes read) pass every limiter in
 * `limiters`: typically the run's total limit and the destination's own. With no limiters the
 * driver itself is returned. Every other member (`sync`, `copyWithin`, ...) passes through
 * unchanged (./forwarding.ts).
 */
export function withBandwidthLimit(driver: Driver, limiters: readonly RateLimiter[], options: BandwidthLimitOptions = {}): Driver {
  if (limiters.length === 0) return driver;
  return new BandwidthLimitedDriver(driver, [...limiters], options);
}
