/**
 * A test double for the wrapper tests: `FlakyDriver` wraps a real driver and injects failures
 * on demand (the next N calls of an operation, a read stream that breaks after N bytes) or at
 * random with a fixed seed, and logs every call that reached it. No network, no timing.
 */
import { Readable, Transform } from 'node:stream';
import { DriverError, type ErrorKind } from '../../src/errors.js';
import type { CommitOptions, Committed, CopyWithinOptions, Driver, Entry, FileHashes, ReadHashesOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../../src/drivers/types.js';
import { ForwardingDriver, ForwardingWriteSession } from '../../src/drivers/wrappers/forwarding.js';

export type FlakyOp = 'list' | 'stat' | 'openRead' | 'readHashes' | 'openWrite' | 'delete' | 'copyWithin' | 'matches' | 'write' | 'commit';

interface Fault {
  times: number;
  readonly kind: ErrorKind;
  /** `before`: fail without calling through; `after`: call through, then fail (a lost answer). */
  readonly when: 'before' | 'after';
}

interface ReadFault {
  times: number;
  readonly afterBytes: number;
  /** A kind: the stream errors with it; `close`: the stream is destroyed without an error. */
  readonly how: ErrorKind | 'close';
}

export interface RandomFaults {
  readonly seed: number;
  /** Chance that a call (or a read stream) fails once. */
  readonly probability: number;
}

/** Errors the double injects carry this code. */
export const INJECTED = 'E_INJECTED';

export class FlakyDriver extends ForwardingDriver {
  /** Every call that reached this driver, e.g. `write a/b 3`, `openRead k 3500+-`. */
  readonly log: string[] = [];
  /** Errors injected so far. */
  injected = 0;
  readonly #faults = new Map<FlakyOp, Fault[]>();
  readonly #readFaults: ReadFault[] = [];
  #random: (() => number) | undefined;
  #probability = 0;

  constructor(inner: Driver) {
    super(inner);
  }

  protected override forwardCopyWithin(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void> {
    return this.#call('copyWithin', `${fromKey} ${toKey}`, () => super.forwardCopyWithin(fromKey, toKey, options));
  }

  protected override forwardReadHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    return this.#call('readHashes', key, () => super.forwardReadHashes(key, options));
  }

  /** The next `times` calls of `op` fail with `kind`. */
  fail(op: FlakyOp, times: number, kind: ErrorKind = 'retryable', when: 'before' | 'after' = 'before'): this {
    const list = this.#faults.get(op) ?? [];
    list.push({ times, kind, when });
    this.#faults.set(op, list);
    return this;
  }

  /** The next `times` read streams break after delivering `afterBytes` bytes each. */
  failReadsAfter(afterBytes: number, times: number, how: ErrorKind | 'close' = 'retryable'): this {
    this.#readFaults.push({ afterBytes, times, how });
    return this;
  }

  /** From now on, every call fails once (before calling through) with this seeded probability. */
  randomFaults({ seed, probability }: RandomFaults): this {
    let state = seed | 0 || 1;
    this.#random = () => {
      state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
      return (state >>> 0) / 2 ** 32;
    };
    this.#probability = probability;
    return this;
  }

  count(prefix: string): number {
    return this.log.filter((line) => line === prefix || line.startsWith(`${prefix} `)).length;
  }

  #error(op: string, what: string, kind: ErrorKind): DriverError {
    this.injected++;
    return new DriverError(INJECTED, `${this.name}: ${what}: injected ${kind} fault in ${op}`, { kind });
  }

  #take(op: FlakyOp): Fault | undefined {
    const list = this.#faults.get(op);
    const fault = list?.[0];
    if (!list || !fault) return undefined;
    if (--fault.times <= 0) list.shift();
    return fault;
  }

  async #call<T>(op: FlakyOp, what: string, action: () => Promise<T>): Promise<T> {
    this.log.push(`${op} ${what}`);
    const fault = this.#take(op);
    if (fault?.when === 'before') throw this.#error(op, what, fault.kind);
    if (!fault && this.#random && this.#random() < this.#probability) throw this.#error(op, what, 'retryable');
    const result = await action();
    if (fault?.when === 'after') throw this.#error(op, what, fault.kind);
    return result;
  }

  override async *list(prefix: string, options?: SignalOptions): AsyncIterable<Entry> {
    this.log.push(`list ${prefix}`);
    const fault = this.#take('list');
    if (fault?.when === 'before' || (!fault && this.#random && this.#random() < this.#probability)) throw this.#error('list', prefix, fault?.kind ?? 'retryable');
    yield* this.inner.list(prefix, options);
    if (fault?.when === 'after') throw this.#error('list', prefix, fault.kind);
  }

  override stat(key: string, options?: SignalOptions): Promise<Entry | undefined> {
    return this.#call('stat', key, () => this.inner.stat(key, options));
  }

  override async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const stream = await this.#call('openRead', `${key} ${options.offset ?? 0}+${options.length ?? '-'}`, () => this.inner.openRead(key, options));
    let fault: ReadFault | undefined;
    const head = this.#readFaults[0];
    if (head) {
      fault = head;
      if (--head.times <= 0) this.#readFaults.shift();
    } else if (this.#random && this.#random() < this.#probability) {
      fault = { times: 1, afterBytes: Math.floor(this.#random() * 100_000), how: 'retryable' };
    }
    return fault ? this.#breaking(stream, key, fault) : stream;
  }

  /** Passes `afterBytes` bytes of `inner` on, then breaks (error or bare close). */
  #breaking(inner: Readable, key: string, fault: ReadFault): Readable {
    let passed = 0;
    let broken = false;
    const breakNow = (): void => {
      if (broken || out.writableEnded) return; // the data ended before the fault point
      broken = true;
      inner.destroy();
      if (fault.how === 'close') out.destroy();
      else out.destroy(this.#error('read', key, fault.how));
    };
    const out = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        const room = fault.afterBytes - passed;
        if (chunk.length <= room) {
          passed += chunk.length;
          callback(null, chunk);
          return;
        }
        if (room > 0) out.push(chunk.subarray(0, room));
        passed += Math.max(0, room);
        // No callback: the transform stalls here, so no later data (nor the end) can follow the
        // fault point before the stream breaks.
        setImmediate(breakNow); // let the partial chunk reach the reader first
      },
      flush(callback) {
        // The stream ended before the fault point: nothing to break.
        callback();
      },
    });
    inner.once('error', (err) => out.destroy(err));
    out.once('close', () => inner.destroy());
    inner.pipe(out);
    if (fault.afterBytes === 0) setImmediate(breakNow);
    return out;
  }

  override async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const session = await this.#call('openWrite', key, () => this.inner.openWrite(key, options));
    return new FlakySession(session, this);
  }

  /** Used by sessions. */
  callFromSession<T>(op: FlakyOp, what: string, action: () => Promise<T>): Promise<T> {
    return this.#call(op, what, action);
  }

  override delete(key: string, options?: SignalOptions): Promise<void> {
    return this.#call('delete', key, () => this.inner.delete(key, options));
  }

}

class FlakySession extends ForwardingWriteSession {
  constructor(inner: WriteSession, readonly driver: FlakyDriver) {
    super(inner);
  }
  override matches(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<boolean> {
    return this.driver.callFromSession('matches', `${this.key} ${index}`, () => this.inner.matches(index, bytes, options));
  }
  override write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> {
    return this.driver.callFromSession('write', `${this.key} ${index}`, () => this.inner.write(index, bytes, options));
  }
  override commit(options: CommitOptions): Promise<Committed | void> {
    return this.driver.callFromSession('commit', this.key, () => this.inner.commit(options));
  }
}
