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

/** Initial capacity in entries (grows by doubling). */
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

/** Strings appended one after another into one growing buffer, each found by its start and length. */
export class PackedStrings {
  private bytes = Buffer.allocUnsafe(64 * 1024);
  private used = 0;

  /** Appends `text` (UTF-8); returns its start offset. */
  append(text: string): number {
    const most = text.length * 3;
    if (this.used + most > this.bytes.length) {
      const larger = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + most));
      this.bytes.copy(larger, 0, 0, this.used);
      this.bytes = larger;
    }
    const start = this.used;
    this.used += this.bytes.write(text, start, 'utf8');
    return start;
  }

  /** Bytes appended since `start` (the length of what `append` just wrote there). */
  lengthSince(start: number): number {
    return this.used - start;
  }

  text(start: number, length: number): string {
    return this.bytes.toString('utf8', start, start + length);
  }

  /** Whether the bytes at `start` equal `other[0, length)`. */
  equals(start: number, other: Uint8Array, length: number): boolean {
    const bytes = this.bytes;
    for (let i = 0; i < length; i++) if (bytes[start + i] !== other[i]) return false;
    return true;
  }

  /** Whether the bytes at `start` (of `length`) begin with `prefix[0, prefixLength)`. */
  startsWith(start: number, length: number, prefix: Uint8Array, prefixLength: number): boolean {
    return length >= prefixLength && this.equals(start, prefix, prefixLength);
  }

  hash(start: number, length: number): number {
    return hashBytes(this.bytes, start, start + length);
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
  private keyStart = new Uint32Array(INITIAL_ENTRIES);
  private keyLength = new Uint32Array(INITIAL_ENTRIES);
  private sizes = new Float64Array(INITIAL_ENTRIES);
  /** 1 for an entry `remove`d. */
  private gone = new Uint8Array(INITIAL_ENTRIES);
  /** Start and length of the fingerprint, then of the stored hash, in `extras` (length `ABSENT`: none). */
  private extra = new Uint32Array(INITIAL_ENTRIES * 4);
  /** Open addressing: entry index per slot, `EMPTY` when free. Kept at most half full. */
  private slots = new Int32Array(INITIAL_ENTRIES * 2).fill(EMPTY);
  private entries = 0;
  private removed = 0;
  /** Scratch space for the UTF-8 form of a key being looked up. */
  private scratch = Buffer.allocUnsafe(1024);

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
    const capacity = this.keyStart.length * 2;
    this.keyStart = widened(this.keyStart, capacity);
    this.keyLength = widened(this.keyLength, capacity);
    this.sizes = widened(this.sizes, capacity);
    this.gone = widened(this.gone, capacity);
    this.extra = widened(this.extra, capacity * 4);
    const slots = new Int32Array(capacity * 2).fill(EMPTY);
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
    this.extra[at + 1] = this.extras.lengthSince(start);
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
