/**
 * A listing of one backup's objects (key -> size, fingerprint, stored hash), held in a few flat
 * buffers instead of one Map entry, one key string and one object per file.
 *
 * Why (issue 13): the commands that check a copy against its manifest (verify, audit, pull, the
 * inspection behind list) must look each manifest record up in the listing, and the listing
 * arrives in no useful order (local and SFTP walks), so it is held whole. As a `Map` it cost ~320
 * bytes of JavaScript heap per file at 100,000 files (a 150-character key, an entry object, a
 * fingerprint string); and V8 lets the heap grow to a few times what is live before it collects,
 * so each live megabyte cost several of peak RSS. Here a file costs its key's UTF-8 bytes, its
 * fingerprint's and hash's, 8 bytes of size and a few of offsets and hash table, in buffers
 * outside the JavaScript heap. Lookups are exact: keys are compared byte for byte, the hash
 * table only narrows where to look.
 */
import { widened } from './typed-arrays.js';

/** Initial capacity in entries when no count is expected (grows by half). */
const INITIAL_ENTRIES = 1024;
/** Sentinel in the slot table: an empty slot. */
const EMPTY = -1;
/** A string that is absent (a fingerprint or hash the listing did not give): its length. */
const ABSENT = 0xffffffff;

/** FNV-1a over `bytes[start, end)`. */
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  return h >>> 0;
}

/** Slots of the open-addressing table for `capacity` entries: a power of two, at least twice as many. */
function slotsFor(capacity: number): number {
  let slots = 2048;
  while (slots < capacity * 2) slots *= 2;
  return slots;
}

/** The first block of `PackedStrings` (later ones double, up to `MAX_BLOCK_BYTES`). */
const FIRST_BLOCK_BYTES = 64 * 1024;
/** Blocks of `PackedStrings` grow to this size; a position is `block * MAX_BLOCK_BYTES + offset`. */
const MAX_BLOCK_BYTES = 1024 * 1024;

/**
 * Strings appended one after another into blocks of bytes, each found by its start position and
 * length. Blocks, not one buffer grown by doubling: a doubled buffer copies everything so far,
 * and every buffer it leaves behind stays allocated until the garbage collector finds it (at
 * 100,000 keys, ~16 MB of such garbage beside the ~10 MB kept, at the moment a pull hands its copy
 * over to the read-back: issue 13). A string never straddles two blocks.
 */
export class PackedStrings {
  readonly #blocks: Buffer[] = [];
  /** The block being filled, and bytes used in it. */
  #current = Buffer.allocUnsafe(0);
  #used = 0;
  #lastLength = 0;

  /** Appends `text` (UTF-8); returns its start position (its length: `lastLength`). */
  append(text: string): number {
    if (this.#blocks.length === 0 || (this.#used + text.length * 3 > this.#current.length && this.#used + Buffer.byteLength(text) > this.#current.length)) this.#newBlock(Buffer.byteLength(text));
    const start = (this.#blocks.length - 1) * MAX_BLOCK_BYTES + this.#used;
    this.#lastLength = this.#current.write(text, this.#used, 'utf8');
    this.#used += this.#lastLength;
    return start;
  }

  /** Bytes of the string `append` wrote last. */
  get lastLength(): number {
    return this.#lastLength;
  }

  /** Starts a block with room for `bytes` (a string longer than a block gets one of its own size). */
  #newBlock(bytes: number): void {
    const size = Math.max(Math.min(FIRST_BLOCK_BYTES * 2 ** this.#blocks.length, MAX_BLOCK_BYTES), bytes);
    this.#current = Buffer.allocUnsafe(size);
    this.#blocks.push(this.#current);
    this.#used = 0;
  }

  /** The block holding position `start`, and the offset of `start` in it. */
  #at(start: number): [Buffer, number] {
    const block = Math.floor(start / MAX_BLOCK_BYTES);
    return [this.#blocks[block] as Buffer, start - block * MAX_BLOCK_BYTES];
  }

  text(start: number, length: number): string {
    const [block, offset] = this.#at(start);
    return block.toString('utf8', offset, offset + length);
  }

  /** Whether the bytes at `start` equal `other[0, length)`. */
  equals(start: number, other: Uint8Array, length: number): boolean {
    const [block, offset] = this.#at(start);
    for (let i = 0; i < length; i++) if (block[offset + i] !== other[i]) return false;
    return true;
  }

  /** Whether the bytes at `start` (of `length`) begin with `prefix[0, prefixLength)`. */
  startsWith(start: number, length: number, prefix: Uint8Array, prefixLength: number): boolean {
    return length >= prefixLength && this.equals(start, prefix, prefixLength);
  }

  hash(start: number, length: number): number {
    const [block, offset] = this.#at(start);
    return hashBytes(block, offset, offset + length);
  }
}

/** One listed object, as `ListingIndex.get` gives it back. */
export interface ListedObject {
  readonly size: number;
  readonly fingerprint?: string;
  readonly hash?: string;
}

/**
 * Keys (relative to the backup, or any other fixed prefix the caller strips) to size, fingerprint
 * and stored hash; see the file comment. Adding a key twice keeps the last entry, as a `Map` would.
 */
export class ListingIndex {
  private readonly keys = new PackedStrings();
  private readonly extras = new PackedStrings();
  private keyStart: Uint32Array;
  private keyLength: Uint32Array;
  private sizes: Float64Array;
  /** 1 for an entry `remove`d. */
  private gone: Uint8Array;
  /** Start and length of the fingerprint, then of the stored hash, in `extras` (length `ABSENT`: none). */
  private extra: Uint32Array;
  /** Open addressing: entry index per slot, `EMPTY` when free. Kept at most half full. */
  private slots: Int32Array;
  private entries = 0;
  private removed = 0;
  /** Scratch space for the UTF-8 form of a key being looked up. */
  private scratch = Buffer.allocUnsafe(1024);

  /**
   * @param expectedEntries keys the listing will likely hold (a manifest's file count, say): the
   *   columns are made that large at once instead of grown, and left behind as garbage, on the way
   *   (a few more keys than expected only grow them once). @default a small start, grown as needed
   */
  constructor(expectedEntries = 0) {
    const capacity = Math.max(INITIAL_ENTRIES, Math.ceil(expectedEntries * 1.01) + 16);
    this.keyStart = new Uint32Array(capacity);
    this.keyLength = new Uint32Array(capacity);
    this.sizes = new Float64Array(capacity);
    this.gone = new Uint8Array(capacity);
    this.extra = new Uint32Array(capacity * 4);
    this.slots = new Int32Array(slotsFor(capacity)).fill(EMPTY);
  }

  /** Keys present (removed ones not counted). */
  get count(): number {
    return this.entries - this.removed;
  }

  /** The UTF-8 bytes of `key` in the scratch buffer; returns their length. */
  private encode(key: string): number {
    if (key.length * 3 > this.scratch.length) this.scratch = Buffer.allocUnsafe(key.length * 3);
    return this.scratch.write(key, 0, 'utf8');
  }

  /** The slot holding the encoded key in the scratch buffer, or the free slot where it would go. */
  private slotOf(length: number): number {
    const mask = this.slots.length - 1;
    let slot = hashBytes(this.scratch, 0, length) & mask;
    for (;;) {
      const entry = this.slots[slot] as number;
      if (entry === EMPTY) return slot;
      if (this.keyLength[entry] === length && this.keys.equals(this.keyStart[entry] as number, this.scratch, length)) return slot;
      slot = (slot + 1) & mask;
    }
  }

  private grow(): void {
    const capacity = Math.ceil(this.keyStart.length * 1.5);
    this.keyStart = widened(this.keyStart, capacity);
    this.keyLength = widened(this.keyLength, capacity);
    this.sizes = widened(this.sizes, capacity);
    this.gone = widened(this.gone, capacity);
    this.extra = widened(this.extra, capacity * 4);
    const slots = new Int32Array(slotsFor(capacity)).fill(EMPTY);
    const mask = slots.length - 1;
    for (let entry = 0; entry < this.entries; entry++) {
      let slot = this.keys.hash(this.keyStart[entry] as number, this.keyLength[entry] as number) & mask;
      while (slots[slot] !== EMPTY) slot = (slot + 1) & mask;
      slots[slot] = entry;
    }
    this.slots = slots;
  }

  private appendExtra(at: number, text: string | undefined): void {
    if (text === undefined) {
      this.extra[at] = 0;
      this.extra[at + 1] = ABSENT;
      return;
    }
    const start = this.extras.append(text);
    this.extra[at] = start;
    this.extra[at + 1] = this.extras.lastLength;
  }

  private extraText(at: number): string | undefined {
    const length = this.extra[at + 1] as number;
    return length === ABSENT ? undefined : this.extras.text(this.extra[at] as number, length);
  }

  /** Adds (or replaces) `key`. */
  set(key: string, size: number, fingerprint?: string, hash?: string): void {
    const length = this.encode(key);
    const slot = this.slotOf(length);
    let entry = this.slots[slot] as number;
    if (entry === EMPTY) {
      if (this.entries === this.keyStart.length) {
        this.grow();
        this.set(key, size, fingerprint, hash);
        return;
      }
      entry = this.entries++;
      this.slots[slot] = entry;
      const start = this.keys.append(key);
      this.keyStart[entry] = start;
      this.keyLength[entry] = length;
    } else if (this.gone[entry] === 1) {
      this.gone[entry] = 0;
      this.removed--;
    }
    this.sizes[entry] = size;
    this.appendExtra(entry * 4, fingerprint);
    this.appendExtra(entry * 4 + 2, hash);
  }

  private entryOf(key: string): number {
    const entry = this.slots[this.slotOf(this.encode(key))] as number;
    return entry === EMPTY || this.gone[entry] === 1 ? EMPTY : entry;
  }

  has(key: string): boolean {
    return this.entryOf(key) !== EMPTY;
  }

  /** The size listed for `key`, or `undefined` when it was not listed. */
  sizeOf(key: string): number | undefined {
    const entry = this.entryOf(key);
    return entry === EMPTY ? undefined : this.sizes[entry];
  }

  /** What was listed for `key` (a new small object), or `undefined`. */
  get(key: string): ListedObject | undefined {
    const entry = this.entryOf(key);
    if (entry === EMPTY) return undefined;
    const fingerprint = this.extraText(entry * 4);
    const hash = this.extraText(entry * 4 + 2);
    return { size: this.sizes[entry] as number, ...(fingerprint !== undefined ? { fingerprint } : {}), ...(hash !== undefined ? { hash } : {}) };
  }

  /** Forgets `key` (a no-op when absent). */
  remove(key: string): void {
    const entry = this.entryOf(key);
    if (entry === EMPTY) return;
    this.gone[entry] = 1;
    this.removed++;
  }

  /** Whether some key present starts with `prefix` (a scan of every key: for rare questions only). */
  hasPrefix(prefix: string): boolean {
    const length = this.encode(prefix);
    for (let entry = 0; entry < this.entries; entry++) {
      if (this.gone[entry] === 0 && this.keys.startsWith(this.keyStart[entry] as number, this.keyLength[entry] as number, this.scratch, length)) return true;
    }
    return false;
  }
}
