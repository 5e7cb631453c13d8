/**
 * The file records of one destination during a replicate run (src/core/destination-run.ts): what
 * its progress checkpoints and its manifest will say about every file committed there.
 *
 * Why not a `Map<string, ManifestFile>`: a record object with its hash string, its chunk list and
 * its fingerprints cost ~300 bytes of heap per file and destination, which at 100,000 files was
 * one of the largest things the run held (issue 13). Here a record is a slot in typed arrays: the
 * whole-file hash as two 32-bit halves, the size as a double, the two fingerprints as numbers when
 * they are local ones (./fingerprint-column.ts; any other kind by reference), and
 * no chunk list when it is the usual one (one chunk whose hash is the file's, or none for an empty
 * file). Anything else (several chunks, a hash not written the canonical way, other fields) is
 * kept as it came. A reused file's `reusedFrom` (`<copy>/<path>`, issue 12) is the name of the
 * copy by a small number into a table of names when the path is the record's own (nearly always:
 * a nightly chain's kept files sit at the same path in the copy before), not a string per file.
 * `get` and `values` build the `ManifestFile` again, equal field by field.
 *
 * The run knows every path it may record before it starts (its files, sorted): given them, a
 * path's slot is its place in that list, found by binary search, so no map from path to slot is
 * kept either (another ~50 bytes per file). Paths outside the list still get a slot through a map.
 */
import type { ManifestFile } from '../manifest/manifest.js';
import { ownString } from '../strings.js';
import { widened } from '../typed-arrays.js';
import { FingerprintColumn } from './fingerprint-column.js';

const HASH_PREFIX = 'xxh64:';
const CANONICAL_HASH = /^xxh64:[0-9a-f]{16}$/;

/** A slot of the known paths with no record yet. */
const EMPTY = 0;
/** How a slot's chunk list is rebuilt. */
const ONE_CHUNK = 1;
const NO_CHUNKS = 2;
/** The record is kept whole in `#odd`. */
const ODD = 3;

/** The index of `key` in `sorted` (sorted by code units, as manifests are), or -1. */
export function indexOfSorted(sorted: readonly string[], key: string): number {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const at = sorted[middle] as string;
    if (at === key) return middle;
    if (at < key) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

/** True when `paths` is sorted by code units with no path twice. */
export function isStrictlySorted(paths: readonly string[]): boolean {
  for (let i = 1; i < paths.length; i++) if (!((paths[i - 1] as string) < (paths[i] as string))) return false;
  return true;
}

/** Two hex digits of every byte value. */
const HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/** Eight hex digits of a 32-bit value: by table, several times faster than `toString(16).padStart` (a record is rebuilt for every checkpoint and manifest pass). */
function hex8(value: number): string {
  return (HEX_BYTES[value >>> 24] as string) + (HEX_BYTES[(value >>> 16) & 255] as string) + (HEX_BYTES[(value >>> 8) & 255] as string) + (HEX_BYTES[value & 255] as string);
}

/** A record with only the fields of `ManifestFile` kept in columns, each of the expected type. */
function isPlain(file: ManifestFile): boolean {
  for (const key in file) {
    if (key === 'path' || key === 'size' || key === 'hash' || key === 'chunks') continue;
    if ((key === 'sourceFingerprint' || key === 'destinationFingerprint' || key === 'reusedFrom') && typeof file[key] === 'string') continue;
    return false;
  }
  return typeof file.path === 'string' && typeof file.size === 'number' && typeof file.hash === 'string' && Array.isArray(file.chunks);
}

export class RecordStore {
  /** The paths known in advance (sorted): the slot of `known[i]` is `i`. */
  readonly #known: readonly string[];
  /** Path -> slot, for paths not in `#known`. */
  readonly #slots = new Map<string, number>();
  #sizes: Float64Array;
  #hashHigh: Uint32Array;
  #hashLow: Uint32Array;
  #kinds: Uint8Array;
  /** The two fingerprints, as numbers where they are local ones (./fingerprint-column.ts). */
  readonly #sourceFingerprints: FingerprintColumn;
  readonly #destinationFingerprints: FingerprintColumn;
  readonly #odd = new Map<number, ManifestFile>();
  /** 1 + the index in `#copies` of the copy a slot's file was reused from at the same path; 0: not reused. */
  #reusedFrom: Uint16Array;
  /** Names of the copies reused from, each once, and their index there. */
  readonly #copies: string[] = [];
  readonly #copyIndex = new Map<string, number>();
  /** Slots handed out: every known path's, then one per other path. */
  #used: number;
  #recorded = 0;

  /**
   * `known`: the paths that will be recorded, sorted by code units with none twice (checked; if
   * they are not, they are ignored and every path goes through the map).
   */
  constructor(known: readonly string[] = []) {
    this.#known = isStrictlySorted(known) ? known : [];
    const capacity = Math.max(1024, this.#known.length);
    this.#sizes = new Float64Array(capacity);
    this.#hashHigh = new Uint32Array(capacity);
    this.#hashLow = new Uint32Array(capacity);
    this.#kinds = new Uint8Array(capacity);
    this.#reusedFrom = new Uint16Array(capacity);
    this.#sourceFingerprints = new FingerprintColumn(capacity);
    this.#destinationFingerprints = new FingerprintColumn(capacity);
    this.#used = this.#known.length;
  }

  /** Files recorded. */
  get size(): number {
    return this.#recorded;
  }

  has(path: string): boolean {
    return this.#slotOf(path) !== undefined;
  }

  get(path: string): ManifestFile | undefined {
    const slot = this.#slotOf(path);
    return slot === undefined ? undefined : this.#record(path, slot);
  }

  /** The slot of a recorded path. */
  #slotOf(path: string): number | undefined {
    const known = indexOfSorted(this.#known, path);
    if (known >= 0) return this.#kinds[known] === EMPTY ? undefined : known;
    return this.#slots.get(path);
  }

  /** Records `file` under its path (replacing an earlier record of it). */
  set(file: ManifestFile): this {
    let slot: number | undefined = indexOfSorted(this.#known, file.path);
    if (slot < 0) slot = this.#slots.get(file.path);
    if (slot === undefined) {
      slot = this.#used++;
      if (slot === this.#sizes.length) this.#grow();
      this.#slots.set(file.path, slot);
    }
    if (this.#kinds[slot] === EMPTY) this.#recorded++;
    else this.#odd.delete(slot);
    const plain = isPlain(file) && CANONICAL_HASH.test(file.hash);
    const chunks = file.chunks;
    const reusedFrom = plain && file.reusedFrom !== undefined ? this.#copyOf(file.reusedFrom, file.path) : 0;
    const kind = !plain || reusedFrom < 0 ? ODD
      : chunks.length === 0 ? NO_CHUNKS
        : chunks.length === 1 && chunks[0] === file.hash ? ONE_CHUNK : ODD;
    this.#kinds[slot] = kind;
    if (kind === ODD) {
      this.#odd.set(slot, file);
      this.#sourceFingerprints.set(slot, undefined);
      this.#destinationFingerprints.set(slot, undefined);
      return this;
    }
    this.#sizes[slot] = file.size;
    this.#reusedFrom[slot] = reusedFrom;
    this.#hashHigh[slot] = Number.parseInt(file.hash.slice(6, 14), 16);
    this.#hashLow[slot] = Number.parseInt(file.hash.slice(14, 22), 16);
    this.#sourceFingerprints.set(slot, file.sourceFingerprint);
    this.#destinationFingerprints.set(slot, file.destinationFingerprint);
    return this;
  }

  /** Every record: those of the known paths in their order, then the others in the order they were first made. */
  *values(): IterableIterator<ManifestFile> {
    for (const [slot, path] of this.#known.entries()) if (this.#kinds[slot] !== EMPTY) yield this.#record(path, slot);
    for (const [path, slot] of this.#slots) yield this.#record(path, slot);
  }

  /** The records that say where the file was reused from (`reusedFrom`), as `{ path, from }`, without building the records. */
  *reused(): IterableIterator<{ path: string; from: string }> {
    for (const [slot, path] of this.#known.entries()) {
      const from = this.#reusedFromOf(path, slot);
      if (from !== undefined) yield { path, from };
    }
    for (const [path, slot] of this.#slots) {
      const from = this.#reusedFromOf(path, slot);
      if (from !== undefined) yield { path, from };
    }
  }

  #reusedFromOf(path: string, slot: number): string | undefined {
    const kind = this.#kinds[slot];
    if (kind === EMPTY) return undefined;
    if (kind === ODD) return (this.#odd.get(slot) as ManifestFile).reusedFrom;
    const copy = this.#reusedFrom[slot] as number;
    return copy === 0 ? undefined : `${this.#copies[copy - 1] as string}/${path}`;
  }

  /** The paths recorded so far, sorted by code units as manifests are: a snapshot for `inOrder`. */
  sortedPaths(): string[] {
    const paths: string[] = [];
    for (const [slot, path] of this.#known.entries()) if (this.#kinds[slot] !== EMPTY) paths.push(path);
    if (this.#slots.size === 0) return paths;
    for (const path of this.#slots.keys()) paths.push(path);
    return paths.sort();
  }

  /** The records of `paths` (every one recorded), in that order. */
  *inOrder(paths: readonly string[]): IterableIterator<ManifestFile> {
    for (const path of paths) {
      const record = this.get(path);
      if (record === undefined) throw new Error(`no record of ${path}`);
      yield record;
    }
  }

  /** Bytes of the files `paths` (every one recorded). */
  bytesOf(paths: readonly string[]): number {
    let total = 0;
    for (const path of paths) {
      const slot = this.#slotOf(path);
      if (slot === undefined) throw new Error(`no record of ${path}`);
      total += this.#kinds[slot] === ODD ? (this.#odd.get(slot) as ManifestFile).size : this.#sizes[slot] as number;
    }
    return total;
  }

  /**
   * 1 + the index in `#copies` of the copy named by `reusedFrom` (`<copy>/<path>`, the copy's name
   * without a slash), added when new; -1 when it names another path (or too many copies).
   */
  #copyOf(reusedFrom: string, path: string): number {
    const cut = reusedFrom.length - path.length - 1;
    if (cut <= 0 || reusedFrom.charCodeAt(cut) !== 0x2f || !reusedFrom.endsWith(path)) return -1;
    const copy = reusedFrom.slice(0, cut);
    if (copy.includes('/')) return -1;
    const known = this.#copyIndex.get(copy);
    if (known !== undefined) return known + 1;
    if (this.#copies.length >= 0xfffe) return -1;
    const name = ownString(copy);
    this.#copyIndex.set(name, this.#copies.length);
    this.#copies.push(name);
    return this.#copies.length;
  }

  #record(path: string, slot: number): ManifestFile {
    const record = this.#columns(path, slot);
    const copy = this.#reusedFrom[slot] as number;
    return copy === 0 || this.#kinds[slot] === ODD ? record : { ...record, reusedFrom: this.#reusedFromOf(path, slot) as string };
  }

  #columns(path: string, slot: number): ManifestFile {
    const kind = this.#kinds[slot];
    if (kind === ODD) return this.#odd.get(slot) as ManifestFile;
    const hash = `${HASH_PREFIX}${hex8(this.#hashHigh[slot] as number)}${hex8(this.#hashLow[slot] as number)}`;
    const source = this.#sourceFingerprints.get(slot);
    const destination = this.#destinationFingerprints.get(slot);
    // The key order of the records the engine makes (see fileRecord in ./copy-file.ts),
    // one object literal per shape (no spreads: this runs for every record of every checkpoint).
    const size = this.#sizes[slot] as number;
    const chunks = kind === NO_CHUNKS ? [] : [hash];
    if (source === undefined) {
      return destination === undefined ? { path, size, hash, chunks } : { path, size, hash, chunks, destinationFingerprint: destination };
    }
    return destination === undefined
      ? { path, size, hash, chunks, sourceFingerprint: source }
      : { path, size, hash, chunks, sourceFingerprint: source, destinationFingerprint: destination };
  }

  #grow(): void {
    const capacity = this.#sizes.length * 2;
    this.#sizes = widened(this.#sizes, capacity);
    this.#hashHigh = widened(this.#hashHigh, capacity);
    this.#hashLow = widened(this.#hashLow, capacity);
    this.#kinds = widened(this.#kinds, capacity);
    this.#reusedFrom = widened(this.#reusedFrom, capacity);
    this.#sourceFingerprints.grow(capacity);
    this.#destinationFingerprints.grow(capacity);
  }
}
