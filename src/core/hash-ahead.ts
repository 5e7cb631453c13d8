/**
 * Source hashes read ahead for reuse (issue 12, ./reuse-file.ts): a kept file is created at the
 * destination by a server-side copy once its hashes are known, and they come from reading it at
 * the source. Read as the copies' queue reaches each file, every copy first waits for its file's
 * read, and the first copies wait for the whole start of the run. So a destination that may reuse
 * has its likely kept files (missing there, and held with the same size under the same path by
 * its newest earlier copy) hashed ahead, in the order the run will take them, from the moment its
 * reuse index and the source listing are there: while its lock settles and it is read again (round
 * trips during which this process has little else to do), and then ahead of its copies.
 *
 * The read is the same as a shared source read's (./fanout.ts), and as much is checked: the bytes
 * hashed are exactly the listed size (a file that grows or shrinks meanwhile fails), and the source
 * still shows the size, mtime and fingerprint it was listed with after the read (or it was read
 * conditionally on that fingerprint); otherwise `E_SOURCE_CHANGED`. A file whose hashes did not
 * match any copy is sent from a second read, whose hash must equal this one (./copy-file.ts). Only
 * the hashes are kept: the pieces are hashed where they land, in a small arena (no chunk buffers
 * gathered, as deep verification reads: ./chunks.ts `readChunkHashes`).
 *
 * Bounded: a destination asks for at most `window` files beyond the one its copies have reached
 * (`HashCursor`), and a file asked for by several destinations is read once. Not for encrypted
 * destinations (their match needs a keyed MAC of the plaintext, taken from the shared read) nor
 * for files whose hashes the newest copy's record gives (the source option `trustEtags`).
 */
import type { Driver } from '../drivers/types.js';
import { AbortedError, eitherSignal } from '../errors.js';
import { getHasher, HashArena } from '../hash/xxh64.js';
import { readChunkHashes, type ObjectHashes } from './chunks.js';
import { guardSourceRead, type FeedFile } from './fanout.js';

/**
 * Files read at once. A kept file is a few hundred KB on average, and each read waits on the
 * thread pool and the event loop (busy with the copies) between its steps: many reads at once keep
 * ahead of the copies even then.
 */
const READS_AT_ONCE = 16;
/**
 * Bytes of each piece read into the arena, and pieces per read (hashed, read, read ahead), for
 * this many reads; reads beyond them, and pieces beyond the arena's, get buffers of their own.
 */
const PIECE_BYTES = 1024 * 1024;
const PIECES_PER_READ = 3;
const ARENA_READS = 8;
/** Files a destination has hashed ahead of its copies at most. */
export const HASH_AHEAD_FILES = 1024;

interface Entry {
  readonly file: FeedFile;
  /** Destinations that asked for it and still want it (did not pass it, did not stop). */
  wanted: number;
  /** Destinations that asked for it and have not reached it yet. */
  unreached: number;
  started: boolean;
  /** Settles once it is read (or never will be: `HashAhead.close`). */
  readonly hashes: Promise<ObjectHashes>;
  readonly settle: { resolve(hashes: ObjectHashes): void; reject(err: unknown): void };
}

export interface HashAheadOptions {
  readonly source: Driver;
  readonly backup: string;
  readonly chunkBytes: number;
  readonly signal?: AbortSignal;
}

/** The reads ahead of one run, shared by its destinations (see the file comment). */
export class HashAhead {
  /** Source bytes read ahead. */
  bytesRead = 0;
  /** Files asked for and not yet reached by every destination that asked, by path. */
  readonly #entries = new Map<string, Entry>();
  /** Files asked for, in order; the ones from `#head` on are not started yet. */
  #queue: Entry[] = [];
  #head = 0;
  #running = 0;
  #arena: HashArena | undefined;
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal;

  constructor(private readonly options: HashAheadOptions) {
    this.#signal = eitherSignal(this.#stop.signal, options.signal); // every read in flight listens to it
    // A stopped run starts no more reads: whoever waits for one not started is told at once.
    this.#signal.addEventListener('abort', () => {
      for (let i = this.#head; i < this.#queue.length; i++) (this.#queue[i] as Entry).settle.reject(new AbortedError('replicate: hashing ahead'));
      this.#queue = [];
      this.#head = 0;
    }, { once: true });
  }

  /**
   * A destination's cursor over `files` (in the order its copies take them): it asks for the files
   * `wants` picks, at most `window` beyond the one its copies reached.
   */
  cursor(files: readonly FeedFile[], wants: (file: FeedFile) => boolean, window = HASH_AHEAD_FILES): HashCursor {
    return new HashCursor(this, files, wants, window);
  }

  /** Nothing more is started, reads in flight are aborted, and whoever still waits for hashes is told so. */
  close(): void {
    this.#stop.abort();
    this.#entries.clear();
  }

  /** @internal A destination asks for `file`'s hashes. */
  ask(file: FeedFile): Entry {
    const known = this.#entries.get(file.path);
    if (known !== undefined) {
      known.wanted++;
      known.unreached++;
      return known;
    }
    let settle: Entry['settle'] | undefined;
    const hashes = new Promise<ObjectHashes>((resolve, reject) => { settle = { resolve, reject }; });
    hashes.catch(() => undefined); // the destination that takes it sees the error
    const entry: Entry = { file, wanted: 1, unreached: 1, started: false, hashes, settle: settle as Entry['settle'] };
    if (this.#signal.aborted) {
      entry.settle.reject(new AbortedError('replicate: hashing ahead'));
      return entry;
    }
    this.#entries.set(file.path, entry);
    this.#queue.push(entry);
    this.#pump();
    return entry;
  }

  /**
   * @internal A destination reached `entry`'s file: with `take`, its hashes (read in turn, if not
   * yet); otherwise it gives the file up, which is then not read at all when no other destination
   * wants it and its read has not started.
   */
  reach(entry: Entry, take: boolean): Promise<ObjectHashes> | undefined {
    if (!take) entry.wanted--;
    if (--entry.unreached <= 0 && this.#entries.get(entry.file.path) === entry) this.#entries.delete(entry.file.path);
    return take ? entry.hashes : undefined;
  }

  #pump(): void {
    while (this.#running < READS_AT_ONCE && this.#head < this.#queue.length && !this.#signal.aborted) {
      const entry = this.#queue[this.#head++] as Entry;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (entry.wanted <= 0) continue; // every destination passed it before it started
      entry.started = true;
      this.#running++;
      this.#read(entry.file).then(entry.settle.resolve, entry.settle.reject).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #read(file: FeedFile): Promise<ObjectHashes> {
    const { source, backup, chunkBytes } = this.options;
    const signal = this.#signal;
    const key = `${backup}/${file.path}`;
    this.#arena ??= new HashArena(ARENA_READS * PIECES_PER_READ, PIECE_BYTES);
    const arena = this.#arena;
    // A file of one chunk has the hash of that chunk (as in a shared read).
    const whole = file.size > chunkBytes ? arena.create() : undefined;
    const guard = guardSourceRead(source, backup, file);
    const chunks: string[] = [];
    try {
      for await (const hash of readChunkHashes(source, key, file.size, chunkBytes, arena, `source: ${key}`, signal, whole, guard.ifFingerprint)) chunks.push(hash);
    } catch (err) {
      throw guard.changed(err);
    }
    this.bytesRead += file.size;
    await guard.confirm(signal);
    return { hash: whole ? whole.digest() : chunks[0] ?? (await getHasher()).hash(new Uint8Array(0)), chunks };
  }
}

/**
 * One destination's asks, in its copies' order: `reach(i)` as its copies come to `files[i]` (every
 * index in order, whether or not that file is copied), `close()` when it stops.
 */
export class HashCursor {
  #next = 0;
  readonly #asked: { readonly index: number; readonly entry: Entry }[] = [];
  #head = 0;

  constructor(private readonly owner: HashAhead, private readonly files: readonly FeedFile[], private readonly wants: (file: FeedFile) => boolean, private readonly window: number) {
    this.#fill();
  }

  /**
   * The copies reached `files[index]`: with `take`, the hashes read ahead for it when it was asked
   * for (read in turn, if not yet); the files before it, and it without `take`, are given up.
   */
  reach(index: number, take = true): Promise<ObjectHashes> | undefined {
    let found: Promise<ObjectHashes> | undefined;
    while (this.#head < this.#asked.length && (this.#asked[this.#head] as { index: number }).index <= index) {
      const { index: at, entry } = this.#asked[this.#head++] as { index: number; entry: Entry };
      const hashes = this.owner.reach(entry, take && at === index);
      if (take && at === index) found = hashes;
    }
    if (this.#head > 64 && this.#head * 2 > this.#asked.length) {
      this.#asked.splice(0, this.#head);
      this.#head = 0;
    }
    this.#fill();
    return found;
  }

  /** Gives up every file asked for and not reached; asks for nothing more. */
  close(): void {
    for (let i = this.#head; i < this.#asked.length; i++) this.owner.reach((this.#asked[i] as { entry: Entry }).entry, false);
    this.#asked.length = 0;
    this.#head = 0;
    this.#next = this.files.length;
  }

  #fill(): void {
    while (this.#asked.length - this.#head < this.window && this.#next < this.files.length) {
      const index = this.#next++;
      const file = this.files[index] as FeedFile;
      if (this.wants(file)) this.#asked.push({ index, entry: this.owner.ask(file) });
    }
  }
}
