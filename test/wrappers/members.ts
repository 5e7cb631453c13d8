/**
 * "A wrapper keeps every method of the driver it wraps" (rclone's FsCheckWrap idea), as a test
 * case any wrapper stack can run: `checkKeepsMembers(label, wrap)` where `wrap(inner)` builds the
 * stack over `inner`.
 *
 * - Over a `RecordingDriver` (every member of the contract, optional ones included, plus members
 *   the contract does not name): each of its members (own and inherited) must exist on the
 *   wrapper, every method must reach the recording driver when called, every data member must
 *   read the same value, and the capabilities must be the same. The same for the write session.
 * - Over the same driver without `copyWithin`: the stack must not invent one.
 * - Members a stack must withhold (`withheld`: `readHashes` below a bandwidth limit or encryption,
 *   which must read through their own `openRead`) are absent from it, and every other member passes.
 * - Over a real driver (`realInner`): every member of it, and of a write session it opens, exists
 *   on the wrapper and its session (methods as methods, data with the same value).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import type {
  Capabilities, CommitOptions, Driver, Entry, FileHashes, ReadHashesOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession,
} from '../../src/drivers/types.js';
import { filesystemLocation, type Identity, type Location } from '../../src/drivers/location.js';
import { memberNames } from '../../src/drivers/wrappers/forwarding.js';

const CAPABILITIES: Capabilities = {
  rangeReads: true, resumableWrites: true, atomicCommit: true, storedHash: true, serverSideCopy: true,
  minPartBytes: 1, maxPartBytes: 1024 ** 3, maxParts: Infinity, parallelPartWrites: true, maxConcurrency: 4,
};

/** A write session that logs every call and answers at once. */
export class RecordingSession implements WriteSession {
  readonly resumableParts: ReadonlySet<number> = new Set([0]);
  /** Not in the contract: must pass through too. */
  readonly sessionExtra = { tag: 'session-extra' };
  constructor(readonly log: string[], readonly key: string, readonly size: number, readonly partBytes: number) {}
  async matches(index: number, _bytes: Uint8Array, _options?: SignalOptions): Promise<boolean> { this.log.push(`matches ${index}`); return true; }
  async write(index: number, _bytes: Uint8Array, _options?: SignalOptions): Promise<void> { this.log.push(`write ${index}`); }
  async commit(_options: CommitOptions): Promise<void> { this.log.push('commit'); }
  async suspend(): Promise<void> { this.log.push('suspend'); }
  async abort(): Promise<void> { this.log.push('abort'); }
  /** Not in the contract. */
  async sessionMethod(): Promise<string> { this.log.push('sessionMethod'); return 'session-method'; }
}

/** A driver that logs every call (no IO). Has every member of the contract, and two that it does not name. */
export class RecordingDriver implements Driver {
  readonly log: string[] = [];
  readonly name = 'rec';
  readonly description = 'recording driver';
  readonly capabilities: Capabilities = { ...CAPABILITIES };
  readonly location: Location = filesystemLocation('/r');
  /** A data member the contract does not name (like a property a later change adds to every driver). */
  readonly extraData = { kind: 'recording', root: '/r' };
  sessions: RecordingSession[] = [];
  /** Present unless made `withoutCopy` (then `serverSideCopy` is false too). */
  readonly copyWithin?: (fromKey: string, toKey: string, options?: SignalOptions) => Promise<void>;

  constructor(withoutCopy = false) {
    if (withoutCopy) this.capabilities = { ...CAPABILITIES, serverSideCopy: false };
    else this.copyWithin = async (fromKey, toKey) => { this.log.push(`copyWithin ${fromKey} ${toKey}`); };
  }
  async identify(_options?: SignalOptions): Promise<Identity> { this.log.push('identify'); return { location: this.location }; }
  async *list(prefix: string, _options?: SignalOptions): AsyncIterable<Entry> { this.log.push(`list ${prefix}`); yield { key: `${prefix}x`, size: 1, mtimeMs: 0 }; }
  async stat(key: string, _options?: SignalOptions): Promise<Entry | undefined> { this.log.push(`stat ${key}`); return undefined; }
  async openRead(key: string, _options?: ReadOptions): Promise<Readable> { this.log.push(`openRead ${key}`); return Readable.from([Buffer.from('x')]); }
  async readHashes(key: string, _options: ReadHashesOptions): Promise<FileHashes> { this.log.push(`readHashes ${key}`); return { chunks: [] }; }
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    this.log.push(`openWrite ${key}`);
    const session = new RecordingSession(this.log, key, options.size, options.partBytes);
    this.sessions.push(session);
    return session;
  }
  async delete(key: string, _options?: SignalOptions): Promise<void> { this.log.push(`delete ${key}`); }
  async sync(_options?: SignalOptions): Promise<void> { this.log.push('sync'); }
  async close(): Promise<void> { this.log.push('close'); }
  /** A method the contract does not name. */
  async extraMethod(value: number): Promise<number> { this.log.push(`extraMethod ${value}`); return value * 2; }
}

/** Arguments that make each member of a recording driver or session do its call. */
const DRIVER_CALLS: Record<string, { args: unknown[]; logged: string }> = {
  list: { args: ['p/', {}], logged: 'list p/' },
  stat: { args: ['k', {}], logged: 'stat k' },
  openRead: { args: ['k', {}], logged: 'openRead k' },
  readHashes: { args: ['k', { size: 0, chunkBytes: 1 }], logged: 'readHashes k' },
  openWrite: { args: ['w', { size: 3, partBytes: 2 }], logged: 'openWrite w' },
  delete: { args: ['k', {}], logged: 'delete k' },
  sync: { args: [{}], logged: 'sync' },
  copyWithin: { args: ['a', 'b', {}], logged: 'copyWithin a b' },
  identify: { args: [{}], logged: 'identify' },
  close: { args: [], logged: 'close' },
  extraMethod: { args: [21], logged: 'extraMethod 21' },
};
const SESSION_CALLS: Record<string, { args: unknown[]; logged: string }> = {
  matches: { args: [0, new Uint8Array(2), {}], logged: 'matches 0' },
  write: { args: [1, new Uint8Array(1), {}], logged: 'write 1' },
  commit: { args: [{ hash: 'xxh64:0000000000000000' }], logged: 'commit' },
  suspend: { args: [], logged: 'suspend' },
  abort: { args: [], logged: 'abort' },
  sessionMethod: { args: [], logged: 'sessionMethod' },
};

/** Awaits a promise, drains an async iterable or a stream, so that lazy wrappers do their call. */
async function settle(value: unknown): Promise<unknown> {
  const result = await value;
  if (result instanceof Readable) {
    for await (const _ of result) { /* drain */ }
  } else if (result !== null && typeof result === 'object' && Symbol.asyncIterator in result) {
    for await (const _ of result as AsyncIterable<unknown>) { /* drain */ }
  }
  return result;
}

/** Checks that every member of `inner` exists on `wrapped` and reaches `inner` (or reads the same) when used. */
async function assertForwards(what: string, inner: object, wrapped: object, log: string[], calls: Record<string, { args: unknown[]; logged: string }>, withheld: readonly string[] = []): Promise<void> {
  const names = memberNames(inner).filter((n): n is string => typeof n === 'string' && !withheld.includes(n));
  for (const name of withheld) assert.equal(Reflect.get(wrapped, name), undefined, `${what}: ${name} must not pass through this wrapper`);
  for (const name of ['log', 'sessions']) names.splice(names.indexOf(name), names.includes(name) ? 1 : 0); // bookkeeping of the double
  for (const name of names) {
    const innerValue: unknown = Reflect.get(inner, name);
    const wrappedValue: unknown = Reflect.get(wrapped, name);
    if (typeof innerValue === 'function') {
      assert.equal(typeof wrappedValue, 'function', `${what}: ${name} is missing on the wrapper`);
      const call = calls[name];
      assert.ok(call, `${what}: no test call for ${name}: add one to test/wrappers/members.ts`);
      const before = log.length;
      await settle((wrappedValue as (...a: unknown[]) => unknown).apply(wrapped, call.args));
      assert.ok(log.slice(before).includes(call.logged), `${what}: calling ${name} did not reach the inner one (logged: ${JSON.stringify(log.slice(before))})`);
    } else if (innerValue !== undefined) {
      assert.deepEqual(wrappedValue, innerValue, `${what}: ${name} differs on the wrapper`);
    }
  }
}

/**
 * Every function-valued member of `inner` is a function on `wrapped`; every data member is there
 * too, reading the same value when `sameValues` (not for two sessions of different keys).
 */
function assertExposes(what: string, inner: object, wrapped: object, sameValues: boolean, withheld: readonly string[] = []): void {
  for (const name of withheld) assert.equal(Reflect.get(wrapped, name), undefined, `${what}: ${name} must not pass through this wrapper`);
  for (const name of memberNames(inner)) {
    if (typeof name === 'string' && withheld.includes(name)) continue;
    const innerValue: unknown = Reflect.get(inner, name);
    const wrappedValue: unknown = Reflect.get(wrapped, name);
    if (typeof innerValue === 'function') assert.equal(typeof wrappedValue, 'function', `${what}: ${String(name)} is missing on the wrapper`);
    else if (innerValue === undefined) continue;
    else if (sameValues) assert.deepEqual(wrappedValue, innerValue, `${what}: ${String(name)} differs on the wrapper`);
    else assert.ok(name in wrapped && wrappedValue !== undefined, `${what}: ${String(name)} is missing on the wrapper`);
  }
}

export interface KeepsMembersOptions {
  /** A real driver to wrap as well (closed by the check). */
  readonly realInner?: () => Promise<Driver>;
  /** Members the stack must not have even though the driver has them (see the module comment). */
  readonly withheld?: readonly string[];
}

/** Registers the "keeps every member" cases for the stack `wrap` builds (see the module comment). */
export function checkKeepsMembers(label: string, wrap: (inner: Driver) => Driver | Promise<Driver>, options: KeepsMembersOptions = {}): void {
  describe(`${label}: keeps every member of the driver it wraps`, () => {
    it('every method of the driver (optional and unnamed ones too) reaches it; data and capabilities read the same', async () => {
      const inner = new RecordingDriver();
      const wrapped = await wrap(inner);
      assert.deepEqual({ ...wrapped.capabilities }, { ...inner.capabilities });
      await assertForwards(label, inner, wrapped, inner.log, DRIVER_CALLS, options.withheld);
      assert.equal(await (wrapped as unknown as RecordingDriver).extraMethod(2), 4, 'results pass through');
    });

    it('every member of its write sessions reaches the driver\'s session', async () => {
      const inner = new RecordingDriver();
      const wrapped = await wrap(inner);
      const session = await wrapped.openWrite('s', { size: 3, partBytes: 2 });
      const innerSession = inner.sessions.at(-1) as RecordingSession;
      assert.ok(innerSession, 'openWrite reached the driver');
      for (const name of ['key', 'size', 'partBytes', 'resumableParts'] as const) assert.deepEqual(session[name], innerSession[name], name);
      await assertForwards(`${label} session`, innerSession, session, inner.log, SESSION_CALLS);
    });

    it('has no copyWithin when the driver has none', async () => {
      const inner = new RecordingDriver(true);
      const wrapped = await wrap(inner);
      assert.equal(wrapped.copyWithin, undefined);
      assert.equal(wrapped.capabilities.serverSideCopy, false);
    });

    if (options.realInner) {
      const realInner = options.realInner;
      it('exposes every member of a real driver and of its write sessions', async () => {
        const inner = await realInner();
        const wrapped = await wrap(inner);
        try {
          assertExposes(label, inner, wrapped, true, options.withheld);
          const direct = await inner.openWrite('members/direct', { size: 1, partBytes: 1 });
          const session = await wrapped.openWrite('members/wrapped', { size: 1, partBytes: 1 });
          assertExposes(`${label} session`, direct, session, false);
          await direct.abort();
          await session.abort();
        } finally {
          await wrapped.close();
        }
      });
    }
  });
}
