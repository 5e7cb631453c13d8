/**
 * Forwarding bases for driver wrappers, so that a wrapper cannot drop a method: like a Go struct
 * that embeds restic's `Backend` interface, `ForwardingDriver` and `ForwardingWriteSession` pass
 * every member of the contract (src/drivers/types.ts) through to `inner`, and a wrapper
 * (./retry.ts, ./bwlimit.ts) overrides only what it changes.
 *
 * - Required members (`name`, `description`, `location`, `capabilities`, `list`, `stat`, `openRead`,
 *   `openWrite`, `delete`, `sync`, `close`; the session's `key`, `size`, `partBytes`,
 *   `resumableParts`, `matches`, `write`, `commit`, `suspend`, `abort`) are forwarded by
 *   methods and getters here; the compiler checks that none is missing (`implements`).
 * - Optional members are forwarded exactly when `inner` has them: `copyWithin` exists on the
 *   wrapper only when the inner driver has one (a wrapper changes what it does by overriding
 *   `forwardCopyWithin`); `identify` likewise (`forwardIdentify`). `readHashes` likewise
 *   (`forwardReadHashes`), unless the wrapper's `forwardsReadHashes` says no: a wrapper that
 *   changes the bytes read (encryption) or their pace (bandwidth limit) must not let the engine
 *   read around it, so it has no `readHashes` even when `inner` has one (the engine then reads
 *   through the wrapper's `openRead`). The hint `prepareCopies` is
 *   passed through with the rest (below): a wrapper has nothing to add to it.
 * - Everything else `inner` has (members the contract does not name yet, such as a property a
 *   later change adds to every driver, or a driver's own extras) is passed through too: each is
 *   given to the wrapper at construction as a forwarding function (for methods) or as a getter of
 *   `inner`'s current value (for data), unless the wrapper defines a member of that name itself.
 *   A subclass's own fields of the same name simply replace them.
 *
 * test/wrappers/members.ts checks every wrapper stack against this (rclone's `FsCheckWrap`).
 */
import type { Readable } from 'node:stream';
import type {
  Capabilities, CommitOptions, Committed, CopyWithinOptions, Driver, Entry, FileHashes, ListOptions, ReadHashesOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession,
} from '../types.js';
import type { Identity, Location } from '../location.js';

type CopyWithin = (fromKey: string, toKey: string, options?: CopyWithinOptions) => Promise<Committed | void>;
type Identify = (options?: SignalOptions) => Promise<Identity>;
type ReadHashes = (key: string, options: ReadHashesOptions) => Promise<FileHashes>;

/**
 * The names of every member of `inner` (own and inherited, up to `Object.prototype`), except
 * `constructor`. Exported for the wrapper checks in the tests.
 */
export function memberNames(inner: object): (string | symbol)[] {
  const names = new Set<string | symbol>();
  for (let o: object | null = inner; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const name of Reflect.ownKeys(o)) if (name !== 'constructor') names.add(name);
  }
  return [...names];
}

/** Whether each member a prototype chain defines (nearest definition first) is a method. */
const chainMembers = new WeakMap<object, ReadonlyMap<string | symbol, boolean>>();

function membersOfChain(proto: object): ReadonlyMap<string | symbol, boolean> {
  let members = chainMembers.get(proto);
  if (members === undefined) {
    const found = new Map<string | symbol, boolean>();
    for (const name of memberNames(proto)) {
      let descriptor: PropertyDescriptor | undefined;
      for (let o: object | null = proto; descriptor === undefined && o !== null; o = Object.getPrototypeOf(o) as object | null) {
        descriptor = Object.getOwnPropertyDescriptor(o, name);
      }
      found.set(name, typeof descriptor?.value === 'function');
    }
    members = found;
    chainMembers.set(proto, members);
  }
  return members;
}

/**
 * Copies onto `wrapper` every member of `inner` that `wrapper` does not have (see the module
 * comment): a method as a function calling `inner`'s, anything else as a getter reading
 * `inner`'s current value. Assigning or defining the name on `wrapper` (a subclass field)
 * replaces the pass-through. What the prototype chain holds is looked at once per class (a
 * wrapper is made per write session).
 */
function passThroughRest(wrapper: object, inner: object): void {
  const forward = (name: string | symbol, method: boolean): void => {
    if (name in wrapper) return;
    if (method) {
      const forwarded = (...args: unknown[]): unknown => (Reflect.get(inner, name) as (...a: unknown[]) => unknown).apply(inner, args);
      Object.defineProperty(wrapper, name, { value: forwarded, writable: true, configurable: true, enumerable: false });
    } else {
      Object.defineProperty(wrapper, name, {
        get: () => Reflect.get(inner, name),
        set(value: unknown) { Object.defineProperty(wrapper, name, { value, writable: true, configurable: true, enumerable: true }); },
        configurable: true, enumerable: false,
      });
    }
  };
  const own = Reflect.ownKeys(inner).filter((name) => name !== 'constructor');
  for (const name of own) forward(name, typeof Object.getOwnPropertyDescriptor(inner, name)?.value === 'function');
  const proto = Object.getPrototypeOf(inner) as object | null;
  if (proto === null || proto === Object.prototype) return;
  const shadowed = new Set(own);
  for (const [name, method] of membersOfChain(proto)) if (!shadowed.has(name)) forward(name, method);
}

/** A `Driver` that passes everything to `inner`. Extend it and override what the wrapper changes. */
export class ForwardingDriver implements Driver {
  /**
   * Present exactly when `inner.copyWithin` is (capability `serverSideCopy`); calls
   * `forwardCopyWithin`. Declared, not initialised, so that the constructor's choice stands.
   */
  declare readonly copyWithin?: CopyWithin;
  /** Present exactly when `inner.identify` is; calls `forwardIdentify`. */
  declare readonly identify?: Identify;
  /** Present exactly when `inner.readHashes` is and `forwardsReadHashes` is true; calls `forwardReadHashes`. */
  declare readonly readHashes?: ReadHashes;

  constructor(readonly inner: Driver) {
    if (typeof inner.copyWithin === 'function') {
      Object.defineProperty(this, 'copyWithin', {
        value: ((fromKey, toKey, options) => this.forwardCopyWithin(fromKey, toKey, options)) satisfies CopyWithin,
        writable: true, configurable: true, enumerable: false,
      });
    }
    if (typeof inner.identify === 'function') {
      Object.defineProperty(this, 'identify', {
        value: ((options) => this.forwardIdentify(options)) satisfies Identify,
        writable: true, configurable: true, enumerable: false,
      });
    }
    if (typeof inner.readHashes === 'function') {
      // Withheld as an own `undefined`, so that the pass-through below does not add it either.
      const value = this.forwardsReadHashes ? (((key, options) => this.forwardReadHashes(key, options)) satisfies ReadHashes) : undefined;
      Object.defineProperty(this, 'readHashes', { value, writable: true, configurable: true, enumerable: false });
    }
    passThroughRest(this, inner);
  }

  /**
   * Whether `inner.readHashes` is offered (see the module comment): true for a wrapper that reads
   * the driver's bytes as they are, at the driver's pace. A getter of the class, asked in the
   * constructor: it must not depend on the wrapper's fields.
   */
  protected get forwardsReadHashes(): boolean {
    return true;
  }

  get name(): string { return this.inner.name; }
  get description(): string { return this.inner.description; }
  get location(): Location { return this.inner.location; }
  get capabilities(): Capabilities { return this.inner.capabilities; }

  list(prefix: string, options?: ListOptions): AsyncIterable<Entry> { return this.inner.list(prefix, options); }
  stat(key: string, options?: SignalOptions): Promise<Entry | undefined> { return this.inner.stat(key, options); }
  openRead(key: string, options?: ReadOptions): Promise<Readable> { return this.inner.openRead(key, options); }
  openWrite(key: string, options: WriteOptions): Promise<WriteSession> { return this.inner.openWrite(key, options); }
  delete(key: string, options?: SignalOptions): Promise<void> { return this.inner.delete(key, options); }
  sync(options?: SignalOptions): Promise<void> { return this.inner.sync(options); }
  close(): Promise<void> { return this.inner.close(); }

  /** What `copyWithin` does (only called when `inner` has one). Override to change it. */
  protected forwardCopyWithin(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void> {
    return (this.inner.copyWithin as CopyWithin).call(this.inner, fromKey, toKey, options);
  }

  /** What `readHashes` does (only called when `inner` has one and `forwardsReadHashes`). Override to change it. */
  protected forwardReadHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    return (this.inner.readHashes as ReadHashes).call(this.inner, key, options);
  }

  /** What `identify` does (only called when `inner` has one). Override to change it. */
  protected forwardIdentify(options?: SignalOptions): Promise<Identity> {
    return (this.inner.identify as Identify).call(this.inner, options);
  }
}

/** A `WriteSession` that passes everything to `inner`. Extend it and override what the wrapper changes. */
export class ForwardingWriteSession implements WriteSession {
  constructor(readonly inner: WriteSession) {
    passThroughRest(this, inner);
  }

  get key(): string { return this.inner.key; }
  get size(): number { return this.inner.size; }
  get partBytes(): number { return this.inner.partBytes; }
  get resumableParts(): ReadonlySet<number> { return this.inner.resumableParts; }

  matches(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<boolean> { return this.inner.matches(index, bytes, options); }
  write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> { return this.inner.write(index, bytes, options); }
  commit(options: CommitOptions): Promise<Committed | void> { return this.inner.commit(options); }
  suspend(): Promise<void> { return this.inner.suspend(); }
  abort(): Promise<void> { return this.inner.abort(); }
}
