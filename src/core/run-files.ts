/**
 * Which files a replicate run copies (src/core/replicate.ts): those of a complete backup at the
 * source, or, in origin mode (pull, repair), those an origin manifest lists, matched against what
 * the source holds, with the hashes each must have.
 */
import { assertComplete, backupTimeFromName, inspectBackupStreamed } from '../backup/index.js';
import type { Driver } from '../drivers/types.js';
import { OffsiteError } from '../errors.js';
import { readUsesFingerprint } from './fanout.js';
import { OriginTable } from './origin-table.js';
import { SourceTableBuilder, type SourceTable } from './source-table.js';
import type { SourceFile } from './plan.js';
import type { ReplicateOrigin } from './replicate.js';
import type { SortedPaths } from './sorted-paths.js';

/** A file to copy: its size, mtime and fingerprint at the source, and in origin mode the hash it must have. */
export interface EngineFile extends SourceFile {
  readonly mtimeMs: number;
  /**
   * The source fingerprint its records keep: the source's own, or in origin mode the one the
   * origin's record carries (the original source's, so a later run from it trusts the record).
   */
  readonly recordedSource?: string;
  readonly expected?: string;
  /** In origin mode, the chunk hashes the origin's record gives (with `expected`, what a file found in place must hash to). */
  readonly expectedChunks?: readonly string[];
}

export interface RunFiles {
  readonly files: readonly EngineFile[];
  readonly backupTime: string;
  /** Recorded as the manifest's `source`. */
  readonly sourceDescription: string;
  /** Origin files the source does not have (or has with another size): they fail, the rest is copied. */
  readonly missing: readonly { readonly path: string; readonly error: OffsiteError }[];
  /** The files' paths sorted, when something holds them more compactly than `files` (the source's or the origin's table). */
  readonly paths?: SortedPaths;
  /** `files[i].path` is `paths.at(i)` for every `i`. */
  readonly filesInPathOrder?: boolean;
}

/**
 * The files of a complete backup at the source (the completion rule must hold): kept in a
 * `SourceTable` (./source-table.ts) as the listing comes, one small view object per file
 * (`SourceFileView`).
 */
export async function backupFiles(source: Driver, backup: string, quietPeriodMs: number | undefined, signal?: AbortSignal): Promise<RunFiles> {
  const builder = new SourceTableBuilder();
  const inspection = await inspectBackupStreamed(source, backup, (path, entry) => builder.add({ path, size: entry.size, mtimeMs: entry.mtimeMs, fingerprint: entry.fingerprint }), { quietPeriodMs, signal });
  assertComplete(inspection);
  const table = builder.finish(`source: ${backup}`);
  const files = new Array<EngineFile>(table.count);
  for (let i = 0; i < table.count; i++) files[i] = new SourceFileView(table, i);
  return {
    files, backupTime: (backupTimeFromName(backup) ?? new Date(inspection.lastChangeMs)).toISOString(), sourceDescription: source.description, missing: [],
    paths: table.sortedPaths(), filesInPathOrder: true,
  };
}

/**
 * A file of the backup at the source as the engine sees it: every field is read from the table
 * when asked (./source-table.ts), so that the run holds one small object per file and no strings
 * of its own. The fingerprint its records keep is the one listed.
 */
class SourceFileView implements EngineFile {
  readonly #table: SourceTable;
  readonly #index: number;

  constructor(table: SourceTable, index: number) {
    this.#table = table;
    this.#index = index;
  }

  get path(): string { return this.#table.pathAt(this.#index); }
  get size(): number { return this.#table.sizeAt(this.#index); }
  get mtimeMs(): number { return this.#table.mtimeAt(this.#index); }
  get fingerprint(): string | undefined { return this.#table.fingerprintAt(this.#index); }
  get recordedSource(): string | undefined { return this.#table.fingerprintAt(this.#index); }
}

/**
 * A file of an origin manifest as the engine sees it: every field is read from the table when
 * asked (./origin-table.ts), so that the run holds one small object per file and no strings of
 * its own. An encrypted copy's records give no plaintext hash: its reads are checked against the
 * plaintext MAC instead (src/ops/pull.ts), and `expected`, `expectedChunks` and `hash` are absent.
 */
class OriginFile implements EngineFile {
  readonly #table: OriginTable;
  readonly #index: number;

  constructor(table: OriginTable, index: number) {
    this.#table = table;
    this.#index = index;
  }

  get path(): string { return this.#table.pathAt(this.#index); }
  get size(): number { return this.#table.sizeAt(this.#index); }
  get mtimeMs(): number { return this.#table.listedMtimeAt(this.#index); }
  get fingerprint(): string | undefined { return this.#table.listedFingerprintAt(this.#index); }
  get recordedSource(): string | undefined { return this.#table.sourceFingerprintAt(this.#index); }
  get expected(): string | undefined { return this.#plain ? this.#table.hashAt(this.#index) : undefined; }
  get hash(): string | undefined { return this.expected; }
  get expectedChunks(): readonly string[] | undefined { return this.#plain ? this.#table.chunksAt(this.#index) : undefined; }

  get #plain(): boolean { return !this.#table.hasMacAt(this.#index); }
}

/** The files an origin manifest lists, matched against what `source` holds. */
export async function originFiles(source: Driver, backup: string, origin: ReplicateOrigin, signal?: AbortSignal): Promise<RunFiles> {
  const table = origin.files instanceof OriginTable ? origin.files : OriginTable.of(origin.files, `${backup}: the manifest of the copy`);
  // Sizes only when every file is checked against its record's plaintext hash as it is read (no
  // HEAD per object for a stored hash). An encrypted copy's files are checked by a stat after the
  // read instead, which must compare like with like: an object store's listing gives mtimes in
  // milliseconds, its HEAD in whole seconds, so the listing then takes them from HEADs too.
  // The listed fingerprint is kept only where a read uses it (./fanout.ts `readUsesFingerprint`;
  // a file with a MAC has no plaintext hash): at 100,000 local files their ~40 characters each
  // were ~4 MB held through the whole copy (issue 13).
  const prefix = `${backup}/`;
  for await (const entry of source.list(prefix, { signal, hashes: table.hasMacs })) {
    const at = table.indexOf(entry.key.slice(prefix.length));
    if (at >= 0) table.setListed(at, entry.size, entry.mtimeMs, readUsesFingerprint(source, !table.hasMacAt(at)) ? entry.fingerprint : undefined);
  }
  const missing: { path: string; error: OffsiteError }[] = [];
  const files = new Array<EngineFile>(table.count);
  for (let i = 0; i < table.count; i++) {
    const size = table.sizeAt(i);
    const listed = table.listedSizeAt(i);
    if (listed !== size) {
      const path = table.pathAt(i);
      missing.push({ path, error: new OffsiteError('E_ORIGIN_DAMAGED', `${source.name}: ${backup}/${path} is ${listed !== undefined ? `${listed} bytes, its manifest says ${size}` : 'missing'}; take the file from elsewhere`, { kind: 'integrity' }) });
    }
    files[i] = new OriginFile(table, i);
  }
  return { files, backupTime: origin.backupTime ?? new Date().toISOString(), sourceDescription: origin.source, missing, paths: table.sortedPaths(), filesInPathOrder: table.inPathOrder };
}
