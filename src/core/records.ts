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
 * The list may hold its paths packed (./sorted-paths.ts), so what the store keeps and hands out
 * for checkpoints refers to known paths by slot (`recorded`), not by string.
 */
import type { ManifestFile } from '../manifest/manifest.js';
import { ownString } from '../strings.js';
import { widened } from '../typed-arrays.js';
import { FingerprintColumn } from './fingerprint-column.js';
import { asSortedPaths, type SortedPaths } from './sorted-paths.js';

const HASH_PREFIX = 'xxh64:';
const CANONICAL_HASH = /^xxh64:[0-9a-f]{16}$/;

/** A slot of the known paths with no record yet. */
const EMPTY = 0;
/** How a slot's chunk list is rebuilt. */
const ONE_CHUNK = 1;
const NO_CHUNKS = 2;
/** The record is kept whole in `#odd`. */
const ODD = 3;

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

const NO_PATHS: SortedPaths = { length: 0, at: () => { throw new RangeError('no paths'); }, indexOf: () => -1 };

/**
 * The paths recorded at one moment (`RecordStore.recorded`), for a checkpoint written from them
 * later: the slots of the known paths, and the other paths (sorted). Not the known paths as
 * strings: they may be kept packed (./sorted-paths.ts), and 100,000 strings held through a
 * checkpoint's write would all outlive the young generation.
 */
export interface RecordedPaths {
  readonly length: number;
  readonly known: Uint32Array;
  readonly others: readonly string[];
}

function isRecordedPaths(paths: unknown): paths is RecordedPaths {
  return typeof paths === 'object' && paths !== null && (paths as RecordedPaths).known instanceof Uint32Array;
}

export class RecordStore {
  /** The paths known in advance (sorted): the slot of `known.at(i)` is `i`. */
  readonly #known: SortedPaths;
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
  constructor(known: readonly string[] | SortedPaths = []) {
    this.#known = asSortedPaths(known) ?? NO_PATHS;
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

  /** The slot of `path` among the known paths, or -1. */
  knownSlotOf(path: string): number {
    return this.#known.indexOf(path);
  }

  /** The record in the slot of a known path (`knownSlotOf`), if any. */
  knownRecord(slot: number): ManifestFile | undefined {
    return slot < this.#known.length && this.#kinds[slot] !== EMPTY ? this.#record(this.#known.at(slot), slot) : undefined;
  }

  /** The slot of a recorded path. */
  #slotOf(path: string): number | undefined {
    const known = this.#known.indexOf(path);
    if (known >= 0) return this.#kinds[known] === EMPTY ? undefined : known;
    return this.#slots.get(path);
  }

  /** Records `file` under its path (replacing an earlier record of it). */
  set(file: ManifestFile): this {
    let slot: number | undefined = this.#known.indexOf(file.path);
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
    const known = this.#known;
    for (let slot = 0; slot < known.length; slot++) if (this.#kinds[slot] !== EMPTY) yield this.#record(known.at(slot), slot);
    for (const [path, slot] of this.#slots) yield this.#record(path, slot);
  }

  /** The records that say where the file was reused from (`reusedFrom`), as `{ path, from }`, without building the records. */
  *reused(): IterableIterator<{ path: string; from: string }> {
    const known = this.#known;
    for (let slot = 0; slot < known.length; slot++) {
      const kind = this.#kinds[slot];
      if (kind === EMPTY || (kind !== ODD && this.#reusedFrom[slot] === 0)) continue;
      const path = known.at(slot);
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
    const recorded = this.recorded();
    const paths = Array.from(recorded.known, (slot) => this.#known.at(slot));
    if (recorded.others.length === 0) return paths;
    return paths.concat(recorded.others).sort();
  }

  /** The paths recorded so far, without their strings where they are known ones: a snapshot for `inOrder` and `bytesOf`. */
  recorded(): RecordedPaths {
    let count = 0;
    for (let slot = 0; slot < this.#known.length; slot++) if (this.#kinds[slot] !== EMPTY) count++;
    const known = new Uint32Array(count);
    count = 0;
    for (let slot = 0; slot < this.#known.length; slot++) if (this.#kinds[slot] !== EMPTY) known[count++] = slot;
    const others = [...this.#slots.keys()].sort();
    return { length: known.length + others.length, known, others };
  }

  /** The records of `paths` (every one recorded), in that order (a `RecordedPaths`: sorted by path). */
  *inOrder(paths: readonly string[] | SortedPaths | RecordedPaths): IterableIterator<ManifestFile> {
    if (isRecordedPaths(paths)) {
      yield* this.#inOrderRecorded(paths);
      return;
    }
    const list = paths as readonly string[] | SortedPaths;
    if (list === this.#known) {
      // The known paths themselves (the run's manifest): slot by slot, no lookups.
      for (let slot = 0; slot < list.length; slot++) {
        if (this.#kinds[slot] === EMPTY) throw new Error(`no record of ${this.#known.at(slot)}`);
        yield this.#record(this.#known.at(slot), slot);
      }
      return;
    }
    const at = Array.isArray(list) ? (i: number) => (list as readonly string[])[i] as string : (i: number) => (list as SortedPaths).at(i);
    for (let i = 0; i < list.length; i++) {
      const path = at(i);
      const record = this.get(path);
      if (record === undefined) throw new Error(`no record of ${path}`);
      yield record;
    }
  }

  /** The records of a snapshot: its known slots and its other paths merged in code-unit order. */
  *#inOrderRecorded(paths: RecordedPaths): IterableIterator<ManifestFile> {
    const { known, others } = paths;
    let k = 0;
    let o = 0;
    let knownPath = known.length > 0 ? this.#known.at(known[0] as number) : undefined;
    while (knownPath !== undefined || o < others.length) {
      const other = others[o];
      if (knownPath !== undefined && (other === undefined || knownPath < other)) {
        const slot = known[k++] as number;
        if (this.#kinds[slot] === EMPTY) throw new Error(`no record of ${knownPath}`);
        yield this.#record(knownPath, slot);
        knownPath = k < known.length ? this.#known.at(known[k] as number) : undefined;
      } else {
        o++;
        const record = this.get(other as string);
        if (record === undefined) throw new Error(`no record of ${other as string}`);
        yield record;
      }
    }
  }

  /** Bytes of the files `paths` (every one recorded). */
  bytesOf(paths: readonly string[] | RecordedPaths): number {
    let total = 0;
    const add = (slot: number | undefined, path: () => string): void => {
      if (slot === undefined || this.#kinds[slot] === EMPTY) throw new Error(`no record of ${path()}`);
      total += this.#kinds[slot] === ODD ? (this.#odd.get(slot) as ManifestFile).size : this.#sizes[slot] as number;
    };
    if (isRecordedPaths(paths)) {
      for (const slot of paths.known) add(slot, () => this.#known.at(slot));
      for (const path of paths.others) add(this.#slotOf(path), () => path);
      return total;
    }
    for (const path of paths) add(this.#slotOf(path), () => path);
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
