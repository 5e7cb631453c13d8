/**
 * The replication plan: pure data, no IO. Given the files of a complete backup at the source
 * and what each destination holds, decide per destination and file whether to copy it or skip
 * it. `--dry-run` prints this plan; tests compare it against tables.
 *
 * A file is skipped at a destination only when all hold:
 * - the destination lists it under its final name with the source's size;
 * - the destination's own records (its manifest, or its in-progress checkpoint) name it with
 *   that size and the run's chunk size, so its hashes are known without reading it;
 * - the record's fingerprints still hold (records older than fingerprints carry none and are
 *   trusted on size, as before): the source fingerprint it was made with is the one the source
 *   shows now (else the source was rewritten since: the record says nothing about the new bytes,
 *   copy again), and the destination fingerprint it was made with is the one the destination
 *   lists now (else the file was touched there: `adopt` reads it back and hashes it, records the
 *   new fingerprint when the bytes are the same, and sends the file again when they are not).
 * Anything else is copied. A copy in progress (partial temp file, open multipart upload) is
 * found by the driver when the engine opens the file for writing, and resumed there.
 *
 * Reuse (issue 12): a file missing at a destination that has a reuse lookup (its other complete
 * copies, src/core/reuse-index.ts) is planned as `reuse` when one of them may hold the same bytes: the
 * newest copy has the same path with the same size, or some copy has a file of that size. The
 * plan cannot know more before the file is read: the engine reads and hashes it (the one source
 * read), creates it by a server-side copy only when the hashes match, and sends it otherwise.
 * A file present but not recorded whose path the newest copy holds with the same size (a reuse
 * that a killed run made after its last checkpoint: checkpoints do not wait for reused files,
 * ./destination-run.ts) is planned as `reuse` too: a server-side copy over it costs the server a
 * copy, where `adopt` would read every byte of it back over the link.
 */
import type { Manifest, ManifestFile } from '../manifest/manifest.js';
import type { ReuseSource } from './reuse-index.js';

/** What the plan asks of a destination's reuse index (src/core/reuse-index.ts `ReuseIndex`) before any file is read. */
export interface ReuseLookup {
  candidate(path: string, size: number): ReuseSource | undefined;
  /** False when no indexed file can match one of this size at this path (an encrypted destination matches the same path only). */
  mayHold(size: number, path: string): boolean;
}

export interface SourceFile {
  /** Path relative to the backup folder. */
  readonly path: string;
  readonly size: number;
  /** The source's `Entry.fingerprint`, when its driver gives one. */
  readonly fingerprint?: string;
  /**
   * The hash the file must have, when the run copies a verified copy (repair, pull: the source is
   * then another destination, whose fingerprints say nothing about the records): a record is
   * trusted when it has this hash, whatever its source fingerprint.
   */
  readonly hash?: string;
}

/** What one destination holds for the backup, as read by the engine. */
export interface DestinationState {
  readonly name: string;
  /** The valid manifest of an earlier complete copy, if any. */
  readonly manifest?: Manifest;
  /** Why an existing manifest was rejected (damaged, unreadable). */
  readonly manifestProblem?: string;
  /** The in-progress checkpoint of an interrupted run, if any. */
  readonly progress?: Manifest;
  /** Files present under their final names: path relative to the backup folder -> size. */
  readonly present: ReadonlyMap<string, number>;
  /** The fingerprints of the files present (same paths), where the destination's driver gives them. */
  readonly presentFingerprints?: ReadonlyMap<string, string>;
}

/**
 * - `copy`: send the file (resuming what the driver finds of an interrupted write);
 * - `skip`: already whole and recorded;
 * - `adopt`: present with the right size but not recorded (committed just before a crash,
 *   after the last checkpoint), or recorded with another destination fingerprint than it shows
 *   now: hash it where it is and compare with the source instead of sending it again; copy only
 *   if it differs;
 * - `reuse`: missing, and another complete copy at the destination may hold the same bytes: read
 *   and hash it at the source, then create it by a server-side copy if the hashes match, else
 *   send it (see the file comment); or present but not recorded, and the newest copy holds its
 *   path with its size (`present`): the same, but when the hashes do not match it is adopted
 *   (compared where it is) before it is sent.
 */
export type FileActionKind = 'copy' | 'skip' | 'adopt' | 'reuse';

export interface FileAction {
  readonly path: string;
  readonly size: number;
  readonly action: FileActionKind;
  /** For `skip`: the destination's own record of the file (its hashes). */
  readonly record?: ManifestFile;
  /** For `reuse`, when known before the read: the likely source, `<backup>/<path>` at the destination. */
  readonly reuseFrom?: string;
  /** For `reuse`: the file is there already, unrecorded (see `reuse` above). */
  readonly present?: true;
  /** Why this action, for `--dry-run` and logs. */
  readonly reason: string;
}

/** The action kinds, numbered for `CompactActions.kinds`. */
export const ACTION_KINDS: readonly FileActionKind[] = ['copy', 'skip', 'adopt', 'reuse'];

/**
 * A destination's actions without an object per file, for a run that does not report them (not a
 * dry run): at 100,000 files the action objects and their paths were the largest thing a run held
 * while it started (issue 13), then dropped. In the order of the files sorted by path.
 */
export interface CompactActions {
  /** The kind of each file's action (an index into `ACTION_KINDS`). */
  readonly kinds: Uint8Array;
  /** Whether the files came sorted: `kinds[i]` is then the action of the `i`-th file given. */
  readonly inGivenOrder: boolean;
  /** The records of the files skipped (`FileAction.record`). */
  readonly records: readonly ManifestFile[];
  /** The paths of the files planned as `reuse` that are there already (`FileAction.present`). */
  readonly present: readonly string[];
}

export interface DestinationPlan {
  readonly destination: string;
  /** Nothing to do: the existing manifest already proves this exact copy. */
  readonly upToDate: boolean;
  /** An existing manifest must be removed before anything is written (it would lie meanwhile). */
  readonly removeManifestFirst: boolean;
  /** One per file, sorted by path; empty when the plan was made `compact`. */
  readonly actions: readonly FileAction[];
  /** With `compact`: the actions without an object per file. */
  readonly compact?: CompactActions;
  readonly copyFiles: number;
  readonly copyBytes: number;
  readonly skipFiles: number;
  readonly skipBytes: number;
  readonly adoptFiles: number;
  readonly adoptBytes: number;
  /** Files planned as `reuse` (sent after all when no copy holds the same bytes). */
  readonly reuseFiles: number;
  readonly reuseBytes: number;
}

export interface ReplicationPlan {
  readonly backup: string;
  readonly chunkBytes: number;
  readonly sourceFiles: number;
  readonly sourceBytes: number;
  readonly destinations: readonly DestinationPlan[];
}

function recordsOf(state: DestinationState, chunkBytes: number): Map<string, ManifestFile> {
  const records = new Map<string, ManifestFile>();
  for (const m of [state.progress, state.manifest]) {
    if (!m || m.chunkBytes !== chunkBytes) continue;
    for (const f of m.files) records.set(f.path, f);
  }
  return records;
}

/** A fingerprint was recorded and the one seen now is another (or none: the file changed kind of storage). */
function changed(recorded: string | undefined, now: string | undefined): boolean {
  return recorded !== undefined && recorded !== now;
}

const SAME_PATH_REASON = 'missing at destination; the newest earlier copy there has it with the same size: reuse it if the bytes are the same, else send';

/** The action for a file missing at the destination: `reuse` when the lookup says an earlier copy may hold it. */
function missingAction(file: SourceFile, reuse: ReuseLookup | undefined): FileAction {
  if (file.size === 0) return { path: file.path, size: file.size, action: 'copy', reason: 'missing at destination' };
  const candidate = reuse?.candidate(file.path, file.size);
  if (candidate) {
    // One reason for every such file (100,000 of them at a time, issue 12); `reuseFrom` says where.
    return { path: file.path, size: file.size, action: 'reuse', reuseFrom: `${candidate.backup}/${candidate.path}`, reason: SAME_PATH_REASON };
  }
  if (reuse?.mayHold(file.size, file.path)) {
    return { path: file.path, size: file.size, action: 'reuse', reason: 'missing at destination; an earlier copy there has a file of this size: reuse it if the bytes are the same, else send' };
  }
  return { path: file.path, size: file.size, action: 'copy', reason: 'missing at destination' };
}

function planDestination(files: readonly SourceFile[], state: DestinationState, chunkBytes: number, reuse: ReuseLookup | undefined, compact: { inGivenOrder: boolean } | undefined): DestinationPlan {
  const records = recordsOf(state, chunkBytes);
  const actions: FileAction[] = [];
  const kinds = compact ? new Uint8Array(files.length) : undefined;
  const skipped: ManifestFile[] = [];
  const present: string[] = [];
  let copyFiles = 0, copyBytes = 0, skipFiles = 0, skipBytes = 0, adoptFiles = 0, adoptBytes = 0, reuseFiles = 0, reuseBytes = 0;
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as SourceFile;
    const presentSize = state.present.get(file.path);
    const record = records.get(file.path);
    let action: FileAction;
    if (presentSize === undefined) {
      action = missingAction(file, reuse);
    } else if (presentSize !== file.size) {
      action = { path: file.path, size: file.size, action: 'copy', reason: `destination has ${presentSize} bytes, source ${file.size}` };
    } else if (!record || record.size !== file.size) {
      const candidate = file.size > 0 ? reuse?.candidate(file.path, file.size) : undefined;
      action = candidate !== undefined
        ? { path: file.path, size: file.size, action: 'reuse', present: true, reuseFrom: `${candidate.backup}/${candidate.path}`, reason: `present but not recorded; ${candidate.backup}/${candidate.path} has the same size: copy it there again if the bytes are the same (no read-back), else compare hashes` }
        : { path: file.path, size: file.size, action: 'adopt', reason: 'present but not recorded: compare hashes' };
    } else if (file.hash !== undefined ? record.hash !== file.hash : changed(record.sourceFingerprint, file.fingerprint)) {
      action = { path: file.path, size: file.size, action: 'copy', reason: file.hash !== undefined ? 'recorded with another hash' : 'source rewritten since it was recorded (fingerprint changed)' };
    } else if (changed(record.destinationFingerprint, state.presentFingerprints?.get(file.path))) {
      action = { path: file.path, size: file.size, action: 'adopt', reason: 'changed at destination since it was recorded (fingerprint changed): compare hashes' };
    } else {
      action = { path: file.path, size: file.size, action: 'skip', record, reason: 'already whole at destination' };
    }
    if (kinds === undefined) actions.push(action);
    else {
      // The action object is dropped at once (young garbage), only its kind and record kept.
      kinds[i] = ACTION_KINDS.indexOf(action.action);
      if (action.record) skipped.push(action.record);
      if (action.present === true) present.push(action.path);
    }
    if (action.action === 'copy') { copyFiles++; copyBytes += file.size; }
    else if (action.action === 'adopt') { adoptFiles++; adoptBytes += file.size; }
    else if (action.action === 'reuse') { reuseFiles++; reuseBytes += file.size; }
    else { skipFiles++; skipBytes += file.size; }
  }
  const manifest = state.manifest;
  const manifestSizes = new Map(manifest?.files.map((f) => [f.path, f.size]));
  const upToDate = manifest !== undefined && copyFiles === 0 && adoptFiles === 0 && reuseFiles === 0 && manifest.chunkBytes === chunkBytes &&
    manifest.files.length === files.length && files.every((f) => manifestSizes.get(f.path) === f.size);
  return {
    destination: state.name,
    upToDate,
    removeManifestFirst: !upToDate && (manifest !== undefined || state.manifestProblem !== undefined),
    actions,
    ...(kinds ? { compact: { kinds, inGivenOrder: (compact as { inGivenOrder: boolean }).inGivenOrder, records: skipped, present } } : {}),
    copyFiles, copyBytes, skipFiles, skipBytes, adoptFiles, adoptBytes, reuseFiles, reuseBytes,
  };
}

/**
 * `files` sorted by path: `files` itself when it is already (a run's files come sorted; their
 * paths may be made when asked, src/core/source-table.ts, so a sort would make ~17 per file), else
 * a sorted copy.
 */
export function sortedByPath<T extends { readonly path: string }>(files: readonly T[]): readonly T[] {
  let before = files.length > 0 ? (files[0] as T).path : '';
  for (let i = 1; i < files.length; i++) {
    const path = (files[i] as T).path;
    if (!(before < path)) return [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    before = path;
  }
  return files;
}

/**
 * Plans one backup's replication to every destination. Pure. `reuse`: the reuse lookup of each
 * destination that may reuse files of its other copies (by destination name). `compact`: the
 * plans' actions as `CompactActions` (`actions` empty).
 */
export function planReplication(
  backup: string, files: readonly SourceFile[], destinations: readonly DestinationState[], chunkBytes: number,
  reuse?: ReadonlyMap<string, ReuseLookup>, options: { readonly compact?: boolean } = {},
): ReplicationPlan {
  const sorted = sortedByPath(files);
  const compact = options.compact === true ? { inGivenOrder: sorted === files } : undefined;
  return {
    backup,
    chunkBytes,
    sourceFiles: sorted.length,
    sourceBytes: sorted.reduce((sum, f) => sum + f.size, 0),
    destinations: destinations.map((d) => planDestination(sorted, d, chunkBytes, reuse?.get(d.name), compact)),
  };
}
