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
 * Shared reads. When a destination reaches a file, it joins the file's pending read, or creates it
 * (expecting every other attached destination that will copy the file). A read starts once every
 * expected destination has joined, or after `lagToleranceMs`; a destination that has not joined by
 * then is detached. Each chunk is read once it can be charged to every reader; while some can take
 * it and others cannot, the read waits at most `lagToleranceMs` and then detaches the ones that
 * cannot. A detached destination gets its queued chunks dropped and reads the file again on its own
 * from the start (the chunks it already wrote are only hashed and compared, so a source that
 * changed meanwhile is caught). It joins shared reads again when it reaches a file before anyone
 * else has started it (it caught up).
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
  private readonly pending = new Map<string, FileRead>();
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

  /** The member has read everything it needs: its share goes to the others. */
  done(_member: FeedMember): void {
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
    const pending = this.pending.get(file.path);
    if (pending) {
      member.attached = true;
      return pending.join(member);
    }
    if (!this.started.has(file.path)) {
      const expected = this.members.filter((m) => m !== member && m.attached && m.wants(file.path));
      const read = new FileRead(this, file, expected, true);
      this.pending.set(file.path, read);
      member.attached = true;
      const subscription = read.join(member);
      void read.run();
      return subscription;
    }
    // The others started this file without it: it fell behind.
    if (member.attached) this.detach(member, file.path);
    return this.readAlone(member, file);
  }

  /** The chunks of `file` from a read of the source for `member` alone. */
  readAlone(member: FeedMember, file: FeedFile): Subscription {
    const read = new FileRead(this, file, [], false);
    const subscription = read.join(member);
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

  detach(member: FeedMember, path: string): void {
    member.attached = false;
    member.detachments++;
    this.ctx.onDetach?.(member, path);
  }

  /** The pending read of `path` starts: nobody joins it any more. */
  startedRead(path: string): void {
    this.pending.delete(path);
    this.started.add(path);
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

  constructor(readonly member: FeedMember, private readonly fanout: Fanout) {}

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
  private readonly expected: Set<FeedMember>;

  constructor(private readonly fanout: Fanout, private readonly file: FeedFile, expected: readonly FeedMember[], private readonly shared: boolean) {
    this.expected = new Set(expected);
  }

  join(member: FeedMember): Subscription {
    const subscription = new Subscription(member, this.fanout);
    this.subscriptions.push(subscription);
    this.expected.delete(member);
    this.fanout.notify();
    return subscription;
  }

  private live(): Subscription[] {
    return this.subscriptions.filter((s) => !s.gone);
  }

  private detach(subscription: Subscription): void {
    subscription.leave();
    this.fanout.detach(subscription.member, this.file.path);
    subscription.deliver({ type: 'detached' });
  }

  async run(): Promise<void> {
    try {
      if (this.shared) await this.waitForExpected();
      await this.read();
    } catch (error) {
      for (const s of this.live()) s.deliver({ type: 'error', error });
    } finally {
      for (const s of this.live()) s.unreserve();
    }
  }

  /** Waits for the expected members to join, at most the lag tolerance; those that do not are detached. */
  private async waitForExpected(): Promise<void> {
    const deadline = Date.now() + this.fanout.ctx.lagToleranceMs;
    for (;;) {
      for (const m of this.expected) if (!m.wants(this.file.path)) this.expected.delete(m);
      if (this.expected.size === 0 || this.live().length === 0) break;
      throwIfAborted(this.fanout.ctx.signal, 'replicate');
      const left = deadline - Date.now();
      if (left <= 0) {
        for (const m of this.expected) if (m.attached) this.fanout.detach(m, this.file.path);
        break;
      }
      await this.fanout.changed(left);
    }
    this.fanout.startedRead(this.file.path);
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
