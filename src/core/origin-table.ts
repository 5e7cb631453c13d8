/**
 * The file records of an origin manifest (the copy a pull reads back, or the reference of a
 * repair), held for a whole replicate run in origin mode (./run-files.ts), together with what the
 * origin's listing shows of each file.
 *
 * Why (issue 13): at 50,000 files a pull held ~950 bytes of heap per file while it copied: each
 * record as an object (its hash, chunk list and source fingerprint as strings of their own), the
 * engine's file object made from it beside it, with the listing's fingerprint, and the listing as
 * a `Map` of entries while the two were joined. Here a file costs its path's bytes that the path
 * before it does not share (front-coded, ./sorted-paths.ts: no string per path is held; the
 * engine's sorted paths are this table's view, `sortedPaths`), a few typed-array slots (size, hash as two 32-bit
 * halves, the listed size and mtime) and the UTF-8 bytes of its source fingerprint, plaintext MAC
 * and listed fingerprint (the listed one only where a read uses it: ./run-files.ts) in one flat
 * buffer. A record with more than the usual one chunk (a file larger than a chunk), or a hash
 * not written the canonical way, keeps its hash and chunk list as they came. The engine's file
 * objects (`OriginFile` in ./run-files.ts) hold only their index here and read the rest on demand.
 */
import { OffsiteError } from '../errors.js';
import { hashHalves, hashOfHalves, isHash } from '../hash/xxh64.js';
import { PackedStrings } from '../listing-index.js';
import type { ManifestFile } from '../manifest/manifest.js';
import { widened } from '../typed-arrays.js';
import { codeUnitOrder, FrontCodedPaths, type SortedPaths } from './sorted-paths.js';

/** How a record's chunk list is rebuilt: one chunk with the file's hash, none (an empty file), or as it came (`#odd`). */
const ONE_CHUNK = 0;
const NO_CHUNKS = 1;
const ODD = 2;

/** Per file in `#textAt`: start and length of the source fingerprint, the MAC and the listed fingerprint. */
const TEXTS = 6;
const SOURCE_FINGERPRINT = 0;
const MAC = 2;
const LISTED_FINGERPRINT = 4;
/** The length of a text that is absent. */
const ABSENT = 0xffffffff;

const INITIAL_FILES = 1024;

/**
 * The records of one origin manifest, in its order, found by path; see the file comment. Filled
 * with `add` (as the manifest streams by), then `seal`ed before any lookup.
 */
export class OriginTable {
  /** The paths, front-coded (./sorted-paths.ts): a string is made for a path only when asked. */
  readonly #paths = new FrontCodedPaths();
  #sizes = new Float64Array(INITIAL_FILES);
  #hashHigh = new Uint32Array(INITIAL_FILES);
  #hashLow = new Uint32Array(INITIAL_FILES);
  #kinds = new Uint8Array(INITIAL_FILES);
  #textAt = new Uint32Array(INITIAL_FILES * TEXTS);
  /** The size the origin lists for each file (-1: not listed), and its mtime. */
  #listedSizes = new Float64Array(INITIAL_FILES);
  #listedMtimes = new Float64Array(INITIAL_FILES);
  readonly #texts = new PackedStrings();
  /** Hash and chunk list of the records kept as they came (`ODD`), by index. */
  readonly #odd = new Map<number, { readonly hash: string; readonly chunks: readonly string[] }>();
  /** The indices sorted by path, when the records did not come sorted (offsite writes them sorted). */
  #order: Uint32Array | undefined;
  #sealed = false;
  #macs = 0;

  /** A sealed table of `files` (a manifest read whole: a repair's reference). */
  static of(files: Iterable<ManifestFile>, where: string): OriginTable {
    const table = new OriginTable();
    for (const f of files) table.add(f);
    table.seal(where);
    return table;
  }

  get count(): number {
    return this.#paths.length;
  }

  /** Whether some record has a plaintext MAC (the copy is encrypted). */
  get hasMacs(): boolean {
    return this.#macs > 0;
  }

  /** Appends a record (its destination fingerprint and reuse note are of no use at a target, and not kept). */
  add(file: ManifestFile): void {
    if (this.#sealed) throw new Error('OriginTable: add after seal');
    const index = this.#paths.length;
    if (index === this.#sizes.length) this.#grow();
    this.#paths.push(file.path);
    this.#sizes[index] = file.size;
    this.#listedSizes[index] = -1;
    const { hash, chunks } = file;
    const canonical = isHash(hash);
    const kind = !canonical ? ODD : chunks.length === 0 ? NO_CHUNKS : chunks.length === 1 && chunks[0] === hash ? ONE_CHUNK : ODD;
    this.#kinds[index] = kind;
    if (kind === ODD) this.#odd.set(index, { hash, chunks });
    else {
      [this.#hashHigh[index], this.#hashLow[index]] = hashHalves(hash);
    }
    this.#setText(index, SOURCE_FINGERPRINT, file.sourceFingerprint);
    this.#setText(index, MAC, file.mac);
    if (file.mac !== undefined) this.#macs++;
  }

  /**
   * Ends `add`: every record is in. A manifest names each path once (offsite writes them sorted,
   * once each); one naming a path twice is damaged, and refused (kind `integrity`).
   */
  seal(where: string): void {
    this.#sealed = true;
    const count = this.#paths.length;
    let sorted = true;
    let before = count > 0 ? this.#paths.at(0) : '';
    for (let i = 1; i < count; i++) {
      const path = this.#paths.at(i);
      if (!(before < path)) {
        if (before === path) this.#twice(where, path);
        sorted = false;
        break;
      }
      before = path;
    }
    if (sorted) return;
    // Not written by offsite (which sorts): ordered here, with every path as a string for the while.
    const paths = Array.from({ length: count }, (_, i) => this.#paths.at(i));
    const order = codeUnitOrder(paths);
    for (let i = 1; i < count; i++) if (paths[order[i - 1] as number] === paths[order[i] as number]) this.#twice(where, paths[order[i] as number] as string);
    this.#order = order;
  }

  #twice(where: string, path: string): never {
    throw new OffsiteError('E_MANIFEST', `${where}: the manifest lists ${path} twice: it is damaged; take the copy from elsewhere`, { kind: 'integrity' });
  }

  /** The index of the `rank`-th path in sorted order. */
  #at(rank: number): number {
    return this.#order === undefined ? rank : this.#order[rank] as number;
  }

  /** The index of the record of `path`, or -1. */
  indexOf(path: string): number {
    const rank = this.#rankOf(path);
    return rank < 0 ? rank : this.#at(rank);
  }

  /** The place of `path` in sorted order, or -1. */
  #rankOf(path: string): number {
    if (!this.#sealed) throw new Error('OriginTable: lookup before seal');
    if (this.#order === undefined) return this.#paths.indexOf(path);
    let low = 0;
    let high = this.count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = this.#paths.at(this.#at(middle));
      if (at === path) return middle;
      if (at < path) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /** Whether the records came sorted: the record at `index` is then the `index`-th in `sortedPaths`. */
  get inPathOrder(): boolean {
    if (!this.#sealed) throw new Error('OriginTable: order before seal');
    return this.#order === undefined;
  }

  /** The paths in sorted order (the engine's `paths`, ./replicate.ts), without a string per path. */
  sortedPaths(): SortedPaths {
    if (!this.#sealed) throw new Error('OriginTable: paths before seal');
    return { length: this.count, at: (rank) => this.pathAt(this.#at(rank)), indexOf: (path) => this.#rankOf(path) };
  }

  /** The path of the record at `index` (the last few made are kept: ./sorted-paths.ts `at`). */
  pathAt(index: number): string {
    return this.#paths.at(index);
  }

  sizeAt(index: number): number {
    return this.#sizes[index] as number;
  }

  hashAt(index: number): string {
    if (this.#kinds[index] === ODD) return (this.#odd.get(index) as { hash: string }).hash;
    return hashOfHalves(this.#hashHigh[index] as number, this.#hashLow[index] as number);
  }

  /** The record's chunk hashes (a new array for the usual records). */
  chunksAt(index: number): readonly string[] {
    const kind = this.#kinds[index];
    if (kind === ODD) return (this.#odd.get(index) as { chunks: readonly string[] }).chunks;
    return kind === NO_CHUNKS ? [] : [this.hashAt(index)];
  }

  sourceFingerprintAt(index: number): string | undefined {
    return this.#text(index, SOURCE_FINGERPRINT);
  }

  macAt(index: number): string | undefined {
    return this.#text(index, MAC);
  }

  /** Whether the record at `index` has a plaintext MAC (`macAt` without making the string). */
  hasMacAt(index: number): boolean {
    return this.#textAt[index * TEXTS + MAC + 1] !== ABSENT;
  }

  /** Notes what the origin's listing shows of the file at `index`. */
  setListed(index: number, size: number, mtimeMs: number, fingerprint: string | undefined): void {
    this.#listedSizes[index] = size;
    this.#listedMtimes[index] = mtimeMs;
    this.#setText(index, LISTED_FINGERPRINT, fingerprint);
  }

  /** The size the origin listed for the file at `index`, `undefined` when it was not listed. */
  listedSizeAt(index: number): number | undefined {
    const size = this.#listedSizes[index] as number;
    return size < 0 ? undefined : size;
  }

  /** Its listed mtime (0 when not listed). */
  listedMtimeAt(index: number): number {
    return this.listedSizeAt(index) === undefined ? 0 : this.#listedMtimes[index] as number;
  }

  listedFingerprintAt(index: number): string | undefined {
    return this.listedSizeAt(index) === undefined ? undefined : this.#text(index, LISTED_FINGERPRINT);
  }

  #setText(index: number, which: number, text: string | undefined): void {
    const at = index * TEXTS + which;
    if (text === undefined) {
      this.#textAt[at] = 0;
      this.#textAt[at + 1] = ABSENT;
      return;
    }
    const start = this.#texts.append(text);
    this.#textAt[at] = start;
    this.#textAt[at + 1] = this.#texts.lastLength;
  }

  #text(index: number, which: number): string | undefined {
    const at = index * TEXTS + which;
    const length = this.#textAt[at + 1] as number;
    return length === ABSENT ? undefined : this.#texts.text(this.#textAt[at] as number, length);
  }

  #grow(): void {
    const capacity = this.#sizes.length * 2;
    this.#sizes = widened(this.#sizes, capacity);
    this.#hashHigh = widened(this.#hashHigh, capacity);
    this.#hashLow = widened(this.#hashLow, capacity);
    this.#kinds = widened(this.#kinds, capacity);
    this.#textAt = widened(this.#textAt, capacity * TEXTS);
    this.#listedSizes = widened(this.#listedSizes, capacity);
    this.#listedMtimes = widened(this.#listedMtimes, capacity);
  }
}
