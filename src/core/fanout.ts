/**
 * Source reads for the fan-out engine (src/core/replicate.ts): destinations share one read of a
 * file while they keep up, and a destination that falls behind is detached and reads on its own,
 * so a slow destination never holds back the others for more than a bounded lag.
 *
 * Memory. The chunk budget is split into one share per destination still working (at least two
 * chunks each). Every chunk a destination holds (queued for it, in its writer, or the read-ahead of
 * a read it takes part in) is charged to its share, so the bytes in the pool never exceed the
 * budget (for sources that read ahead at most one piece, as the local driver does; a shared chunk is
 * charged to each share but held once). A destination takes part in at most `share / chunk - 2`
 * reads of multi-chunk files at once, so the read-ahead of its open reads can never fill its share.
 *
 * Shared reads. The first destination to reach a file starts its read, with a place (a queue) for
 * every other attached destination that will copy the file; they take their place when they reach
 * the file, and find the chunks read meanwhile in their queue. Each chunk is read once it can be
 * charged to every destination in the read; while some can take it and others cannot (their share
 * is full: they are that far behind), the read waits at most `lagToleranceMs`, then detaches the
 * ones that cannot. A detached destination gets its queued chunks dropped and reads the file again
 * on its own from the start (the chunks it already wrote are only hashed and compared, so a source
 * that changed meanwhile is caught), and every later file too, until it reaches a file before
 * anyone else has started it: it caught up, and shares reads again.
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

/** @default 1000 ms */
export const DEFAULT_LAG_TOLERANCE_MS = 1000;

const EMPTY = new Uint8Array(0);

/** A file to read: its size and mtime at the source (both checked again after the read). */
export interface FeedFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
}

/** What a read delivers to one destination, in order. */
export type FeedItem =
  | { readonly type: 'chunk'; readonly chunk: Buffer; readonly hash: string }
  | { readonly type: 'end'; readonly hash: string; readonly chunks: readonly string[] }
  /** Fell behind: queued chunks were dropped; read the file again with `Fanout.readAlone`. */
  | { readonly type: 'detached' }
  | { readonly type: 'error'; readonly error: unknown };

/** One destination's share of the chunk budget. */
export class Ledger {
  /** Bytes charged: chunks held plus room reserved for reads it takes part in. */
  held = 0;
  /** Reads of multi-chunk files it takes part in. */
  openReads = 0;
  constructor(private readonly fanout: Fanout) {}

  fits(bytes: number, opening: boolean): boolean {
    if (opening && this.openReads >= this.fanout.maxOpenReads) return false;
    return this.held + bytes <= this.fanout.share;
  }

  charge(bytes: number): void {
    this.held += bytes;
  }

  uncharge(bytes: number): void {
    this.held -= bytes;
    this.fanout.notify();
  }
}

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
}

/** The reads of one run: see the file comment. */
export class Fanout {
  /** Source bytes read, all reads together. */
  bytesRead = 0;
  private readonly members: FeedMember[] = [];
  private working = 0;
  /** Shared reads with places not taken yet. */
  private readonly reads = new Map<string, FileRead>();
  /** Files a shared read was started for. */
  private readonly started = new Set<string>();
  private readonly sourceHashes = new Map<string, Promise<ObjectHashes>>();
  private waiters: (() => void)[] = [];

  constructor(readonly ctx: FanoutContext) {
    ctx.signal?.addEventListener('abort', () => this.notify(), { once: true });
  }

  /** A destination that will take part; call `done` when it has nothing more to read. */
  add(member: FeedMember): void {
    this.members.push(member);
    this.working++;
  }

  /** The member has read everything it needs (or failed): its places are given up, its share goes to the others. */
  done(member: FeedMember): void {
    for (const read of [...this.reads.values()]) read.giveUp(member);
    this.working = Math.max(1, this.working - 1);
    this.notify();
  }

  /** Bytes of budget per destination still working (at least two chunks). */
  get share(): number {
    return Math.max(2 * this.ctx.chunkBytes, Math.floor(this.ctx.pool.budgetBytes / Math.max(1, this.working)));
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
    if (!read && !this.started.has(file.path)) {
      const others = this.members.filter((m) => m !== member && m.attached && m.wants(file.path));
      const created = new FileRead(this, file, true);
      this.reads.set(file.path, created);
      this.started.add(file.path);
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

  /** The member fell behind: it reads on its own until it catches up. */
  detach(member: FeedMember, path: string): void {
    if (!member.attached) return;
    member.attached = false;
    member.detachments++;
    this.ctx.onDetach?.(member, path);
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
    this.queue.push(item);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async next(): Promise<FeedItem> {
    while (this.queue.length === 0) await new Promise<void>((resolve) => { this.wake = resolve; });
    return this.queue.shift() as FeedItem;
  }

  /** Stops receiving: queued chunks and reserved room go back to the member's share. */
  leave(): void {
    if (this.gone) return;
    this.gone = true;
    for (const item of this.queue) if (item.type === 'chunk') this.fanout.drop(this.member, item.chunk);
    this.queue = [];
    this.unreserve();
  }

  unreserve(): void {
    const ledger = this.member.ledger;
    if (this.opened) { ledger.openReads--; this.opened = false; }
    const reserved = this.reserved;
    this.reserved = 0;
    ledger.uncharge(reserved);
  }
}

/** One read of one source file, for one or more members. */
class FileRead {
  private readonly subscriptions: Subscription[] = [];
  private ended = false;

  constructor(private readonly fanout: Fanout, private readonly file: FeedFile, private readonly shared: boolean) {}

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
   * Charges `bytes` to every live member's share (and, when `opening`, one open read). Waits while
   * some cannot take it; when others could, for at most the lag tolerance, then detaches the ones
   * that cannot. False when no member is left.
   */
  private async reserve(bytes: number, opening: boolean): Promise<boolean> {
    const tolerance = this.fanout.ctx.lagToleranceMs;
    let since: number | undefined;
    for (;;) {
      const live = this.live();
      if (live.length === 0) return false;
      throwIfAborted(this.fanout.ctx.signal, 'replicate');
      const ready = live.filter((s) => s.member.ledger.fits(bytes, opening && !s.opened));
      if (ready.length === live.length) {
        for (const s of live) {
          s.member.ledger.charge(bytes);
          s.reserved += bytes;
          if (opening && !s.opened) { s.opened = true; s.member.ledger.openReads++; }
        }
        return true;
      }
      if (ready.length === 0) {
        since = undefined;
        await this.fanout.changed();
        continue;
      }
      since ??= Date.now();
      const left = since + tolerance - Date.now();
      if (left <= 0) {
        for (const s of live) if (!ready.includes(s)) this.detach(s);
        continue;
      }
      await this.fanout.changed(left);
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
    for await (const chunk of readChunks(source, key, size, pool, `source: ${key}`, signal)) {
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
        s.member.ledger.charge(cost - taken);
        pool.retain(chunk);
        s.deliver({ type: 'chunk', chunk, hash });
      }
      pool.release(chunk); // the reader's own reference
      if (live.length === 0) return;
      // The next piece the source reads ahead.
      if (offset < size && !(await this.reserve(charge(offset + chunkBytes), false))) return;
    }
    if (this.live().length === 0) return;
    const after = await source.stat(key, { signal });
    if (!after || after.size !== size || after.mtimeMs !== this.file.mtimeMs) {
      throw new OffsiteError('E_SOURCE_CHANGED', `source: ${key} changed while it was being copied; it is not recorded anywhere: run replicate again once the backup is stable`, { kind: 'integrity' });
    }
    const hash = fileHash ? fileHash.digest() : chunkHashes[0] ?? hasher.hash(EMPTY);
    for (const s of this.live()) s.deliver({ type: 'end', hash, chunks: chunkHashes });
  }
}

/** The error when a re-read of a source file differs from what an earlier read of it delivered. */
export function sourceChanged(backup: string, path: string): OffsiteError {
  return new OffsiteError('E_SOURCE_CHANGED', `source: ${backup}/${path} changed while it was being copied; it is not recorded anywhere: run replicate again once the backup is stable`, { kind: 'integrity' });
}
