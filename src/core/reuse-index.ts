/**
 * The reuse index of one destination (issue 12): which files it already holds, byte for byte, in
 * its OTHER complete copies, so that the engine can create a file there by `copyWithin` instead
 * of sending it. A candidate matches only with the same size, the same whole-file hash and the
 * same chunk hashes at the same chunk size (the new file's hashes come from the one source read).
 * Built from a destination's copies by ./reuse-copies.ts.
 *
 * Lookup order: the same relative path in the newest earlier copy, then any copy by
 * (size, whole-file hash). Memory stays bounded whatever the number of earlier copies:
 * - manifests are streamed one at a time (newest first), each record indexed as it comes (never
 *   a whole manifest in memory), and taken out again when the manifest proves damaged;
 * - a file's chunk hashes are kept as one 64-bit digest of the chunk list, not as strings;
 * - identical contents are kept once (the newest location wins), in typed arrays; the paths
 *   front-coded (./sorted-paths.ts), the recorded fingerprints (tens of bytes) packed as UTF-8
 *   in one growing buffer;
 * - at most `maxEntries` distinct contents are kept (newest copies first); beyond that older
 *   contents are not offered, which only means those files are sent.
 * Measured by test/core/reuse.test.ts (30 copies of 100,000 files).
 *
 * At an encrypted destination (`ReuseIndexOptions.encrypted`) the records hold hashes of the stored
 * (sealed) bytes and a keyed plaintext MAC, never a plaintext hash: files are matched by path,
 * plain size and MAC (the new file's MAC comes from the one source read), only in copies sealed
 * in the current format and whose manifests carry a valid signature by this destination's key; a
 * match gives the candidate's stored record too, which the new record takes (a sealed file opens
 * only under its own path inside a backup: src/crypto/format.ts).
 */
import { getHasher, type Hasher } from '../hash/xxh64.js';
import type { Manifest, ManifestFile } from '../manifest/manifest.js';
import { widened } from '../typed-arrays.js';
import { FrontCodedPaths } from './sorted-paths.js';


/** Where a reusable file sits at the destination: backup folder name and path inside it. */
export interface ReuseSource {
  readonly backup: string;
  readonly path: string;
}

/** A `ReuseSource` with what its manifest recorded of the file at the destination. */
export interface ReuseMatch extends ReuseSource {
  /**
   * The destination fingerprint its manifest recorded (`ManifestFile.destinationFingerprint`),
   * absent when it recorded none: the engine reuses the file only while it still shows this one
   * (`copyWithin`'s `expect`, which an object store turns into a conditional copy).
   */
  readonly fingerprint?: string;
  /** At an encrypted destination: what its manifest recorded of the stored bytes (the new record's). */
  readonly stored?: { readonly size: number; readonly hash: string; readonly chunks: string[] };
}

/** What the new file is (from the source read); at an encrypted destination its `mac` is what matches. */
export type ReuseQuery = Pick<ManifestFile, 'path' | 'size' | 'hash' | 'chunks' | 'mac'>;

export interface ReuseIndexOptions {
  /** Most distinct contents kept (about 50 bytes + the path each). @default 1,000,000 */
  readonly maxEntries?: number;
  /**
   * Also keep, for the newest copy's files whose record has a content-MD5 source fingerprint
   * (`isContentEtag`), that fingerprint and the hashes (`known`): the source option
   * `trustEtags`. About 80 bytes more per such file. @default false
   */
  readonly sourceEtags?: boolean;
  /**
   * The destination encrypts (see the file comment): only copies in this `scheme` whose
   * manifests are signed by `publicKey` are indexed, by path, size and MAC. `sourceEtags` is
   * then ignored. @default a plain destination
   */
  readonly encrypted?: { readonly scheme: string; readonly publicKey: string };
}

const EMPTY = -1;

/**
 * True for the fingerprint of an object whose ETag is a plain MD5 of its bytes as far as the
 * listing tells (`etag:<32 hex>:<size>`): a multipart ETag (`-N` suffix) is not one. An SSE-KMS or
 * SSE-C ETag looks the same but is not the MD5 of the bytes: hence `trustEtags` is an option.
 */
export function isContentEtag(fingerprint: string | undefined): fingerprint is string {
  return fingerprint !== undefined && /^etag:[0-9a-f]{32}:\d+$/.test(fingerprint);
}

/** A 64-bit hash string (`xxh64:<16 hex>`) as two 32-bit halves. */
function halves(hash: string): [number, number] {
  const hex = hash.slice(hash.indexOf(':') + 1);
  return [Number.parseInt(hex.slice(0, 8), 16) >>> 0, Number.parseInt(hex.slice(8, 16), 16) >>> 0];
}

/** The lookup; make it with `createReuseIndex`, or from a destination's copies with `buildReuseIndex` (./reuse-copies.ts). */
export class ReuseIndex {
  readonly #hasher: Hasher;
  readonly #maxEntries: number;
  /** Open addressing, at most half full: grown with the entries, up to `#maxSlots`. */
  #slots: Int32Array;
  readonly #maxSlots: number;
  #hashHi = new Uint32Array(1024);
  #hashLo = new Uint32Array(1024);
  #chunksHi = new Uint32Array(1024);
  #chunksLo = new Uint32Array(1024);
  #size = new Float64Array(1024);
  /** Bytes of the recorded fingerprint at `#recordStart` in `#records` (0: none recorded). */
  #fingerprintLength = new Uint16Array(1024);
  /**
   * With `sourceEtags`: bytes right after the fingerprint in `#records` holding the recorded source
   * fingerprint and chunk hashes (`<fingerprint> <chunk>,<chunk>...`); 0: none kept.
   */
  #sourceLength: Uint32Array | undefined;
  /** Encrypted: bytes right after the fingerprint in `#records` holding the stored record (`<size> <hash> <chunk>,<chunk>...`). */
  #storedLength: Uint32Array | undefined;
  readonly #encrypted: boolean;
  /** One bit per (hashed) size: a clear bit proves no indexed file has that size. */
  #sizes: Uint32Array;
  #backup = new Uint16Array(1024);
  /**
   * The entries' paths, front-coded (./sorted-paths.ts): entries come in manifest order (sorted
   * paths), so the long `binlogs/insert_log/<collection>/<partition>/...` prefixes are held about
   * once: ~30 bytes a path instead of ~120 (100,000 files and more per copy, issue 12).
   */
  readonly #pathList = new FrontCodedPaths();
  /** FNV-1a of each entry's whole path (`#pathHash`): the by-path lookup without rebuilding paths. */
  #pathHashes = new Uint32Array(1024);
  /** Where each entry's recorded fingerprint (and extra record) starts in `#records`. */
  #recordStart = new Uint32Array(1024);
  #records = Buffer.alloc(64 * 1024);
  #recordBytes = 0;
  #count = 0;
  readonly #backups: string[] = [];
  /**
   * The newest copy's files by path: open addressing over their entries (each of its files has one
   * of its own, see `#insert`), at most half full, the paths compared once their hashes (`#pathHashes`) are equal. A
   * `Map` from path strings cost ~200 bytes of JavaScript heap per file (issue 12: 100,000 files).
   */
  #newestSlots = new Int32Array(4096).fill(EMPTY);
  #newestCount = 0;
  /** Entries of the newest copy's files whose contents an earlier entry holds (not counted in `size`). */
  #duplicates = 0;
  /** The UTF-8 bytes of a path being looked up or added. */
  #scratch = Buffer.alloc(1024);
  /** The chunk size of the newest copy's manifest (its chunk hashes are at that size). */
  #newestChunkBytes = 0;

  constructor(hasher: Hasher, options: ReuseIndexOptions = {}) {
    this.#hasher = hasher;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#encrypted = options.encrypted !== undefined;
    if (this.#encrypted) this.#storedLength = new Uint32Array(1024);
    else if (options.sourceEtags === true) this.#sourceLength = new Uint32Array(1024);
    let capacity = 1024;
    while (capacity < this.#maxEntries * 2) capacity *= 2;
    this.#maxSlots = capacity;
    // Grown as entries come: a destination with a few thousand files never pays for a million.
    this.#slots = new Int32Array(Math.min(capacity, 4096)).fill(EMPTY);
    this.#sizes = new Uint32Array(this.#slots.length / 8); // 4 bits per slot, 2 slots per entry: ~8 bits per entry
  }

  /** Distinct contents indexed. */
  get size(): number {
    return this.#count - this.#duplicates;
  }

  /** Copies indexed, newest first. */
  get backups(): readonly string[] {
    return this.#backups;
  }

  /**
   * Adds one complete copy's manifest. Call newest copy first: the first manifest's paths are
   * the by-path lookup, and for contents held by several copies the first location stays.
   */
  add(manifest: Pick<Manifest, 'backup' | 'chunkBytes' | 'files'>): void {
    const copy = this.begin(manifest.backup, manifest.chunkBytes);
    for (const file of manifest.files) copy.add(file);
  }

  /**
   * Starts adding one copy's files one at a time (`add`, as a manifest is streamed), with the same
   * order rule as `add`. `undo` takes out every file added since (a manifest found damaged at its
   * end: nothing of it may be reused).
   */
  begin(backup: string, chunkBytes: number): { add(file: ManifestFile): void; undo(): void } {
    const backupIndex = this.#backups.length;
    if (backupIndex >= 0xffff) return { add: () => undefined, undo: () => undefined };
    this.#backups.push(backup);
    if (backupIndex === 0) this.#newestChunkBytes = chunkBytes;
    const count = this.#count;
    const pathBytes = this.#recordBytes;
    return {
      add: (file) => {
        const entry = this.#insert(file, chunkBytes, backupIndex);
        if (backupIndex === 0 && entry !== EMPTY) this.#addNewest(entry);
      },
      undo: () => this.#undo(backupIndex, count, pathBytes),
    };
  }

  /** Takes out the copy at `backupIndex` (the last one begun) and the entries from `count` on. */
  #undo(backupIndex: number, count: number, pathBytes: number): void {
    this.#backups.length = backupIndex;
    if (backupIndex === 0) {
      this.#newestSlots.fill(EMPTY);
      this.#newestCount = 0;
      this.#duplicates = 0;
    }
    this.#count = count;
    this.#recordBytes = pathBytes;
    this.#pathList.truncate(count);
    // Open addressing cannot simply drop entries: the slots are made again from those kept (rare:
    // a damaged manifest).
    this.#rehash(this.#slots.length);
  }

  /** Makes the slots (`capacity` of them) and size bits again from the entries kept. */
  #rehash(capacity: number): void {
    this.#slots = new Int32Array(capacity).fill(EMPTY);
    this.#sizes = new Uint32Array(capacity / 8);
    const mask = capacity - 1;
    for (let entry = 0; entry < this.#count; entry++) {
      const size = this.#size[entry] as number;
      const key = { hi: this.#hashHi[entry] as number, lo: this.#hashLo[entry] as number, chi: this.#chunksHi[entry] as number, clo: this.#chunksLo[entry] as number, size };
      let slot = this.#slotOf(key);
      let taken = false;
      for (; this.#slots[slot] !== EMPTY; slot = (slot + 1) & mask) taken ||= this.#matches(this.#slots[slot] as number, key);
      // The newest copy's file with contents that an earlier entry holds is found by path only.
      if (!taken) this.#slots[slot] = entry;
      const bit = this.#sizeBit(size);
      this.#sizes[bit >>> 5] = (this.#sizes[bit >>> 5] as number) | (1 << (bit & 31));
    }
  }

  /**
   * Where `file` (chunked at `chunkBytes`) can be copied from at this destination: the same path
   * in the newest copy when it matches, else any copy holding the same contents; `undefined` when
   * none does (then it must be sent).
   */
  find(file: ReuseQuery, chunkBytes: number): ReuseSource | undefined {
    const found = this.match(file, chunkBytes);
    return found && { backup: found.backup, path: found.path };
  }

  /** `find`, with the fingerprint the candidate's manifest recorded (see `ReuseMatch`). */
  match(file: ReuseQuery, chunkBytes: number): ReuseMatch | undefined {
    const key = this.#key(file, chunkBytes);
    const same = this.#newestEntry(file.path);
    if (same !== undefined && this.#matches(same, key)) return this.#matchOf(same, file.path);
    const entry = this.#lookup(key);
    return entry === EMPTY ? undefined : this.#matchOf(entry);
  }

  /**
   * Before the file is read: the newest copy's file at the same path when it has this size (the
   * likeliest source of a reuse), else `undefined`.
   */
  candidate(path: string, size: number): ReuseSource | undefined {
    const entry = this.#newestEntry(path);
    return entry !== undefined && this.#size[entry] === size ? { backup: this.#backups[0] as string, path } : undefined;
  }

  /**
   * What the newest copy's manifest recorded of `path` at the source, when both it and the source
   * now show a content-MD5 fingerprint (`isContentEtag`) for a file of this size: `same` with the
   * recorded hashes when the fingerprints are equal (the same bytes; the caller still copies it
   * with `match`, which finds that very record first), else `same: false` (other bytes: no use
   * hashing it first to look for it). `undefined` when nothing is known: without the
   * `sourceEtags` option, another chunk size, another size, no such record.
   */
  known(path: string, size: number, sourceFingerprint: string | undefined, chunkBytes: number):
    { readonly same: true; readonly hash: string; readonly chunks: string[] } | { readonly same: false } | undefined {
    if (this.#sourceLength === undefined || !isContentEtag(sourceFingerprint) || chunkBytes !== this.#newestChunkBytes) return undefined;
    const entry = this.#newestEntry(path);
    if (entry === undefined || this.#size[entry] !== size) return undefined;
    const length = this.#sourceLength[entry] as number;
    if (length === 0) return undefined;
    const start = (this.#recordStart[entry] as number) + (this.#fingerprintLength[entry] as number);
    const [fingerprint, hash, chunks] = this.#records.toString('utf8', start, start + length).split(' ') as [string, string, string];
    return fingerprint === sourceFingerprint ? { same: true, hash, chunks: chunks === '' ? [] : chunks.split(',') } : { same: false };
  }

  /** False when no indexed file has `size` (then nothing can match); true means maybe. */
  mayHold(size: number, path?: string): boolean {
    // Encrypted: only the same path can match, so the bit is of (size, path).
    const bit = this.#sizeBit(size, path);
    return ((this.#sizes[bit >>> 5] as number) & (1 << (bit & 31))) !== 0;
  }

  #matchOf(entry: number, path = this.#pathOf(entry)): ReuseMatch {
    const backup = this.#backups[this.#backup[entry] as number] as string;
    const length = this.#fingerprintLength[entry] as number;
    const start = this.#recordStart[entry] as number;
    const stored = this.#storedOf(entry, start + length);
    const found: ReuseMatch = length === 0 ? { backup, path } : { backup, path, fingerprint: this.#records.toString('utf8', start, start + length) };
    return stored ? { ...found, stored } : found;
  }

  /** The stored record kept at `at` in `#records` for an encrypted destination's entry. */
  #storedOf(entry: number, at: number): ReuseMatch['stored'] {
    const length = this.#storedLength?.[entry] ?? 0;
    if (length === 0) return undefined;
    const [size, hash, chunks] = this.#records.toString('utf8', at, at + length).split(' ') as [string, string, string];
    return { size: Number(size), hash, chunks: chunks === '' ? [] : chunks.split(',') };
  }

  #sizeBit(size: number, path?: string): number {
    const salt = this.#encrypted && path !== undefined ? Number.parseInt(this.#hasher.hash(Buffer.from(path)).slice(-8), 16) : 0;
    let h = Math.imul(((size >>> 0) ^ Math.floor(size / 0x100000000)) ^ salt, 0x9e3779b1) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
    return ((h ^ (h >>> 13)) >>> 0) % (this.#sizes.length * 32);
  }

  #key(file: ReuseQuery, chunkBytes: number): { hi: number; lo: number; chi: number; clo: number; size: number } {
    if (this.#encrypted) {
      // The MAC covers the chunk size; the path is part of the key (a sealed file opens only there).
      const [hi, lo] = halves(file.mac ?? '');
      const [chi, clo] = halves(this.#hasher.hash(Buffer.from(`${file.path}\n${file.mac ?? ''}`)));
      return { hi, lo, chi, clo, size: file.size };
    }
    const [hi, lo] = halves(file.hash);
    const [chi, clo] = halves(this.#hasher.hash(Buffer.from(`${chunkBytes}:${file.chunks.join(',')}`)));
    return { hi, lo, chi, clo, size: file.size };
  }

  #matches(entry: number, key: { hi: number; lo: number; chi: number; clo: number; size: number }): boolean {
    return this.#hashHi[entry] === key.hi && this.#hashLo[entry] === key.lo && this.#chunksHi[entry] === key.chi &&
      this.#chunksLo[entry] === key.clo && this.#size[entry] === key.size;
  }

  #slotOf(key: { hi: number; lo: number; size: number }): number {
    const mask = this.#slots.length - 1;
    // Mixed (murmur3's finalizer) so that hashes or sizes with structure still spread over the slots.
    let h = (key.lo ^ Math.imul(key.hi, 0x9e3779b1) ^ Math.imul(key.size >>> 0, 0x85ebca6b)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & mask;
  }

  #lookup(key: { hi: number; lo: number; chi: number; clo: number; size: number }): number {
    const mask = this.#slots.length - 1;
    for (let slot = this.#slotOf(key); ; slot = (slot + 1) & mask) {
      const entry = this.#slots[slot] as number;
      if (entry === EMPTY || this.#matches(entry, key)) return entry;
    }
  }

  #insert(file: ManifestFile, chunkBytes: number, backupIndex: number): number {
    // Encrypted: a record without its MAC and stored size cannot be matched or taken over.
    if (this.#encrypted && (file.mac === undefined || file.storedSize === undefined)) return EMPTY;
    const key = this.#key(file, chunkBytes);
    if ((this.#count + 1) * 2 > this.#slots.length && this.#slots.length < this.#maxSlots) this.#rehash(this.#slots.length * 2);
    const mask = this.#slots.length - 1;
    let slot = this.#slotOf(key);
    let same = EMPTY;
    for (; ; slot = (slot + 1) & mask) {
      const entry = this.#slots[slot] as number;
      if (entry === EMPTY) break;
      if (this.#matches(entry, key)) {
        same = entry;
        break;
      }
    }
    // Contents held already are kept once, except that every file of the newest copy gets an entry
    // of its own: the by-path lookup then gives its own path and fingerprint.
    if (same !== EMPTY && backupIndex !== 0) return same;
    if (this.#count >= this.#maxEntries) return EMPTY;
    const entry = this.#count++;
    this.#grow(entry);
    this.#hashHi[entry] = key.hi;
    this.#hashLo[entry] = key.lo;
    this.#chunksHi[entry] = key.chi;
    this.#chunksLo[entry] = key.clo;
    this.#size[entry] = key.size;
    this.#backup[entry] = backupIndex;
    const bit = this.#sizeBit(key.size, file.path);
    this.#sizes[bit >>> 5] = (this.#sizes[bit >>> 5] as number) | (1 << (bit & 31));
    const fingerprint = file.destinationFingerprint ?? '';
    const source = this.#sourceLength !== undefined && backupIndex === 0 && isContentEtag(file.sourceFingerprint) ? `${file.sourceFingerprint} ${file.hash} ${file.chunks.join(',')}`
      : this.#storedLength !== undefined ? `${String(file.storedSize)} ${file.hash} ${file.chunks.join(',')}` : '';
    const length = Buffer.byteLength(fingerprint) + Buffer.byteLength(source);
    if (this.#recordBytes + length > this.#records.length) {
      // By half: with 300,000 paths and fingerprints (~40 MB), doubling would leave up to that much unused.
      const bigger = Buffer.alloc(Math.max(Math.ceil(this.#records.length * 1.5), this.#recordBytes + length));
      this.#records.copy(bigger, 0, 0, this.#recordBytes);
      this.#records = bigger;
    }
    this.#pathList.push(file.path);
    this.#pathHashes[entry] = ReuseIndex.#pathHash(this.#scratch, 0, this.#wholePath(file.path));
    this.#recordStart[entry] = this.#recordBytes;
    this.#fingerprintLength[entry] = Math.min(0xffff, this.#records.write(fingerprint, this.#recordBytes));
    const extra = this.#sourceLength ?? this.#storedLength;
    if (extra !== undefined) extra[entry] = this.#records.write(source, this.#recordBytes + (this.#fingerprintLength[entry] as number));
    this.#recordBytes += length;
    if (same === EMPTY) this.#slots[slot] = entry;
    else this.#duplicates++;
    return entry;
  }

  /** FNV-1a of `length` bytes of `bytes` from `start`. */
  static #pathHash(bytes: Uint8Array, start: number, length: number): number {
    let h = 0x811c9dc5;
    for (let i = start; i < start + length; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
    // Spread (murmur3's finalizer): the low bits pick the slot.
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    return (h ^ (h >>> 13)) >>> 0;
  }

  /** Adds the newest copy's `entry` to the by-path lookup (a path given twice: the last one, as a `Map` would). */
  #addNewest(entry: number): void {
    if ((this.#newestCount + 1) * 2 > this.#newestSlots.length) {
      const old = this.#newestSlots;
      this.#newestSlots = new Int32Array(old.length * 2).fill(EMPTY);
      for (const kept of old) if (kept !== EMPTY) this.#placeNewest(kept, false);
    }
    if (this.#placeNewest(entry, true)) this.#newestCount++;
  }

  /** Puts `entry` in the by-path slots; true when its path was not there yet. */
  #placeNewest(entry: number, replace: boolean): boolean {
    const hash = this.#pathHashes[entry] as number;
    const mask = this.#newestSlots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const there = this.#newestSlots[slot] as number;
      if (there === EMPTY) {
        this.#newestSlots[slot] = entry;
        return true;
      }
      if (replace && this.#pathHashes[there] === hash && this.#samePath(there, entry)) {
        this.#newestSlots[slot] = entry;
        return false;
      }
    }
  }

  /** Whether entries `a` and `b` have the same path. */
  #samePath(a: number, b: number): boolean {
    return this.#pathList.at(a) === this.#pathList.at(b);
  }

  /** The newest copy's entry of `path`, or `undefined`. */
  #newestEntry(path: string): number | undefined {
    if (this.#newestCount === 0) return undefined;
    const length = this.#wholePath(path);
    const hash = ReuseIndex.#pathHash(this.#scratch, 0, length);
    const mask = this.#newestSlots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = this.#newestSlots[slot] as number;
      if (entry === EMPTY) return undefined;
      if (this.#pathHashes[entry] !== hash) continue;
      if (this.#pathList.at(entry) === path) return entry;
    }
  }

  /** `path` as UTF-8 in `#scratch`; its length in bytes. */
  #wholePath(path: string): number {
    if (path.length * 3 > this.#scratch.length) this.#scratch = Buffer.alloc(path.length * 3);
    return this.#scratch.write(path, 0, 'utf8');
  }

  #grow(entry: number): void {
    if (entry < this.#size.length) return;
    const length = Math.min(this.#size.length * 2, Math.max(this.#maxEntries, entry + 1));
    this.#hashHi = widened(this.#hashHi, length);
    this.#hashLo = widened(this.#hashLo, length);
    this.#chunksHi = widened(this.#chunksHi, length);
    this.#chunksLo = widened(this.#chunksLo, length);
    this.#size = widened(this.#size, length);
    this.#fingerprintLength = widened(this.#fingerprintLength, length);
    if (this.#sourceLength !== undefined) this.#sourceLength = widened(this.#sourceLength, length);
    if (this.#storedLength !== undefined) this.#storedLength = widened(this.#storedLength, length);
    this.#backup = widened(this.#backup, length);
    this.#recordStart = widened(this.#recordStart, length);
    this.#pathHashes = widened(this.#pathHashes, length);
  }

  #pathOf(entry: number): string {
    return this.#pathList.at(entry);
  }
}

/** A fresh, empty index (the hasher is loaded once per process). */
export async function createReuseIndex(options: ReuseIndexOptions = {}): Promise<ReuseIndex> {
  return new ReuseIndex(await getHasher(), options);
}
