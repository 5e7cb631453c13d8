/**
 * The retry layer: `withRetry(driver, policy)` returns a driver that retries errors of kind
 * `retryable` with exponential backoff and full jitter, and lets every other kind through at
 * once (`auth`, `permanent`, `integrity`, `not-found`, `fatal`, and `AbortedError`). It is a
 * wrapper around any driver, like restic's retry backend, so no driver repeats this logic.
 *
 * What is retried, and at which granularity:
 * - `stat`, `delete`, `copyWithin`, `openWrite` (the open only), `readHashes`: the whole call.
 * - `WriteSession.matches`, `.write`, `.commit`: each call on its own, so a failed part is sent
 *   again as that part only; the parts already written stay where they are. `suspend` and
 *   `abort` pass through (they never throw, or are the way out).
 * - `Driver.sync` passes through, never retried (a failed fsync must not be retried).
 * - `openRead`: the open, and then the stream itself: when it fails mid-way with a retryable
 *   error, it is reopened at `offset + bytes delivered so far` (length reduced to match) and the
 *   reader sees one unbroken stream. The retry budget of a stream counts consecutive failures
 *   without progress: every byte delivered resets it, so a long read over a flaky link keeps
 *   going as long as each reconnection moves it forward.
 * - `list`: retried only when it fails before yielding an entry; once entries went out, a retry
 *   would repeat them, so the error is rethrown as is.
 *
 * When the retries are used up, the last error is rethrown: same object, same class, code and
 * kind, with ` (after N retries)` appended to its message. The signal is honoured during every
 * backoff sleep (rejects with `AbortedError` at once). Callers wanting retried bytes to count
 * against a bandwidth limit put this layer outside it: `withRetry(withBandwidthLimit(d, ...))`.
 */
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { AbortedError, DriverError, eitherSignal, errorKind, UsageError } from '../../errors.js';
import type { Identity } from '../location.js';
import type { CommitOptions, Committed, CopyWithinOptions, Driver, Entry, FileHashes, ListOptions, ReadHashesOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../types.js';
import { ForwardingDriver, ForwardingWriteSession } from './forwarding.js';
import { abortableSleep } from './sleep.js';

/** The operations the retry layer can repeat, as reported to `onRetry`. */
export type RetryOperation = 'stat' | 'delete' | 'copyWithin' | 'openWrite' | 'matches' | 'write' | 'commit' | 'openRead' | 'read' | 'list' | 'identify' | 'readHashes';

/** What `onRetry` learns before each backoff sleep. */
export interface RetryInfo {
  readonly op: RetryOperation;
  /** The key (for `list`: the prefix; for `copyWithin`: the source key). */
  readonly key?: string;
  /** The part index, for `matches` and `write`. */
  readonly part?: number;
  /** For `read`: the absolute offset the stream will be reopened at. */
  readonly offset?: number;
  /** 1 for the first retry, up to `retries`. */
  readonly attempt: number;
  /** How long the layer now sleeps before that retry. */
  readonly delayMs: number;
  /** The retryable error that caused it. */
  readonly error: unknown;
}

export interface RetryPolicy {
  /** Retries after the first attempt; 0 turns retrying off. @default 5 */
  readonly retries?: number;
  /** Backoff cap of the first retry; doubles for each further one. @default 250 */
  readonly baseDelayMs?: number;
  /** Largest backoff cap. @default 10000 */
  readonly maxDelayMs?: number;
  /**
   * Stop retrying an operation that has kept failing for this long (ms since its first failure,
   * or, for a read stream, since it last delivered a byte), even with retries left. @default Infinity
   */
  readonly maxRetryMs?: number;
  /** Called before each backoff sleep (for logs/progress). Its exceptions are ignored. */
  readonly onRetry?: (info: RetryInfo) => void;
  /** Injectable sleep for tests. Must reject when `signal` fires. @default a setTimeout that rejects with AbortedError */
  readonly sleep?: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  /** Injectable random source in [0, 1) for the jitter. @default Math.random */
  readonly random?: () => number;
}

export const DEFAULT_RETRY_POLICY = { retries: 5, baseDelayMs: 250, maxDelayMs: 10_000 } as const;

/**
 * "Full jitter" backoff: a uniform delay in `[0, min(maxDelayMs, baseDelayMs * 2^(attempt-1)))`.
 * Spreading retries over the whole window keeps many workers that failed together from
 * hammering a recovering server in step.
 */
export function backoffDelayMs(attempt: number, baseDelayMs: number, maxDelayMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(Math.min(Math.max(random(), 0), 1) * cap);
}

interface Where {
  readonly op: RetryOperation;
  readonly key?: string;
  readonly part?: number;
  readonly offset?: number;
}

function checkPolicyNumber(name: string, value: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`retry policy: ${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${String(value)}`);
  }
  return value;
}

/** The backoff machinery shared by the driver, its sessions and its read streams. */
class Retrier {
  readonly retries: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onRetry: RetryPolicy['onRetry'];
  readonly #sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;
  readonly #random: () => number;
  readonly #maxRetryMs: number;

  constructor(readonly driverName: string, policy: RetryPolicy) {
    this.#maxRetryMs = policy.maxRetryMs === undefined ? Infinity : checkPolicyNumber('maxRetryMs', policy.maxRetryMs, false);
    this.retries = checkPolicyNumber('retries', policy.retries ?? DEFAULT_RETRY_POLICY.retries, true);
    this.#baseDelayMs = checkPolicyNumber('baseDelayMs', policy.baseDelayMs ?? DEFAULT_RETRY_POLICY.baseDelayMs, false);
    this.#maxDelayMs = checkPolicyNumber('maxDelayMs', policy.maxDelayMs ?? DEFAULT_RETRY_POLICY.maxDelayMs, false);
    this.#onRetry = policy.onRetry;
    this.#sleep = policy.sleep ?? ((ms, signal) => abortableSleep(ms, signal, `${driverName}: retry backoff`));
    this.#random = policy.random ?? Math.random;
  }

  /**
   * Called after the `failures`-th consecutive failure: throws `err` when it must not be retried
   * (wrong kind, budget used up, signal fired), otherwise reports and sleeps the backoff.
   */
  async backoff(err: unknown, failures: number, where: Where, signal: AbortSignal | undefined, failingSinceMs = Date.now()): Promise<void> {
    if (errorKind(err) !== 'retryable') throw err;
    if (failures > this.retries) throw this.#exhausted(err);
    if (Date.now() - failingSinceMs > this.#maxRetryMs) throw this.#exhausted(err, failures - 1, Date.now() - failingSinceMs);
    if (signal?.aborted) throw new AbortedError(`${this.driverName}: ${where.op}${where.key === undefined ? '' : ` ${where.key}`}`);
    const delayMs = backoffDelayMs(failures, this.#baseDelayMs, this.#maxDelayMs, this.#random);
    try {
      this.#onRetry?.({ ...where, attempt: failures, delayMs, error: err });
    } catch {
      // A logging callback must not break a transfer.
    }
    await this.#sleep(delayMs, signal);
  }

  /** Runs `action`, retrying it while it fails with retryable errors. */
  async run<T>(where: Where, signal: AbortSignal | undefined, action: () => Promise<T>): Promise<T> {
    let failingSince: number | undefined;
    for (let failures = 1; ; failures++) {
      try {
        return await action();
      } catch (err) {
        failingSince ??= Date.now();
        await this.backoff(err, failures, where, signal, failingSince);
      }
    }
  }

  #exhausted(err: unknown, retries = this.retries, elapsedMs?: number): unknown {
    if (retries > 0 && err instanceof Error) {
      const over = elapsedMs === undefined ? '' : ` over ${Math.round(elapsedMs / 1000)} s`;
      err.message = `${err.message} (after ${retries} ${retries === 1 ? 'retry' : 'retries'}${over})`;
    }
    return err;
  }
}

/** Retries `matches`, `write` and `commit` each on its own; `suspend`, `abort` and the rest pass through. */
class RetryingWriteSession extends ForwardingWriteSession {
  constructor(inner: WriteSession, readonly retrier: Retrier) {
    super(inner);
  }

  override matches(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<boolean> {
    return this.retrier.run({ op: 'matches', key: this.key, part: index }, options?.signal, () => this.inner.matches(index, bytes, options));
  }

  override write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> {
    return this.retrier.run({ op: 'write', key: this.key, part: index }, options?.signal, () => this.inner.write(index, bytes, options));
  }

  override commit(options: CommitOptions): Promise<Committed | void> {
    return this.retrier.run({ op: 'commit', key: this.key }, options.signal, () => this.inner.commit(options));
  }
}

/**
 * A read stream that survives retryable failures of the stream it wraps by reopening the object
 * at the first byte not yet delivered. Backpressure passes through (the inner stream is paused
 * while this one is full); destroying this stream destroys the inner one and ends any backoff.
 */
class ResumingReadStream extends ReadableStream {
  #inner: Readable | undefined;
  /** The reader asked for data (`_read`) and has not been told "full" since: the inner stream may flow. */
  #wanted = false;
  #delivered = 0;
  /** Consecutive failures since the last byte was delivered. */
  #failures = 0;
  /** When the first of those failures happened. */
  #failingSince: number | undefined;
  /**
   * Ends a backoff sleep when the stream is destroyed. Made only when a retry happens, like
   * `#waitSignal`: aborting a controller builds a DOMException, ~25 us per stream, which added up
   * to seconds over 100,000 small files.
   */
  #stop: AbortController | undefined;
  /** Aborts a backoff sleep when the reader's signal fires or the stream is destroyed. Made only when a retry happens: AbortSignal.any listens on the run's signal until collected. */
  #waitSignal: AbortSignal | undefined;
  readonly #onAbort: () => void;

  constructor(
    first: Readable,
    readonly retrier: Retrier,
    readonly key: string,
    readonly start: number,
    readonly length: number | undefined,
    readonly reopen: (offset: number, length: number | undefined, signal: AbortSignal | undefined) => Promise<Readable>,
    readonly signal: AbortSignal | undefined,
  ) {
    super({ highWaterMark: first.readableHighWaterMark });
    this.#onAbort = () => { this.destroy(new AbortedError(`${retrier.driverName}: read ${key}`)); };
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#attach(first);
  }

  /** Bytes handed to the reader so far. */
  get bytesDelivered(): number { return this.#delivered; }

  override _read(): void {
    this.#wanted = true;
    this.#inner?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.signal?.removeEventListener('abort', this.#onAbort);
    this.#stop?.abort();
    const inner = this.#inner;
    this.#inner = undefined;
    inner?.destroy();
    callback(error);
  }

  /**
   * Attaches a (first or reopened) inner stream. It is paused first, so that attaching the
   * 'data' listener does not start it: it flows only while this stream asks for data (`_read`
   * was called and `push` has not said "full" since). Flowing at once read pieces, taking buffers
   * from the engine's pool, before the reader had checked the pool's budget.
   */
  #attach(inner: Readable): void {
    this.#inner = inner;
    inner.pause();
    inner.on('data', (chunk: Uint8Array) => {
      if (inner !== this.#inner) return;
      this.#delivered += chunk.length;
      if (chunk.length > 0) { this.#failures = 0; this.#failingSince = undefined; }
      if (!this.push(chunk)) {
        this.#wanted = false;
        inner.pause();
      }
    });
    inner.once('end', () => {
      if (inner !== this.#inner) return;
      this.#inner = undefined;
      this.push(null);
    });
    inner.once('error', (err: unknown) => this.#failed(inner, err));
    inner.once('close', () => {
      // A stream that closes without 'end' or 'error' was cut short: treat it as a transient fault.
      // (Checked first: every stream closes, and building an error costs ~30 us.)
      if (inner !== this.#inner) return;
      this.#failed(inner, new DriverError('E_PREMATURE_CLOSE', `${this.retrier.driverName}: ${this.key}: read stream closed before its end`, { kind: 'retryable' }));
    });
  }

  #failed(inner: Readable, err: unknown): void {
    if (inner !== this.#inner) return;
    this.#inner = undefined;
    inner.destroy();
    if (this.destroyed) return;
    if (this.length !== undefined && this.#delivered >= this.length) {
      this.push(null); // everything asked for arrived before the fault
      return;
    }
    void this.#resume(err);
  }

  async #resume(first: unknown): Promise<void> {
    let err = first;
    try {
      for (;;) {
        this.#failures++;
        const offset = this.start + this.#delivered;
        this.#stop ??= new AbortController();
        this.#waitSignal ??= eitherSignal(this.#stop.signal, this.signal);
        this.#failingSince ??= Date.now();
        await this.retrier.backoff(err, this.#failures, { op: 'read', key: this.key, offset }, this.#waitSignal, this.#failingSince);
        if (this.destroyed) return;
        try {
          const remaining = this.length === undefined ? undefined : this.length - this.#delivered;
          const next = await this.reopen(offset, remaining, this.signal);
          if (this.destroyed) {
            next.destroy();
            return;
          }
          this.#attach(next);
          if (this.#wanted) next.resume(); // the reader asked while there was no inner stream
          return;
        } catch (reopenError) {
          err = reopenError;
        }
      }
    } catch (final) {
      if (!this.destroyed) this.destroy(final instanceof Error ? final : new Error(String(final)));
    }
  }
}

/**
 * Retries what the module comment lists. Everything else passes through (./forwarding.ts),
 * `sync` included, never retried: after a failed fsync the kernel may have dropped the dirty
 * pages and marked them clean, so a second attempt can succeed without the data being on disk.
 */
class RetryingDriver extends ForwardingDriver {
  readonly #retrier: Retrier;

  constructor(inner: Driver, policy: RetryPolicy) {
    super(inner);
    this.#retrier = new Retrier(inner.name, policy);
  }

  protected override forwardCopyWithin(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void> {
    return this.#retrier.run({ op: 'copyWithin', key: fromKey }, options?.signal, () => super.forwardCopyWithin(fromKey, toKey, options));
  }

  /** The whole call again; bytes a failed attempt told `onBytes` are not told twice. */
  protected override forwardReadHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    const tell = options.onBytes;
    let told = 0;
    return this.#retrier.run({ op: 'readHashes', key }, options.signal, () => {
      let read = 0;
      const onBytes = tell && ((bytes: number): void => {
        read += bytes;
        if (read > told) {
          tell(read - told);
          told = read;
        }
      });
      return super.forwardReadHashes(key, onBytes ? { ...options, onBytes } : options);
    });
  }

  protected override forwardIdentify(options?: SignalOptions): Promise<Identity> {
    return this.#retrier.run({ op: 'identify' }, options?.signal, () => super.forwardIdentify(options));
  }

  override async *list(prefix: string, options: ListOptions = {}): AsyncIterable<Entry> {
    for (let failures = 1; ; failures++) {
      let yielded = false;
      try {
        for await (const entry of this.inner.list(prefix, options)) {
          yielded = true;
          yield entry;
        }
        return;
      } catch (err) {
        if (yielded) throw err;
        await this.#retrier.backoff(err, failures, { op: 'list', key: prefix }, options.signal);
      }
    }
  }

  override stat(key: string, options?: SignalOptions): Promise<Entry | undefined> {
    return this.#retrier.run({ op: 'stat', key }, options?.signal, () => this.inner.stat(key, options));
  }

  override async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const first = await this.#retrier.run({ op: 'openRead', key }, options.signal, () => this.inner.openRead(key, options));
    if (this.#retrier.retries === 0) return first;
    const reopen = (offset: number, length: number | undefined, signal: AbortSignal | undefined): Promise<Readable> =>
      this.inner.openRead(key, { ...options, offset, length, signal });
    return new ResumingReadStream(first, this.#retrier, key, options.offset ?? 0, options.length, reopen, options.signal);
  }

  override async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const session = await this.#retrier.run({ op: 'openWrite', key }, options.signal, () => this.inner.openWrite(key, options));
    return new RetryingWriteSession(session, this.#retrier);
  }

  override delete(key: string, options?: SignalOptions): Promise<void> {
    return this.#retrier.run({ op: 'delete', key }, options?.signal, () => this.inner.delete(key, options));
  }
}

/**
 * Wraps `driver` in the retry layer described at the top of this file. The result keeps the
 * driver's `name`, `description` and `capabilities` (the same object), has `copyWithin` and `identify`
 * (retried like a read) exactly when the driver has them, and passes `sync` (never retried) and every other member through
 * (./forwarding.ts). Throws `UsageError` for a policy with negative or non-finite numbers (or a
 * fractional `retries`).
 */
export function withRetry(driver: Driver, policy: RetryPolicy = {}): Driver {
  return new RetryingDriver(driver, policy);
}
