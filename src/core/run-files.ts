/**
 * Which files a replicate run copies (src/core/replicate.ts): those of a complete backup at the
 * source, or, in origin mode (pull, repair), those an origin manifest lists, matched against what
 * the source holds, with the hashes each must have.
 */
import { assertComplete, backupTimeFromName, inspectBackup } from '../backup/index.js';
import type { Driver } from '../drivers/types.js';
import { OffsiteError } from '../errors.js';
import { ownString } from '../strings.js';
import type { SourceFile } from './plan.js';
import type { ReplicateOrigin } from './replicate.js';

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
}

/** The files of a complete backup at the source (the completion rule must hold). */
export async function backupFiles(source: Driver, backup: string, quietPeriodMs: number | undefined, signal?: AbortSignal): Promise<RunFiles> {
  const inspection = await inspectBackup(source, backup, { quietPeriodMs, signal });
  assertComplete(inspection);
  const prefixLength = backup.length + 1;
  return {
    // One fixed shape (no spreads): 100,000 of these live for the whole run. The path is a string
    // of its own, not a view that keeps the listing's whole key alive (src/strings.ts).
    files: inspection.files.map((f) => ({ path: ownString(f.key.slice(prefixLength)), size: f.size, mtimeMs: f.mtimeMs, fingerprint: f.fingerprint, recordedSource: f.fingerprint })),
    backupTime: (backupTimeFromName(backup) ?? new Date(inspection.lastChangeMs)).toISOString(),
    sourceDescription: source.description,
    missing: [],
  };
}

/** The files an origin manifest lists, matched against what `source` holds. */
export async function originFiles(source: Driver, backup: string, origin: ReplicateOrigin, signal?: AbortSignal): Promise<RunFiles> {
  const present = new Map<string, { size: number; mtimeMs: number; fingerprint?: string }>();
  // Sizes only when every file is checked against its record's plaintext hash as it is read (no
  // HEAD per object for a stored hash). An encrypted copy's files are checked by a stat after the
  // read instead, which must compare like with like: an object store's listing gives mtimes in
  // milliseconds, its HEAD in whole seconds, so the listing then takes them from HEADs too.
  const hashes = origin.files.some((f) => f.mac !== undefined);
  for await (const entry of source.list(`${backup}/`, { signal, hashes })) present.set(entry.key.slice(backup.length + 1), entry);
  const missing: { path: string; error: OffsiteError }[] = [];
  const files = origin.files.map((f) => {
    const there = present.get(f.path);
    if (!there || there.size !== f.size) {
      missing.push({ path: f.path, error: new OffsiteError('E_ORIGIN_DAMAGED', `${source.name}: ${backup}/${f.path} is ${there ? `${there.size} bytes, its manifest says ${f.size}` : 'missing'}; take the file from elsewhere`, { kind: 'integrity' }) });
    }
    // An encrypted copy records no plaintext hash: its reads are checked against the plaintext MAC instead (src/ops/pull.ts).
    const plainHash = f.mac === undefined ? f.hash : undefined;
    return {
      path: f.path, size: f.size, mtimeMs: there?.mtimeMs ?? 0,
      ...(plainHash !== undefined ? { expected: plainHash, expectedChunks: f.chunks, hash: plainHash } : {}),
      ...(there?.fingerprint !== undefined ? { fingerprint: there.fingerprint } : {}),
      ...(f.sourceFingerprint !== undefined ? { recordedSource: f.sourceFingerprint } : {}),
    };
  });
  return { files, backupTime: origin.backupTime ?? new Date().toISOString(), sourceDescription: origin.source, missing };
}
