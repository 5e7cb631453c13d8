/**
 * Source reads for the fan-out engine (src/core/replicate.ts): destinations share one read of a
 * file while they keep up, and a destination that falls behind is detached and reads on its own,
 * so a slow destination never holds back the others for more than a bounded lag.
 *
 * Memory. The chunk budget is split into one share per destination still working or still
 * preparing to join (`expect`; at least two chunks each). Every chunk a destination holds (queued for it, in its writer, or the read-ahead of
 * a read it takes part in) is charged to it, so the bytes in the pool never exceed the budget (for
 * sources that read ahead at most one piece, as the local driver does; a shared chunk is charged to
 * each destination but held once). A destination may go beyond its share with budget that no other
 * destination's unused share needs (a fast destination alone in its reads uses what the slow one
 * does not), never into another's share, so every destination always has its share for itself. A
 * destination takes part in at most `share / chunk - 2` reads of multi-chunk files at once, so the
 * read-ahead of its open reads can never fill its share.
 *
 * Lag. A destination's backlog is what was read for it and it has not taken yet (chunks queued for
 * files it has not reached count too); a backlog beyond its share means it is that far behind.
 *
 * Shared reads. The first destination to reach a file starts its read, with a place (a queue) for
 * every other attached destination that will copy the file; they take their place when they reach
 * the file, and find the chunks read meanwhile in their queue. Each chunk is read once it can be
 * charged to every destination in the read. One that cannot take it while another can, and whose
 * backlog exceeds its share, is detached at once; while some can take the chunk and others cannot
 * (no memory, or too many open reads), the read waits `lagToleranceMs`, then detaches the one with
 * the most chunks still to write (its memory is held by its slow writes) if it is one that cannot
 * take the chunk. A wait can end each time the slow one frees a chunk, so the time each
 * destination holds up reads that others are ready for is also added up, all reads together, less
 * half the time since (`Ledger.lagMs`, ./ledger.ts): one whose sum passes `lagToleranceMs` is detached, since
 * it holds the others back more than half the time. A detached destination leaves every shared
 * read at once (it would hold up each in turn otherwise): its queued chunks are dropped, its
 * places in files it has not reached are given up, and it reads each file it was copying again on
 * its own from the start (the chunks it already wrote are only hashed and compared, so a source
 * that changed meanwhile is caught), and every later file too, until it reaches a file before
 * anyone else has started it: it caught up, and shares reads again. A destination that joins after
 * the others started (it was slow to prepare) gets a place in the reads that have not handed out a
 * chunk yet; at the first file whose read has, it is detached and reads alone until it reaches one
 * nobody has started.
 *
 * Source bytes read: each file is read at most once by a shared read, plus once by every
 * destination reading it alone, so at most (1 + destinations that read alone) x the backup, plus
 * the checks of files present but unrecorded ("adopt", one read per file).
 */
import type { Driver } from '../drivers/types.js';
import { OffsiteError, throwIfAborted } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';
import type { ChunkPool } from './buffers.js';
import { hashObject, readChunks, type ObjectHashes } from './chunks.js';
import type { Ledger } from './ledger.js';
import { asSortedPaths, type SortedPaths } from './sorted-paths.js';

/**
 * Long enough for a hiccup of a destination as fast as the others (an fsync, a commit), shorter than
 * the time a destination at a tenth of the other's speed takes to free a chunk (8 MiB at 12 MiB/s:
 * 0.7 s), which it would otherwise hold every shared read for. @default 500 ms
 */
export const DEFAULT_LAG_TOLERANCE_MS = 500;

const EMPTY = new Uint8Array(0);

/**
 * A file to read: its size, mtime and fingerprint at the source (all checked again after the read,
 * unless `expected` is given).
 */
export interface FeedFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly fingerprint?: string;
  /**
   * The hash the file must read as (origin mode: a verified copy's record). Its reader compares the
   * hash of what it read with it before anything is committed, which proves the bytes whatever
   * the source's metadata says: the source is then not looked at again after the read (on an
   * object store that would be a HEAD per file).
   */
  readonly expected?: string;
}

/** What a read delivers to one destination, in order. */
export type FeedItem =
  | { readonly type: 'chunk'; readonly chunk: Buffer; readonly hash: string }
  | { readonly type: 'end'; readonly hash: string; readonly chunks: readonly string[] }
  /** Fell behind: queued chunks were dropped; read the file again with `Fanout.readAlone`. */
  | { readonly type: 'detached' }
  | { readonly type: 'error'; readonly error: unknown };

/** A destination as the reads see it. */
export interface FeedMember {
  readonly name: string;
  readonly ledger: Ledger;
  /** Takes part in shared reads (false once detached, until it catches up). */
  attached: boolean;
  detachments: number;
  /** Source bytes read for this destination alone. */
  bytesReadAlone: number;
  /** Whether it will still copy `path` (not dead, not yet done, action copy). */
  wants(path: string): boolean;
}

interface FanoutContext {
  readonly source: Driver;
  readonly backup: string;
  readonly chunkBytes: number;
  readonly pool: ChunkPool;
  readonly lagToleranceMs: number;
  readonly signal?: AbortSignal;
  readonly onDetach?: (member: FeedMember, path: string) => void;
  /** The run's paths, sorted by code units (no path twice): which files were started is then a bit per file. */
  readonly paths?: readonly string[] | SortedPaths;
}

/** The reads of one run: see the file comment. */
export class Fanout {
  /** Source bytes read, all reads together. */
  bytesRead = 0;
  private readonly members: FeedMember[] = [];
  private readonly working: FeedMember[] = [];
  /** Destinations still preparing that will join (`expect`): each keeps its share of the budget. */
  private expected = 0;
  /** Shared reads with places not taken yet. */
  private readonly reads = new Map<string, FileRead>();
  /** Files a shared read was started for: by their index in `ctx.paths`, or by path for other paths. */
  private readonly started: Uint8Array;
  private readonly paths: SortedPaths | undefined;
  private readonly startedOthers = new Set<string>();
  private readonly sourceHashes = new Map<string, Promise<ObjectHashes>>();
  private waiters: (() => void)[] = [];
  private readonly onAbort = (): void => this.notify();

  constructor(readonly ctx: FanoutContext) {
    // A set of 100,000 paths costs ~3 MB for the whole run (issue 13); a byte per file, 100 kB.
    this.paths = asSortedPaths(ctx.paths);
    this.started = new Uint8Array(this.paths?.length ?? 0);
    ctx.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /**
   * Stops listening to the run's signal once the run is over. The listener kept this fan-out, and
   * through it every destination's records, the chunk pool and the file list, alive as long as the
   * signal: for a command that goes on after the copy (pull reads everything back) that was the
   * whole copy's memory held through the read-back.
   */
  close(): void {
    this.ctx.signal?.removeEventListener('abort', this.onAbort);
  }

  /**
   * `count` destinations will join later (still preparing): each keeps its share of the budget
   * until it joins (`add`) or will not (`withdraw`), so the ones already copying never hold
   * memory that a destination joining late would need.
   */
  expect(count: number): void {
    this.expected += count;
  }

  /** An expected destination will not join (failed, up to date): its share goes to the others. */
  withdraw(): void {
    if (this.expected > 0) this.expected--;
    this.notify();
  }

  /**
   * A destination that takes part from now on (an expected one, if any are left); call `done` when
   * it has nothing more to read. One that joins after others started files reads alone those
   * they have already handed chunks out of.
   */
  add(member: FeedMember): void {
    if (this.expected > 0) this.expected--;
    this.members.push(member);
    this.working.push(member);
    // Reads the others started a moment ago, with nothing handed out yet, are shared with it too.
    for (const read of this.reads.values()) read.welcome(member);
    this.notify();
  }

  /** The member has read everything it needs (or failed): its places are given up, its share goes to the others. */
  done(member: FeedMember): void {
    for (const read of [...this.reads.values()]) read.giveUp(member);
    const at = this.working.indexOf(member);
    if (at >= 0) this.working.splice(at, 1);
    this.notify();
  }

  /** Bytes of budget per destination still working or expected (at least two chunks). */
  get share(): number {
    return Math.max(2 * this.ctx.chunkBytes, Math.floor(this.ctx.pool.budgetBytes / Math.max(1, this.working.length + this.expected)));
  }

  /** Whether `bytes` more for `ledger` leave every other working (or expected) destination its unused share. */
  canLend(ledger: Ledger, bytes: number): boolean {
    const share = this.share;
    let needed = bytes + this.expected * share;
    for (const m of this.working) needed += m.ledger === ledger ? m.ledger.held : Math.max(m.ledger.held, share);
    if (!this.working.some((m) => m.ledger === ledger)) needed += ledger.held;
    return needed <= this.ctx.pool.budgetBytes;
  }

  /** Reads of multi-chunk files one destination may take part in at once. */
  get maxOpenReads(): number {
    return Math.max(1, Math.floor(this.share / this.ctx.chunkBytes) - 2);
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves on the next `notify`, or after `timeoutMs`. */
  changed(timeoutMs?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.waiters.push(() => { if (timer) clearTimeout(timer); resolve(); });
      if (timeoutMs !== undefined) timer = setTimeout(resolve, Math.max(0, timeoutMs));
    });
  }

  /** The chunks of `file` for `member`: shared with the others when possible (see the file comment). */
  subscribe(member: FeedMember, file: FeedFile): Subscription {
    const read = this.reads.get(file.path);
    const place = read?.claim(member);
    if (place) return place;
    if (!read && !this.markStarted(file.path, false)) {
      const others = this.members.filter((m) => m !== member && m.attached && m.wants(file.path));
      const created = new FileRead(this, file, true);
      this.reads.set(file.path, created);
      this.markStarted(file.path, true);
      member.attached = true;
      const own = created.place(member, true);
      for (const m of others) created.place(m, false);
      void created.run();
      return own;
    }
    // The others started this file without it: it fell behind.
    this.detach(member, file.path);
    return this.readAlone(member, file);
  }

  /** Whether a shared read of `path` was started; `mark`: it is being started now. */
  private markStarted(path: string, mark: boolean): boolean {
    const at = this.started.length > 0 ? (this.paths as SortedPaths).indexOf(path) : -1;
    const was = at >= 0 ? this.started[at] === 1 : this.startedOthers.has(path);
    if (mark && at >= 0) this.started[at] = 1;
    else if (mark) this.startedOthers.add(path);
    return was;
  }

  /**
   * `member` will not read `path` (it took its hashes from elsewhere): its place in a shared read
   * of it, if one started, is given up. Should it need the file after all, `subscribe` reads it
   * alone.
   */
  pass(member: FeedMember, path: string): void {
    this.reads.get(path)?.giveUp(member);
  }

  /** The shared read of `path` has nothing more to hand out. */
  forget(path: string): void {
    this.reads.delete(path);
  }

  /** The chunks of `file` from a read of the source for `member` alone. */
  readAlone(member: FeedMember, file: FeedFile): Subscription {
    const read = new FileRead(this, file, false);
    const subscription = read.place(member, true);
    void read.run();
    return subscription;
  }

  /** The hashes of a source file, read once however many destinations ask (to check files present but unrecorded). */
  hashSource(file: FeedFile): Promise<ObjectHashes> {
    let hashes = this.sourceHashes.get(file.path);
    if (!hashes) {
      this.bytesRead += file.size;
      hashes = hashObject(this.ctx.source, `${this.ctx.backup}/${file.path}`, file.size, this.ctx.pool, this.ctx.signal);
      this.sourceHashes.set(file.path, hashes);
    }
    return hashes;
  }

  /**
   * The member fell behind: it reads on its own until it catches up. It leaves every shared read
   * at once, not only the one it held up: each of the others would otherwise wait for it in turn
   * (the lag tolerance again, per file), holding back the destinations that keep up.
   */
  detach(member: FeedMember, path: string): void {
    if (!member.attached) return;
    member.attached = false;
    member.detachments++;
    this.ctx.onDetach?.(member, path);
    for (const read of [...this.reads.values()]) read.drop(member);
    this.notify();
  }

  /** Gives back a chunk a member will not write. */
  drop(member: FeedMember, chunk: Buffer): void {
    this.ctx.pool.release(chunk);
    member.ledger.uncharge(this.ctx.pool.chargeOf(chunk.length));
  }
}

/** One member's place in a read: a queue of what the read delivered and it has not taken yet. */
export class Subscription {
  private queue: FeedItem[] = [];
  private wake: (() => void) | undefined;
  /** Ledger bytes charged for pieces not delivered yet. */
  reserved = 0;
  /** Counted in the ledger's `openReads`. */
  opened = false;
  /** Detached or left: receives nothing more. */
  gone = false;

  constructor(readonly member: FeedMember, private readonly fanout: Fanout, public arrived: boolean) {}

  deliver(item: FeedItem): void {
    if (item.type === 'chunk') this.member.ledger.backlog += this.fanout.ctx.pool.chargeOf(item.chunk.length);
    this.queue.push(item);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async next(): Promise<FeedItem> {
    while (this.queue.length === 0) await new Promise<void>((resolve) => { this.wake = resolve; });
    const item = this.queue.shift() as FeedItem;
    if (item.type === 'chunk') this.taken(item.chunk);
    return item;
  }

  /** Stops receiving: queued chunks and reserved room go back to the member's share. */
  leave(): void {
    if (this.gone) return;
    this.gone = true;
    for (const item of this.queue) {
      if (item.type !== 'chunk') continue;
      this.taken(item.chunk);
      this.fanout.drop(this.member, item.chunk);
    }
    this.queue = [];
    this.unreserve();
  }

  private taken(chunk: Buffer): void {
    this.member.ledger.backlog -= this.fanout.ctx.pool.chargeOf(chunk.length);
  }

  unreserve(): void {
    const ledger = this.member.ledger;
    if (this.opened) { ledger.openReads--; this.opened = false; }
    const reserved = this.reserved;
    this.reserved = 0;
    ledger.reserved -= reserved;
    ledger.uncharge(reserved);
  }
}

/** One read of one source file, for one or more members. */
class FileRead {
  private readonly subscriptions: Subscription[] = [];
  private ended = false;
  /** A chunk was handed out: a destination joining now would miss it. */
  private delivering = false;

  constructor(private readonly fanout: Fanout, readonly file: FeedFile, private readonly shared: boolean) {}

  /**
   * Gives a place to a destination that joins the run after this read started, while nothing has
   * been handed out yet and its share has room for what the others have reserved in this read.
   */
  welcome(member: FeedMember): void {
    if (this.delivering || this.ended || !member.wants(this.file.path) || this.subscriptions.some((s) => s.member === member)) return;
    const reserved = Math.max(0, ...this.subscriptions.map((s) => (s.gone ? 0 : s.reserved)));
    const opening = this.file.size > this.fanout.ctx.chunkBytes;
    if (!member.ledger.fits(reserved, opening)) return;
    const place = this.place(member, false);
    member.ledger.charge(reserved);
    member.ledger.reserved += reserved;
    place.reserved = reserved;
    if (opening) { place.opened = true; member.ledger.openReads++; }
  }

  /** A place for `member`; `arrived` when it is at the file already. */
  place(member: FeedMember, arrived: boolean): Subscription {
    const subscription = new Subscription(member, this.fanout, arrived);
    this.subscriptions.push(subscription);
    return subscription;
  }

  /** The member's place, when it still has one (not detached from this read). */
  claim(member: FeedMember): Subscription | undefined {
    const place = this.subscriptions.find((s) => s.member === member && !s.arrived && !s.gone);
    if (place) place.arrived = true;
    this.forgetWhenClaimed();
    return place;
  }

  /** Drops the places of `member` it has not taken. */
  giveUp(member: FeedMember): void {
    for (const s of this.subscriptions) if (s.member === member && !s.arrived) s.leave();
    this.forgetWhenClaimed();
  }

  /** The member was detached: it leaves this read (where it is copying already, it is told to read alone). */
  drop(member: FeedMember): void {
    for (const s of this.subscriptions) {
      if (s.member !== member || s.gone) continue;
      s.leave();
      if (s.arrived) s.deliver({ type: 'detached' });
    }
    this.forgetWhenClaimed();
  }

  private forgetWhenClaimed(): void {
    if (this.ended && this.subscriptions.every((s) => s.arrived || s.gone)) this.fanout.forget(this.file.path);
  }

  /** Members still in the read; places never to be taken (a failed member, or one that no longer copies the file) are given up. */
  private live(): Subscription[] {
    for (const s of this.subscriptions) if (!s.gone && !s.arrived && !s.member.wants(this.file.path)) s.leave();
    return this.subscriptions.filter((s) => !s.gone);
  }

  private detach(subscription: Subscription): void {
    subscription.leave();
    this.fanout.detach(subscription.member, this.file.path);
    subscription.deliver({ type: 'detached' });
  }

  async run(): Promise<void> {
    try {
      await this.read();
    } catch (error) {
      for (const s of this.live()) s.deliver({ type: 'error', error });
    } finally {
      for (const s of this.live()) s.unreserve();
      this.ended = true;
      this.forgetWhenClaimed();
    }
  }

  /**
   * Charges `bytes` to every live member's share (and, when `opening`, one open read). A member
   * further behind than its share while another is not is detached at once. Otherwise waits while
   * some cannot take the bytes; when others could, for at most the lag tolerance, then detaches the
   * ones that cannot. False when no member is left.
   */
  private async reserve(bytes: number, opening: boolean): Promise<boolean> {
    const tolerance = this.fanout.ctx.lagToleranceMs;
    let since: number | undefined;
    for (;;) {
      const live = this.live();
      if (live.length === 0) return false;
      throwIfAborted(this.fanout.ctx.signal, 'replicate');
      const ready = live.filter((s) => s.member.ledger.fits(bytes, opening && !s.opened));
      const holders = ready.length > 0 ? live.filter((s) => !ready.includes(s)) : [];
      if (holders.length > 0) {
        // Those that hold the read up while further behind than their share go at once, and so do
        // those that have held up shared reads for too long, all reads together.
        const now = Date.now();
        const behind = holders.filter((s) => s.member.ledger.behind(bytes) || s.member.ledger.lagMs(now) > tolerance);
        for (const s of behind) this.detach(s);
        if (behind.length > 0) continue;
      }
      if (ready.length === live.length) {
        for (const s of live) {
          s.member.ledger.charge(bytes);
          s.member.ledger.reserved += bytes;
          s.reserved += bytes;
          if (opening && !s.opened) { s.opened = true; s.member.ledger.openReads++; }
        }
        return true;
      }
      if (live.length === 1) {
        await this.fanout.changed();
        continue;
      }
      since ??= Date.now();
      const left = since + tolerance - Date.now();
      if (left <= 0) {
        // Held up too long: the one with the most chunks still to write (its memory is held by
        // its slow writes) is detached, if it is one that cannot take the chunk; otherwise the
        // read is held up by limits of the faster ones, and waits.
        const pending = (x: Subscription): number => x.member.ledger.held - x.member.ledger.reserved;
        const laggard = live.reduce((a, b) => (pending(b) > pending(a) ? b : a));
        if (!ready.includes(laggard)) this.detach(laggard);
        since = undefined;
        continue;
      }
      const from = Date.now();
      await this.fanout.changed(left);
      for (const s of holders) s.member.ledger.heldUp(from, Date.now());
    }
  }

  private async read(): Promise<void> {
    const { source, backup, chunkBytes, pool, signal } = this.fanout.ctx;
    const { size } = this.file;
    const key = `${backup}/${this.file.path}`;
    const charge = (offset: number): number => (offset < size ? pool.chargeOf(Math.min(chunkBytes, size - offset)) : 0);
    // The first piece, and the one the source reads ahead.
    if (!(await this.reserve(charge(0) + charge(chunkBytes), size > chunkBytes))) return;
    const hasher = await getHasher();
    // A file of one chunk (most small files) has the hash of that chunk: hashed once, not twice.
    const fileHash = size > chunkBytes ? hasher.create() : undefined;
    const chunkHashes: string[] = [];
    let offset = 0;
    const guard = guardSourceRead(source, backup, this.file);
    try {
      for await (const chunk of readChunks(source, key, size, pool, `source: ${key}`, signal, guard.ifFingerprint)) {
        this.delivering = true;
        this.fanout.bytesRead += chunk.length;
        fileHash?.update(chunk);
        const hash = hasher.hash(chunk);
        chunkHashes.push(hash);
        offset += chunk.length;
        const cost = pool.chargeOf(chunk.length);
        const live = this.live();
        if (!this.shared) for (const s of live) s.member.bytesReadAlone += chunk.length;
        for (const s of live) {
          const taken = Math.min(s.reserved, cost);
          s.reserved -= taken;
          s.member.ledger.reserved -= taken;
          s.member.ledger.charge(cost - taken);
          pool.retain(chunk);
          s.deliver({ type: 'chunk', chunk, hash });
        }
        pool.release(chunk); // the reader's own reference
        if (live.length === 0) return;
        // The next piece the source reads ahead.
        if (offset < size && !(await this.reserve(charge(offset + chunkBytes), false))) return;
      }
    } catch (err) {
      throw guard.changed(err);
    }
    if (this.live().length === 0) return;
    await guard.confirm(signal);
    const hash = fileHash ? fileHash.digest() : chunkHashes[0] ?? hasher.hash(EMPTY);
    for (const s of this.live()) s.deliver({ type: 'end', hash, chunks: chunkHashes });
  }
}

/**
 * Whether `guardSourceRead` uses a file's listed fingerprint: as the condition of a conditional
 * read, or for the stat after the read of a file whose hash the caller does not know. Where it
 * does not, the listing's fingerprint need not be kept (./run-files.ts).
 */
export function readUsesFingerprint(source: Driver, hashKnown: boolean): boolean {
  return source.capabilities.conditionalReads === true || !hashKnown;
}

/**
 * What makes one read of a source file safe to hash and record (a shared read here, a read ahead
 * in ./hash-ahead.ts): `ifFingerprint` for the read, `changed` for what it throws, `confirm` once it
 * has ended. A source that reads conditionally (object stores: If-Match on every GET) delivers only
 * the object it listed, or fails: no stat after the read is needed to know it did not change.
 * Nothing to stat either when the caller knows the file's hash (pull and repair read a verified
 * copy: a changed file fails that comparison before any commit). Otherwise the file must still
 * show the size, mtime and fingerprint it was listed with.
 */
export function guardSourceRead(source: Driver, backup: string, file: FeedFile): {
  readonly ifFingerprint: string | undefined;
  changed(err: unknown): unknown;
  confirm(signal?: AbortSignal): Promise<void>;
} {
  const ifFingerprint = source.capabilities.conditionalReads === true ? file.fingerprint : undefined;
  const key = `${backup}/${file.path}`;
  return {
    ifFingerprint,
    changed: (err) => (err instanceof OffsiteError && err.code === 'E_READ_SOURCE_CHANGED' ? sourceChanged(backup, file.path) : err),
    async confirm(signal) {
      if (ifFingerprint !== undefined || file.expected !== undefined) return;
      const after = await source.stat(key, { signal });
      if (!after || after.size !== file.size || after.mtimeMs !== file.mtimeMs || after.fingerprint !== file.fingerprint) throw sourceChanged(backup, file.path);
    },
  };
}

/** The error when a re-read of a source file differs from what an earlier read of it delivered. */
export function sourceChanged(backup: string, path: string): OffsiteError {
  return new OffsiteError('E_SOURCE_CHANGED', `source: ${backup}/${path} changed while it was being copied; it is not recorded anywhere: run replicate again once the backup is stable`, { kind: 'integrity' });
}
