/**
 * The reuse index of one destination (issue 12): which files it already holds, byte for byte, in
 * its OTHER complete copies, so that the engine can create a file there by `copyWithin` instead
 * of sending it. A candidate matches only with the same size, the same whole-file hash and the
 * same chunk hashes at the same chunk size (the new file's hashes come from the one source read).
 *
 * Lookup order: the same relative path in the newest earlier copy, then any copy by
 * (size, whole-file hash). Memory stays bounded whatever the number of earlier copies:
 * - manifests are read one at a time (newest first) and dropped after they are indexed;
 * - a file's chunk hashes are kept as one 64-bit digest of the chunk list, not as strings;
 * - identical contents are kept once (the newest location wins), in typed arrays, with paths
 *   packed as UTF-8 in one growing buffer;
 * - at most `maxEntries` distinct contents are kept (newest copies first); beyond that older
 *   contents are not offered, which only means those files are sent.
 * Measured by test/core/reuse.test.ts (30 copies of 100,000 files).
 */
import type { Driver, SignalOptions } from '../drivers/types.js';
import { getHasher, type Hasher } from '../hash/xxh64.js';
import { manifestKey, readManifestAt, type Manifest, type ManifestFile } from '../manifest/manifest.js';

/** Where a reusable file sits at the destination: backup folder name and path inside it. */
export interface ReuseSource {
  readonly backup: string;
  readonly path: string;
}

/** What the new file is (from the source read). */
export type ReuseQuery = Pick<ManifestFile, 'path' | 'size' | 'hash' | 'chunks'>;

export interface ReuseIndexOptions {
  /** Most distinct contents kept (about 40 bytes + the path each). @default 1,000,000 */
  readonly maxEntries?: number;
}

const EMPTY = -1;

/** A 64-bit hash string (`xxh64:<16 hex>`) as two 32-bit halves. */
function halves(hash: string): [number, number] {
  const hex = hash.slice(hash.indexOf(':') + 1);
  return [Number.parseInt(hex.slice(0, 8), 16) >>> 0, Number.parseInt(hex.slice(8, 16), 16) >>> 0];
}

/** The lookup; build it with `ReuseIndexBuilder` or `buildReuseIndex`. */
export class ReuseIndex {
  readonly #hasher: Hasher;
  readonly #maxEntries: number;
  readonly #slots: Int32Array;
  #hashHi = new Uint32Array(1024);
  #hashLo = new Uint32Array(1024);
  #chunksHi = new Uint32Array(1024);
  #chunksLo = new Uint32Array(1024);
  #size = new Float64Array(1024);
  #backup = new Uint16Array(1024);
  #pathStart = new Uint32Array(1024);
  #pathLength = new Uint32Array(1024);
  #paths = Buffer.alloc(64 * 1024);
  #pathBytes = 0;
  #count = 0;
  readonly #backups: string[] = [];
  /** The newest copy's files by path -> entry. */
  readonly #newest = new Map<string, number>();

  constructor(hasher: Hasher, options: ReuseIndexOptions = {}) {
    this.#hasher = hasher;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    let capacity = 1024;
    while (capacity < this.#maxEntries * 2) capacity *= 2;
    this.#slots = new Int32Array(capacity).fill(EMPTY);
  }

  /** Distinct contents indexed. */
  get size(): number {
    return this.#count;
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
    const backupIndex = this.#backups.length;
    if (backupIndex >= 0xffff) return;
    this.#backups.push(manifest.backup);
    for (const file of manifest.files) {
      const entry = this.#insert(file, manifest.chunkBytes, backupIndex);
      if (backupIndex === 0 && entry !== EMPTY) this.#newest.set(file.path, entry);
    }
  }

  /**
   * Where `file` (chunked at `chunkBytes`) can be copied from at this destination: the same path
   * in the newest copy when it matches, else any copy holding the same contents; `undefined` when
   * none does (then it must be sent).
   */
  find(file: ReuseQuery, chunkBytes: number): ReuseSource | undefined {
    const key = this.#key(file, chunkBytes);
    const same = this.#newest.get(file.path);
    if (same !== undefined && this.#matches(same, key)) return { backup: this.#backups[0] as string, path: file.path };
    const entry = this.#lookup(key);
    return entry === EMPTY ? undefined : { backup: this.#backups[this.#backup[entry] as number] as string, path: this.#pathOf(entry) };
  }

  #key(file: ReuseQuery, chunkBytes: number): { hi: number; lo: number; chi: number; clo: number; size: number } {
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
    const key = this.#key(file, chunkBytes);
    const mask = this.#slots.length - 1;
    let slot = this.#slotOf(key);
    for (; ; slot = (slot + 1) & mask) {
      const entry = this.#slots[slot] as number;
      if (entry === EMPTY) break;
      if (this.#matches(entry, key)) return entry;
    }
    if (this.#count >= this.#maxEntries) return EMPTY;
    const entry = this.#count++;
    this.#grow(entry);
    this.#hashHi[entry] = key.hi;
    this.#hashLo[entry] = key.lo;
    this.#chunksHi[entry] = key.chi;
    this.#chunksLo[entry] = key.clo;
    this.#size[entry] = key.size;
    this.#backup[entry] = backupIndex;
    const length = Buffer.byteLength(file.path);
    if (this.#pathBytes + length > this.#paths.length) {
      const bigger = Buffer.alloc(Math.max(this.#paths.length * 2, this.#pathBytes + length));
      this.#paths.copy(bigger, 0, 0, this.#pathBytes);
      this.#paths = bigger;
    }
    this.#pathStart[entry] = this.#pathBytes;
    this.#pathLength[entry] = this.#paths.write(file.path, this.#pathBytes);
    this.#pathBytes += length;
    this.#slots[slot] = entry;
    return entry;
  }

  #grow(entry: number): void {
    if (entry < this.#size.length) return;
    const length = Math.min(this.#size.length * 2, Math.max(this.#maxEntries, entry + 1));
    const grow = <T extends Uint32Array | Uint16Array | Float64Array>(from: T, make: (n: number) => T): T => {
      const to = make(length);
      to.set(from);
      return to;
    };
    this.#hashHi = grow(this.#hashHi, (n) => new Uint32Array(n));
    this.#hashLo = grow(this.#hashLo, (n) => new Uint32Array(n));
    this.#chunksHi = grow(this.#chunksHi, (n) => new Uint32Array(n));
    this.#chunksLo = grow(this.#chunksLo, (n) => new Uint32Array(n));
    this.#size = grow(this.#size, (n) => new Float64Array(n));
    this.#backup = grow(this.#backup, (n) => new Uint16Array(n));
    this.#pathStart = grow(this.#pathStart, (n) => new Uint32Array(n));
    this.#pathLength = grow(this.#pathLength, (n) => new Uint32Array(n));
  }

  #pathOf(entry: number): string {
    const start = this.#pathStart[entry] as number;
    return this.#paths.toString('utf8', start, start + (this.#pathLength[entry] as number));
  }
}

/** A fresh, empty index (the hasher is loaded once per process). */
export async function createReuseIndex(options: ReuseIndexOptions = {}): Promise<ReuseIndex> {
  return new ReuseIndex(await getHasher(), options);
}

/**
 * Builds the index of `driver` (a destination) from the manifests of `backups`, given newest
 * first and excluding the backup being replicated; a backup without a manifest (incomplete copy)
 * is skipped. Reads one manifest at a time. A damaged manifest rejects (`ManifestError`): the
 * caller may replicate without reuse, never reuse from a copy it cannot trust.
 */
export async function buildReuseIndex(driver: Driver, backups: readonly string[], options: ReuseIndexOptions & SignalOptions = {}): Promise<ReuseIndex> {
  const index = await createReuseIndex(options);
  for (const backup of backups) {
    const manifest = await readManifestAt(driver, manifestKey(backup), options);
    if (manifest?.kind === 'complete') index.add(manifest);
  }
  return index;
}
