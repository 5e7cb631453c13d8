/**
 * The files of a backup at the source, held for a whole replicate run (./run-files.ts
 * `backupFiles`) in one table, without a string per file.
 *
 * Why (issue 13): a replicate run of 100,000 files held an object per file for the whole copy
 * (path, size, mtime, fingerprint, recorded fingerprint), its path a string of ~120 characters and
 * its fingerprint one of ~40: ~25 MB of heap in the old generation (a heap snapshot of a reuse night
 * near its peak RSS: the largest thing the run held), which V8 lets grow to a multiple of what is
 * live before it collects. Here a file costs its path's bytes that the path before it does not
 * share (front-coded, ./sorted-paths.ts: the listing comes sorted), 16 bytes of size and mtime, and
 * its fingerprint as three numbers when it is a local one, its UTF-8 bytes otherwise
 * (./fingerprint-column.ts). The engine's file objects (`SourceFileView` in ./run-files.ts) hold
 * only their index here and read every field on demand, exactly as listed: the checks made of them
 * (the size, mtime and fingerprint a source read must still show: ./fanout.ts `guardSourceRead`)
 * compare the same values as before.
 */
import { OffsiteError } from '../errors.js';
import { ownString } from '../strings.js';
import { widened } from '../typed-arrays.js';
import { FingerprintColumn } from './fingerprint-column.js';
import { codeUnitOrder, FrontCodedPaths, type SortedPaths } from './sorted-paths.js';

const INITIAL_FILES = 1024;

/** One listed file, as `SourceTable.add` takes it. */
export interface ListedFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly fingerprint?: string;
}

/**
 * A `SourceTable` made from files in any order, as a listing gives them: straight into the table
 * while they come sorted (a local walk), else (from the first one out of order) kept with a string
 * per path until `finish` sorts them.
 */
export class SourceTableBuilder {
  #table: SourceTable | undefined = new SourceTable();
  #paths: string[] = [];
  #sizes: number[] = [];
  #mtimes: number[] = [];
  #fingerprints = new FingerprintColumn(INITIAL_FILES);

  add(file: ListedFile): void {
    const table = this.#table;
    if (table !== undefined) {
      if (table.follows(file.path)) {
        table.add(file);
        return;
      }
      // Out of order: what the table holds so far is taken back out of it.
      this.#table = undefined;
      for (let i = 0; i < table.count; i++) this.#keep(table.pathAt(i), table.sizeAt(i), table.mtimeAt(i), table.fingerprintAt(i));
    }
    this.#keep(ownString(file.path), file.size, file.mtimeMs, file.fingerprint);
  }

  #keep(path: string, size: number, mtimeMs: number, fingerprint: string | undefined): void {
    const index = this.#paths.length;
    this.#fingerprints.grow(Math.max(INITIAL_FILES, 2 ** Math.ceil(Math.log2(index + 1))));
    this.#paths.push(path);
    this.#sizes.push(size);
    this.#mtimes.push(mtimeMs);
    this.#fingerprints.set(index, fingerprint);
  }

  /** The table of every file added, sorted by path; throws for a path added twice (`where` names the listing). */
  finish(where: string): SourceTable {
    let table = this.#table;
    if (table === undefined) {
      const paths = this.#paths;
      table = new SourceTable();
      for (const i of codeUnitOrder(paths)) {
        if (!table.follows(paths[i] as string)) throw new OffsiteError('E_SOURCE_LISTING', `${where}: the source listed ${paths[i] as string} twice; check the source storage`, { kind: 'permanent' });
        table.add({ path: paths[i] as string, size: this.#sizes[i] as number, mtimeMs: this.#mtimes[i] as number, fingerprint: this.#fingerprints.get(i) });
      }
      this.#paths = [];
      this.#sizes = [];
      this.#mtimes = [];
      this.#fingerprints = new FingerprintColumn(0);
    }
    this.#table = undefined;
    table.seal();
    return table;
  }
}

/** The source's files sorted by path, none twice: see the file comment. Filled with `add` in that order. */
export class SourceTable {
  readonly #paths = new FrontCodedPaths();
  #sizes = new Float64Array(INITIAL_FILES);
  #mtimes = new Float64Array(INITIAL_FILES);
  readonly #fingerprints = new FingerprintColumn(INITIAL_FILES);
  /** The last path added, to check the order. */
  #last: string | undefined;
  #totalBytes = 0;

  get count(): number {
    return this.#paths.length;
  }

  /** The sum of the sizes. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  /** Whether `path` may be added next (it comes after the last one in code-unit order). */
  follows(path: string): boolean {
    return this.#last === undefined || this.#last < path;
  }

  /** Appends a file; its path must come after the last one's in code-unit order (`follows`). */
  add(file: ListedFile): void {
    if (!this.follows(file.path)) {
      throw new Error(`SourceTable: ${JSON.stringify(file.path)} added after ${JSON.stringify(this.#last)} (not sorted, or twice)`);
    }
    const index = this.#paths.length;
    if (index === this.#sizes.length) {
      const capacity = index * 2;
      this.#sizes = widened(this.#sizes, capacity);
      this.#mtimes = widened(this.#mtimes, capacity);
      this.#fingerprints.grow(capacity);
    }
    this.#paths.push(file.path);
    this.#sizes[index] = file.size;
    this.#mtimes[index] = file.mtimeMs;
    this.#fingerprints.set(index, file.fingerprint);
    this.#totalBytes += file.size;
    this.#last = file.path;
  }

  /** Ends `add`: lets go of the last path. */
  seal(): void {
    this.#last = undefined;
  }

  /** The paths in sorted order (the engine's `paths`, ./replicate.ts), without a string per path. */
  sortedPaths(): SortedPaths {
    return { length: this.count, at: (index) => this.pathAt(index), indexOf: (path) => this.#paths.indexOf(path) };
  }

  /** The path of the file at `index` (the last few made are kept: ./sorted-paths.ts `at`). */
  pathAt(index: number): string {
    return this.#paths.at(index);
  }

  sizeAt(index: number): number {
    return this.#sizes[index] as number;
  }

  mtimeAt(index: number): number {
    return this.#mtimes[index] as number;
  }

  fingerprintAt(index: number): string | undefined {
    return this.#fingerprints.get(index);
  }
}
