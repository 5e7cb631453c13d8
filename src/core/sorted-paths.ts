/**
 * The paths of a run's files, held once (issue 13).
 *
 * `SortedPaths` is what the engine needs of the run's paths (src/core/replicate.ts): the `i`-th in
 * sorted order, and the place of a path. An array of strings is one (`asSortedPaths`); in origin
 * mode (pull, repair) the origin's table is another (./origin-table.ts), which keeps them in a
 * `FrontCodedPaths`: every path as the bytes it does not share with the one before it.
 *
 * Why: a pull of 100,000 files held a string per path (~120 characters, ~136 bytes of heap each:
 * 13.6 MB, the largest thing in its heap) for the whole copy, in the old generation, which V8
 * lets grow to a multiple of what is live before it collects. Sorted paths of a backup share long
 * prefixes (`binlogs/insert_log/<collection>/<partition>/<segment>/...`): stored front-coded they
 * take ~30 bytes each, outside the heap. A path is rebuilt when asked for (a short-lived string).
 */

/** Paths sorted by code units with none twice: the `i`-th, and the place of one. */
export interface SortedPaths {
  readonly length: number;
  at(index: number): string;
  /** The place of `path`, or -1. */
  indexOf(path: string): number;
}

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

/** The indices of `paths` in the code-unit order of the paths (for paths that did not come sorted). */
export function codeUnitOrder(paths: readonly string[]): Uint32Array {
  return Uint32Array.from(paths.keys()).sort((a, b) => {
    const pa = paths[a] as string;
    const pb = paths[b] as string;
    return pa < pb ? -1 : pa > pb ? 1 : 0;
  });
}

/** True when `paths` is sorted by code units with no path twice. */
export function isStrictlySorted(paths: readonly string[]): boolean {
  for (let i = 1; i < paths.length; i++) if (!((paths[i - 1] as string) < (paths[i] as string))) return false;
  return true;
}

/** `paths` as `SortedPaths`; `undefined` for an array that is not sorted with no path twice (checked). */
export function asSortedPaths(paths: readonly string[] | SortedPaths | undefined): SortedPaths | undefined {
  if (paths === undefined) return undefined;
  if (!Array.isArray(paths)) return paths as SortedPaths;
  const array = paths as readonly string[];
  if (!isStrictlySorted(array)) return undefined;
  return { length: array.length, at: (index) => array[index] as string, indexOf: (path) => indexOfSorted(array, path) };
}

/** A path is stored whole every this many (a restart): rebuilding one copies at most this many pieces. */
const RESTART = 16;
const INITIAL_PATHS = 1024;
/** Lookups remembered (see `#recent`). */
const RECENT_LOOKUPS = 64;
/** Paths kept as strings after `at` made them (see `#recentPaths`): a power of two. */
const RECENT_PATHS = 64;
/** Shared prefixes are counted up to this (a longer one is stored as this much shared, the rest as suffix). */
const MAX_SHARED = 0xffff;
/** Code units from which UTF-8 byte order may differ from code-unit order (surrogates, U+E000 and up). */
const UNORDERED_UNITS = /[\ud800-\uffff]/;

/**
 * Paths appended in order, each stored as the UTF-8 bytes it does not share with the one before
 * (whole every `RESTART`): see the file comment. `indexOf` is for paths appended sorted.
 */
export class FrontCodedPaths {
  #bytes: Buffer = Buffer.allocUnsafe(64 * 1024);
  #used = 0;
  /** Where each path's own bytes start in `#bytes` (they end where the next path's start). */
  #suffixAt = new Uint32Array(INITIAL_PATHS);
  /** Bytes each path shares with the one before it (0 at a restart). */
  #shared = new Uint16Array(INITIAL_PATHS);
  #count = 0;
  /** The last path appended, and the one before it (swapped), as bytes. */
  #last: Buffer = Buffer.allocUnsafe(1024);
  #lastLength = 0;
  #next: Buffer = Buffer.allocUnsafe(1024);
  /** Where paths are rebuilt, and where a path looked up is written as bytes. */
  #scratch: Buffer = Buffer.allocUnsafe(1024);
  #probe: Buffer = Buffer.allocUnsafe(1024);
  /** The path whose bytes `#scratch` holds (-1: none): the next one is made from it by one copy. */
  #scratchIndex = -1;
  /**
   * The last paths looked up and their answers, oldest first: the engine asks for each of the few
   * files it is copying several times (its two dispatch lanes, the fan-out, the records), each
   * time with the same string (./origin-table.ts `pathAt`).
   */
  readonly #recent = new Map<string, number>();
  /**
   * The paths `at` made last, by index modulo `RECENT_PATHS` (`#recentAt` holds index + 1; 0:
   * none): the engine asks for a file's path several times while it plans and copies it, and the
   * same string each time also makes the lookups that follow cheaper (`#recent`).
   */
  readonly #recentAt = new Float64Array(RECENT_PATHS);
  readonly #recentPaths = new Array<string | undefined>(RECENT_PATHS).fill(undefined);
  /** No path has a code unit from U+D800 up: byte order is code-unit order, and lookups compare bytes. */
  #bytewise = true;

  get length(): number {
    return this.#count;
  }

  /** Whether byte order equals code-unit order for every path appended (see `#bytewise`). */
  get bytewise(): boolean {
    return this.#bytewise;
  }

  push(path: string): void {
    const index = this.#count;
    if (index === this.#suffixAt.length) {
      const capacity = index * 2;
      this.#suffixAt = grown(this.#suffixAt, capacity);
      this.#shared = grown(this.#shared, capacity);
    }
    if (this.#bytewise && UNORDERED_UNITS.test(path)) this.#bytewise = false;
    this.#recent.clear();
    const most = path.length * 3;
    if (most > this.#next.length) {
      this.#next = Buffer.allocUnsafe(most);
      this.#scratch = Buffer.allocUnsafe(Math.max(most, this.#scratch.length));
      this.#scratchIndex = -1;
      this.#probe = Buffer.allocUnsafe(Math.max(most, this.#probe.length));
    }
    const next = this.#next;
    const length = next.write(path, 0, 'utf8');
    let shared = 0;
    if (index % RESTART !== 0) {
      const last = this.#last;
      const limit = Math.min(length, this.#lastLength, MAX_SHARED);
      while (shared < limit && next[shared] === last[shared]) shared++;
    }
    const own = length - shared;
    if (this.#used + own > this.#bytes.length) this.#bytes = grownBytes(this.#bytes, Math.max(this.#bytes.length * 2, this.#used + own), this.#used);
    next.copy(this.#bytes, this.#used, shared, length);
    this.#suffixAt[index] = this.#used;
    this.#shared[index] = shared;
    this.#used += own;
    this.#count++;
    // The bytes just written become the last path's; the old buffer takes the next one.
    this.#next = this.#last.length >= next.length ? this.#last : Buffer.allocUnsafe(next.length);
    this.#last = next;
    this.#lastLength = length;
  }

  at(index: number): string {
    if (!(index >= 0 && index < this.#count)) throw new RangeError(`FrontCodedPaths: no path ${index} (${this.#count} held)`);
    const slot = index & (RECENT_PATHS - 1);
    if (this.#recentAt[slot] === index + 1) return this.#recentPaths[slot] as string;
    const path = this.#scratch.toString('utf8', 0, this.#rebuild(index));
    this.#recentAt[slot] = index + 1;
    this.#recentPaths[slot] = path;
    return path;
  }

  /** Keeps the first `count` paths: those appended after them are forgotten. */
  truncate(count: number): void {
    if (!(count >= 0 && count < this.#count)) return;
    this.#used = this.#suffixAt[count] as number;
    this.#count = count;
    this.#recent.clear();
    this.#recentAt.fill(0);
    this.#scratchIndex = -1;
    this.#lastLength = count === 0 ? 0 : this.#rebuild(count - 1);
    if (this.#lastLength > this.#last.length) this.#last = Buffer.allocUnsafe(this.#lastLength);
    this.#scratch.copy(this.#last, 0, 0, this.#lastLength);
  }

  /**
   * The index of `path` among paths appended sorted by code units (else the answer means
   * nothing), or -1. Compares bytes when `bytewise`, strings otherwise.
   */
  indexOf(path: string): number {
    if (this.#count === 0) return -1;
    const known = this.#recent.get(path);
    if (known !== undefined) return known;
    const answer = this.#bytewise ? this.#indexOfByBytes(path) : this.#indexOfByStrings(path);
    if (this.#recent.size >= RECENT_LOOKUPS) this.#recent.delete(this.#recent.keys().next().value as string);
    this.#recent.set(path, answer);
    return answer;
  }

  #indexOfByBytes(path: string): number {
    if (path.length * 3 > this.#probe.length) this.#probe = Buffer.allocUnsafe(path.length * 3);
    const probe = this.#probe;
    const probeLength = probe.write(path, 0, 'utf8');
    // The last restart whose path is not after `path`, then along its run.
    let low = 0;
    let high = Math.floor((this.#count - 1) / RESTART);
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      const length = this.#rebuild(middle * RESTART);
      if (this.#scratch.compare(probe, 0, probeLength, 0, length) <= 0) low = middle;
      else high = middle - 1;
    }
    const first = low * RESTART;
    const end = Math.min(this.#count, first + RESTART);
    for (let i = first; i < end; i++) {
      const length = this.#rebuild(i);
      const order = this.#scratch.compare(probe, 0, probeLength, 0, length);
      if (order === 0) return i;
      if (order > 0) return -1;
    }
    return -1;
  }

  #indexOfByStrings(path: string): number {
    let low = 0;
    let high = this.#count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = this.at(middle);
      if (at === path) return middle;
      if (at < path) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /** The end of path `index`'s own bytes. */
  #suffixEnd(index: number): number {
    return index + 1 < this.#count ? this.#suffixAt[index + 1] as number : this.#used;
  }

  /** Writes path `index` into `#scratch` from its restart; returns its length in bytes. */
  #rebuild(index: number): number {
    if (index % RESTART !== 0 && this.#scratchIndex === index - 1) return this.#extend(index);
    let length = 0;
    for (let i = index - (index % RESTART); i <= index; i++) length = this.#extend(i);
    return length;
  }

  /** Turns path `index - 1` in `#scratch` into path `index` (or writes a restart whole); returns its length. */
  #extend(index: number): number {
    const shared = this.#shared[index] as number;
    const start = this.#suffixAt[index] as number;
    const end = this.#suffixEnd(index);
    const length = shared + end - start;
    if (length > this.#scratch.length) this.#scratch = grownBytes(this.#scratch, length, shared);
    this.#bytes.copy(this.#scratch, shared, start, end);
    this.#scratchIndex = index;
    return length;
  }
}

function grown<T extends Uint32Array | Uint16Array>(column: T, length: number): T {
  const next = new (column.constructor as new (length: number) => T)(length);
  next.set(column);
  return next;
}

/** A larger buffer holding the first `keep` bytes of `bytes`. */
function grownBytes(bytes: Buffer, length: number, keep: number): Buffer {
  const next = Buffer.allocUnsafe(length);
  bytes.copy(next, 0, 0, keep);
  return next;
}
