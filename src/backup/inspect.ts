/**
 * Is this milvus-backup backup finished, and what does it hold?
 *
 * milvus-backup gives no reliable signal: `state_code` on disk is 2, 1 or 0 for *successful*
 * backups depending on the version, a failed backup leaves its partial `binlogs/` tree behind
 * with no meta, and local-storage writes are not atomic. So the state is derived from the
 * objects themselves (DESIGN.md §1):
 *
 * A backup `NAME` is **complete** when
 *   1. `meta/backup_meta.json`, `meta/collection_meta.json` and `meta/full_meta.json` exist,
 *      plus `meta/partition_meta.json` and `meta/segment_meta.json` unless the format is
 *      `snapshot`, and every meta file present parses (losslessly) with the expected shape;
 *   2. nothing under `NAME/` changed for the quiet period (default 60 s): this covers the
 *      trailing `channel_cp_meta.json` of 0.4.13..0.5.8, the `l0compact` order (full_meta
 *      first) and files still being written in place on local storage;
 *   3. every binlog that `full_meta.json` lists (each collection's partitions' segments and its
 *      `l0_segments`) exists at the path rebuilt from its IDs (./meta.ts) with exactly its
 *      `log_size`; for the snapshot format, each collection's `snapshot_backup.metadata_path`
 *      exists (the rest of `bundle/` is opaque and copied verbatim).
 *
 * Otherwise it is:
 * - **incomplete** ("may still become complete"): something under `NAME/` changed within the
 *   quiet period. Whatever else looks wrong, a backup that is still moving is not judged yet:
 *   meta may be half-written, binlogs may still be arriving. The reason says how long ago the
 *   last change was (and what is missing so far).
 * - **failed** ("will not become complete by waiting"): quiet for the whole quiet period and
 *   still a required meta file missing (binlogs without meta = a failed or abandoned backup;
 *   a meta write that stopped half-way), a meta file malformed, or a listed binlog missing or
 *   of the wrong size. Also a name with nothing under it at all (no such backup). A folder, a
 *   FIFO or another special file where a file should be is named as such, not as "missing".
 *
 * The state is recomputed from scratch on every call; nothing is remembered. A "failed" backup
 * that was in fact only slow (a single huge object copying for longer than the quiet period)
 * simply inspects as complete once milvus-backup finishes it.
 *
 * Bounded work: `NAME/` is listed exactly once and only the meta files are read (never a
 * binlog); when files are absent, the driver is asked what is in place of the first few
 * (`Driver.whatIsAt`, which never opens them). Memory is the listing of that one backup plus
 * its parsed meta.
 *
 * `inspectBackup` does not throw for a bad backup: it returns the state and a one-line reason
 * that names the file. It throws only when the source itself fails (IO errors, keeping their
 * `kind`), when aborted, or for a name that cannot be a folder (`E_BACKUP_NAME`).
 */
import { AbortedError, BackupError, throwIfAborted } from '../errors.js';
import { describePathType } from '../drivers/toolkit/path-types.js';
import type { Driver, Entry, PathType } from '../drivers/types.js';
import { readMetaJson, type ReusableBuffer } from './json.js';
import { checkMetaShape, declaredFormat, summarizeFullMeta, type ExpectedObject, type FullMetaSummary } from './meta.js';
import { ListingIndex } from '../listing-index.js';
import { readMetaLazily, type LazySpec } from './meta-scan.js';
import { ownString } from '../strings.js';
import { CHECK_PROBE_PREFIX, META_DIR, META_FILES, isNoiseInBackup, isValidBackupName } from './names.js';

export type BackupState = 'complete' | 'incomplete' | 'failed';

export interface BackupFile {
  /** Relative to the source driver root, e.g. `nightly_1/meta/full_meta.json`. */
  readonly key: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** The driver's fingerprint of the file (`Entry.fingerprint`), when it gives one. */
  readonly fingerprint?: string;
}

export interface BackupInspection {
  readonly name: string;
  readonly state: BackupState;
  /** Set unless complete: one line, names the file (relative to `NAME/`). */
  readonly reason?: string;
  /** `unknown` when no meta says and there is no `binlogs/` or `bundle/` to go by. */
  readonly format: 'binlog' | 'snapshot' | 'unknown';
  /**
   * Best-effort guess of the milvus-backup version range that wrote it: `<=0.4.3`,
   * `0.4.4..0.4.12`, `0.4.13..0.5.3`, `0.5.4..0.5.9`, `0.5.10+`, or `snapshot`, with
   * `, storage v2` appended for Milvus 2.6 column-group segments. Undefined when unknown.
   */
  readonly layout?: string;
  /** Every object under `NAME/` sorted by key, without `NAME/.offsite/**` and folder markers. */
  readonly files: BackupFile[];
  /** Sum of `files` sizes. */
  readonly totalBytes: number;
  /** Newest mtime among `files` (0 when there are none). */
  readonly lastChangeMs: number;
  /**
   * Distinct binlogs (insert + delta, L0 included) listed in `full_meta.json`; 0 when it is
   * missing or malformed, and for the snapshot format.
   */
  readonly binlogCount: number;
  /** Collections in `full_meta.json`, when it could be read. */
  readonly collections?: number;
  /** Segments (L0 included) in `full_meta.json`, when it could be read. */
  readonly segments?: number;
}

export interface InspectOptions {
  /** Nothing under `NAME/` may have changed for this long. @default 60_000 */
  readonly quietPeriodMs?: number;
  /** "Now", for tests. @default Date.now() after the listing */
  readonly nowMs?: number;
  readonly signal?: AbortSignal;
  /**
   * Told (one line each) about what a listing of the whole source skips: a folder whose name
   * milvus-backup never makes, a symlink leading outside the root next to the backups, a backup
   * whose own folder holds such a link. Without it they are skipped silently.
   */
  readonly onWarning?: (message: string) => void;
}

export const DEFAULT_QUIET_PERIOD_MS = 60_000;

/** Inspections run concurrently by `listBackups` (each reads a few small meta files). */
const LIST_CONCURRENCY = 4;

/**
 * How the big meta files are read (./meta-scan.ts): full_meta's segments one at a time as the
 * summary visits them; a level file's `infos` checked to be objects, never built.
 */
const FULL_META_SPEC: LazySpec = { collection_backups: { partition_backups: { segment_backups: 'parse' }, l0_segments: 'parse' } };
const LEVEL_SPEC: LazySpec = { infos: 'opaque' };

/** Meta files in milvus-backup's write order, with whether they are `{"infos":[...]}` files. */
const META_ORDER = [
  { file: META_FILES.backup, level: false },
  { file: META_FILES.collection, level: true },
  { file: META_FILES.partition, level: true },
  { file: META_FILES.segment, level: true },
  { file: META_FILES.full, level: false },
  { file: META_FILES.channelCheckpoint, level: false },
] as const;

/**
 * Inspects the backup `name` at the root of `source` (see the module comment for the rules).
 * Lists `name/` once, reads only its meta files.
 */
export async function inspectBackup(source: Driver, name: string, options: InspectOptions = {}): Promise<BackupInspection> {
  const entries: Entry[] = [];
  for await (const entry of listBackup(source, name, options)) entries.push(entry);
  return inspectListing(source, name, entries, options);
}

/** The listing of `name/` at `source` (a valid backup name checked first). */
async function* listBackup(source: Driver, name: string, options: InspectOptions): AsyncGenerator<Entry> {
  throwIfAborted(options.signal, `inspecting ${name}`);
  if (!isValidBackupName(name)) {
    throw new BackupError('E_BACKUP_NAME', `${JSON.stringify(name)} is not a milvus-backup backup name (letters, digits and _, not starting with a digit)`);
  }
  // Keys, sizes, mtimes and fingerprints are all it needs: no stored hashes (a HEAD per object on object stores).
  yield* source.list(`${name}/`, { signal: options.signal, requireRoot: true, hashes: false });
}

/**
 * `inspectBackup` that hands each file of the backup to `keep` as the listing comes (in the
 * listing's order, with its path relative to `NAME/`) instead of returning them, for a caller that
 * keeps them its own way (src/core/run-files.ts: no entry object per file is held while the meta
 * files are read). `files` in the result is empty; `fileCount` says how many were kept.
 */
export async function inspectBackupStreamed(
  source: Driver, name: string, keep: (path: string, entry: Entry) => void, options: InspectOptions = {},
): Promise<BackupInspection & { readonly fileCount: number }> {
  const seen = new Seen(`${name}/`);
  for await (const entry of listBackup(source, name, options)) {
    if (seen.add(entry)) keep(entry.key.slice(name.length + 1), entry);
  }
  return { ...(await judgeListing(source, name, seen, options)), files: [] };
}

/**
 * Every backup at the root of `source`, sorted by name. One listing of the whole root, then
 * one inspection per top-level folder.
 *
 * Skipped: objects directly under the root (the `milvus_backup_check_*` probes of
 * `milvus-backup check`, zero-byte markers, anything else), folders named like a probe, and
 * folders that are not backups at all: nothing under `meta/`, `binlogs/` or `bundle/` (for
 * example a folder holding only our `.offsite/`). Such folders are omitted rather than reported
 * as failed, as milvus-backup's own `list` does, so that unrelated folders next to the backups
 * do not look like broken backups. A partial tree of binlogs without meta *is* listed (failed
 * or incomplete): it is what a failed or running backup looks like.
 */
export async function listBackups(source: Driver, options: InspectOptions = {}): Promise<BackupInspection[]> {
  throwIfAborted(options.signal, 'listing backups');
  const groups = await listBackupFolders(source, options.signal, options.onWarning);
  const nowMs = options.nowMs ?? Date.now();
  const names = [...groups.keys()].sort(byCodeUnits);
  const results: BackupInspection[] = new Array<BackupInspection>(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const index = next++;
      const name = names[index] as string;
      results[index] = await inspectListing(source, name, groups.get(name) ?? [], { ...options, nowMs });
      groups.delete(name);
    }
  };
  await Promise.all(Array.from({ length: Math.min(LIST_CONCURRENCY, names.length) }, worker));
  return results;
}

/**
 * The backup folders at the root of `source` from one listing: name -> its objects, with the
 * selection `listBackups` describes (no root-level objects, no probe folders, no folder without
 * `meta/`, `binlogs/` or `bundle/`). For callers that inspect only some of them (the newest
 * one, or the new and changed ones) with `inspectListing`.
 *
 * One rule for every way in: a folder whose name milvus-backup never makes (`my backup`,
 * `bäckup_ü`, `a+b`; see `isValidBackupName`) is skipped with a warning, as is a backup whose
 * folder holds a symlink leading outside the root; a stray symlink leading outside the root next
 * to the backups is skipped with a warning and blocks nothing else. The root itself must exist
 * and be a folder (`requireRoot`): a missing root rejects instead of reading as "no backups".
 */
export async function listBackupFolders(source: Driver, signal?: AbortSignal, onWarning?: (message: string) => void): Promise<Map<string, Entry[]>> {
  return backupFolders(source, signal, onWarning, true);
}

/**
 * The names `listBackupFolders` gives, without their objects: for callers that list each backup
 * again when they come to it (`listBackupSummaries`), so that memory never holds every backup's
 * listing at once.
 */
export async function listBackupNames(source: Driver, signal?: AbortSignal, onWarning?: (message: string) => void): Promise<string[]> {
  return [...(await backupFolders(source, signal, onWarning, false)).keys()].sort(byCodeUnits);
}

async function backupFolders(source: Driver, signal: AbortSignal | undefined, onWarning: ((message: string) => void) | undefined, keep: boolean): Promise<Map<string, Entry[]>> {
  const groups = new Map<string, Entry[]>();
  const backupLike = new Set<string>();
  const refused = new Map<string, string>();
  const onRefused = (key: string, error: Error): void => {
    const slash = key.indexOf('/');
    if (slash <= 0) onWarning?.(`skipped ${JSON.stringify(key)} at the source root: ${oneLine(error.message)}`);
    else if (!refused.has(key.slice(0, slash))) refused.set(key.slice(0, slash), oneLine(error.message));
  };
  for await (const entry of source.list('', { signal, requireRoot: true, onRefused, hashes: false })) {
    const slash = entry.key.indexOf('/');
    if (slash <= 0) continue;
    let group = groups.get(entry.key.slice(0, slash));
    if (group === undefined) {
      const name = entry.key.slice(0, slash);
      if (name.startsWith(CHECK_PROBE_PREFIX)) continue;
      groups.set(ownString(name), group = []);
    }
    if (keep) group.push(entry);
    if (isBackupContent(entry.key.slice(slash + 1))) backupLike.add(entry.key.slice(0, slash));
  }
  for (const name of groups.keys()) {
    if (!backupLike.has(name)) groups.delete(name);
    else if (!isValidBackupName(name)) {
      groups.delete(name);
      onWarning?.(`skipped the folder ${JSON.stringify(name)} at the source: not a milvus-backup backup name (letters, digits and _, not starting with a digit), so verify, pull, audit and prune could not handle its copies; rename it`);
    }
  }
  for (const [name, why] of refused) {
    if (!isValidBackupName(name)) continue;
    groups.delete(name);
    onWarning?.(`skipped backup ${name}: ${why}; remove the link (or copy what it points to into the backup)`);
  }
  return groups;
}

/** A message as one line: control characters (a newline in a file name) shown escaped. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A path inside a backup folder that only a backup has (`meta/`, `binlogs/`, `bundle/`). */
function isBackupContent(rel: string): boolean {
  return rel.startsWith(`${META_DIR}/`) || rel.startsWith('binlogs/') || rel.startsWith('bundle/');
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Inspects `name` from a listing the caller already has (every entry whose key starts with
 * `name/`; others are ignored). Reads only the meta files. For callers that list anyway.
 */
export async function inspectListing(
  source: Driver, name: string, entries: Iterable<Entry>, options: InspectOptions = {},
): Promise<BackupInspection> {
  throwIfAborted(options.signal, `inspecting ${name}`);
  const prefix = `${name}/`;
  const files: BackupFile[] = [];
  const seen = new Seen(prefix);
  for (const entry of entries) {
    if (!seen.add(entry)) continue;
    // The listing's own entry when it holds nothing more (one object per file, not two).
    files.push(entry.hash === undefined ? entry : { key: entry.key, size: entry.size, mtimeMs: entry.mtimeMs, ...(entry.fingerprint !== undefined ? { fingerprint: entry.fingerprint } : {}) });
  }
  files.sort((a, b) => byCodeUnits(a.key, b.key));
  const { fileCount: _count, ...judged } = await judgeListing(source, name, seen, options);
  return { ...judged, files };
}

/**
 * `inspectBackup` without the file list (`fileCount` instead), for callers that need the state
 * only (`list`, `audit`): the listing of `name/` is consumed as it comes, and what is kept of it
 * is one size per path relative to `NAME/`, not an entry per file. An entry the driver refuses to
 * list (a symlink leading outside the root) rejects, as in `inspectBackup`, unless `onRefused`
 * takes it.
 */
export async function inspectBackupState(
  source: Driver, name: string, options: InspectOptions & {
    readonly onRefused?: (key: string, error: Error) => void;
    /** Objects the backup likely holds (a manifest's `fileCount`): the listing's index is sized for them at once. */
    readonly expectedFiles?: number;
  } = {},
): Promise<Omit<BackupInspection, 'files'> & { readonly fileCount: number }> {
  throwIfAborted(options.signal, `inspecting ${name}`);
  const seen = new Seen(`${name}/`, options.expectedFiles);
  for await (const entry of source.list(`${name}/`, { signal: options.signal, requireRoot: true, hashes: false, onRefused: options.onRefused })) seen.add(entry);
  return judgeListing(source, name, seen, options);
}

/**
 * What inspection keeps of a backup's listing: a size per relative path (in a compact index:
 * ../listing-index.ts), the count, sum and newest change.
 */
class Seen {
  readonly sizes: ListingIndex;
  fileCount = 0;
  totalBytes = 0;
  lastChangeMs = 0;

  constructor(readonly prefix: string, expectedFiles?: number) {
    this.sizes = new ListingIndex(expectedFiles);
  }

  /** Counts `entry` when it belongs to the backup (not noise); false otherwise. */
  add(entry: Entry): boolean {
    if (!entry.key.startsWith(this.prefix)) return false;
    const rel = entry.key.slice(this.prefix.length);
    if (isNoiseInBackup(rel)) return false;
    this.sizes.set(rel, entry.size);
    this.fileCount++;
    this.totalBytes += entry.size;
    if (entry.mtimeMs > this.lastChangeMs) this.lastChangeMs = entry.mtimeMs;
    return true;
  }
}

/** The state of the backup `name` from what its listing showed (the rules in the module comment). */
async function judgeListing(
  source: Driver, name: string, seen: Seen, options: InspectOptions,
): Promise<Omit<BackupInspection, 'files'> & { readonly fileCount: number }> {
  const prefix = `${name}/`;
  const quietPeriodMs = options.quietPeriodMs ?? DEFAULT_QUIET_PERIOD_MS;
  const { sizes, fileCount, totalBytes, lastChangeMs } = seen;
  const nowMs = options.nowMs ?? Date.now();
  const base = { name, fileCount, totalBytes, lastChangeMs };

  if (fileCount === 0) {
    return { ...base, state: 'failed', reason: `no objects under ${prefix} (no such backup)`, format: 'unknown', binlogCount: 0 };
  }

  // 1. Meta: which files exist, and do they parse?
  const problems: string[] = [];
  // Only backup_meta and full_meta are used below: the other meta files are checked and dropped
  // at once. The big ones are never built whole (./meta-scan.ts): segment_meta lists every binlog
  // again, tens of MB of parsed JSON at 100,000 files, and full_meta's segments are summarized one
  // at a time.
  const parsed = new Map<string, unknown>();
  const present = (file: string): boolean => sizes.has(`${META_DIR}/${file}`);
  // segment_meta is dropped after its check, before full_meta is read: both are read into one buffer.
  const bigSizes = [META_FILES.segment, META_FILES.full].map((file) => sizes.sizeOf(`${META_DIR}/${file}`) ?? 0);
  const reuse: ReusableBuffer = { largestBytes: Math.max(...bigSizes) };
  for (const { file, level } of META_ORDER) {
    if (!present(file)) continue;
    throwIfAborted(options.signal, `inspecting ${name}`);
    const label = `${META_DIR}/${file}`;
    try {
      const big = file === META_FILES.segment || file === META_FILES.full;
      const read = { label, signal: options.signal, expectedBytes: sizes.sizeOf(label), ...(big ? { reuse } : {}) };
      const value = file === META_FILES.backup ? await readMetaJson(source, `${prefix}${label}`, read)
        : await readMetaLazily(source, `${prefix}${label}`, file === META_FILES.full ? FULL_META_SPEC : level ? LEVEL_SPEC : {}, read);
      if (file !== META_FILES.full) checkMetaShape(value, label, level);
      if (file === META_FILES.full || file === META_FILES.backup) parsed.set(file, value);
    } catch (err) {
      if (!(err instanceof BackupError)) throw err;
      if (err.code === 'E_META_MISSING') sizes.remove(label); // deleted since the listing
      else problems.push(err.message);
    }
  }

  let summary: FullMetaSummary | undefined;
  const fullMeta = parsed.get(META_FILES.full);
  const fullFormat = declaredFormat(fullMeta);
  const backupFormat = declaredFormat(parsed.get(META_FILES.backup));
  // Every object full_meta lists is checked against the listing as the summary finds it (none is kept).
  let objects = new ObjectProblems();
  if (fullMeta !== undefined) {
    try {
      summary = summarizeFullMeta(fullMeta, `${META_DIR}/${META_FILES.full}`, backupFormat, { release: true, expectedObjects: fileCount, onObject: (object) => objects.check(object, sizes.sizeOf(object.rel)) });
    } catch (err) {
      if (!(err instanceof BackupError)) throw err;
      problems.push(err.message);
      objects = new ObjectProblems(); // a malformed full_meta is the problem, not what it listed so far
    }
  }
  // Its summary is all that is needed from here on (the walk dropped its binlog lists already).
  parsed.delete(META_FILES.full);

  let format: BackupInspection['format'];
  if (summary) format = summary.format;
  else if (fullFormat ?? backupFormat) format = (fullFormat ?? backupFormat) as 'binlog' | 'snapshot';
  else if (sizes.hasPrefix('bundle/')) format = 'snapshot';
  else if (sizes.hasPrefix('binlogs/')) format = 'binlog';
  else format = present(META_FILES.full) ? 'binlog' : 'unknown';

  // 2. Required meta files.
  const required: string[] = [META_FILES.backup, META_FILES.collection, META_FILES.full];
  if (format !== 'snapshot') required.splice(2, 0, META_FILES.partition, META_FILES.segment);
  const missing = required.filter((file) => !present(file)).map((file) => `${META_DIR}/${file}`);
  const absent = await describeAbsent(source, prefix, sizes, [...missing, ...objects.absent.map((o) => o.rel)], options.signal);
  const missingMeta = missing.filter((rel) => !absent.has(rel));
  problems.unshift(...missing.filter((rel) => absent.has(rel)).map((rel) => `${rel} ${absent.get(rel) as string}: replace it with the meta file, or make the backup again`));
  if (missingMeta.length > 0) {
    const anyMeta = META_ORDER.some(({ file }) => present(file));
    problems.unshift(anyMeta || missingMeta.length < missing.length
      ? `${joinNames(missingMeta)} missing`
      : `${META_DIR}/${META_FILES.full} missing, and no other meta: ${fileCount} objects without meta are a failed or abandoned backup`);
  }

  // 3. Every listed object at its rebuilt path, with its exact size (checked above; the first problem is told).
  const first = objects.first;
  if (first) {
    const { object, size } = first;
    const what = object.kind === 'snapshot-metadata' ? 'snapshot metadata' : 'binlog';
    const metaSays = object.size === undefined ? '' : ` (meta says ${object.size} bytes)`;
    const inPlace = absent.get(object.rel);
    if (inPlace !== undefined) {
      problems.push(`${what} ${object.rel} ${inPlace}${metaSays}: replace it with the ${what} file, or make the backup again`);
    } else if (size === undefined) {
      problems.push(`${what} ${object.rel} missing${metaSays}`);
    } else {
      problems.push(`${what} ${object.rel} is ${size} bytes, meta says ${object.size as number}`);
    }
  }
  const problemCount = problems.length + Math.max(0, objects.count - 1);

  const binlogCount = summary && summary.format === 'binlog' ? summary.objectCount : 0;
  const layout = guessLayout(summary, parsed.get(META_FILES.backup), present(META_FILES.channelCheckpoint));
  const result = {
    ...base, format, binlogCount,
    ...(layout === undefined ? {} : { layout }),
    ...(summary ? { collections: summary.collections, segments: summary.segments } : {}),
  };

  const firstProblem = problemCount === 0 ? undefined
    : problemCount === 1 ? problems[0] as string
      : `${problems[0] as string} (and ${problemCount - 1} more problem${problemCount === 2 ? '' : 's'})`;

  const ageMs = nowMs - lastChangeMs;
  if (ageMs < quietPeriodMs) {
    const when = ageMs < 0 ? `last change is ${seconds(-ageMs)} in the future (clock skew?)` : `last change ${seconds(ageMs)} ago`;
    const reason = `${when}, quiet period is ${seconds(quietPeriodMs, true)}${firstProblem ? `; so far: ${firstProblem}` : ''}`;
    return { ...result, state: 'incomplete', reason };
  }
  if (firstProblem !== undefined) return { ...result, state: 'failed', reason: firstProblem };
  return { ...result, state: 'complete' };
}

/**
 * Throws unless the inspection is complete: `BackupError` `E_BACKUP_INCOMPLETE` or
 * `E_BACKUP_FAILED` with "backup NAME is not complete: REASON", or `E_BACKUP_NOT_FOUND`
 * (kind `not-found`) "backup NAME not found: no objects under NAME/" when there is nothing there.
 */
export function assertComplete(inspection: BackupInspection & { readonly fileCount?: number }): void {
  if (inspection.state === 'complete') return;
  if ((inspection.fileCount ?? inspection.files.length) === 0) {
    throw new BackupError('E_BACKUP_NOT_FOUND', `backup ${inspection.name} not found: no objects under ${inspection.name}/`, { kind: 'not-found' });
  }
  const code = inspection.state === 'incomplete' ? 'E_BACKUP_INCOMPLETE' : 'E_BACKUP_FAILED';
  throw new BackupError(code, `backup ${inspection.name} is not complete: ${inspection.reason ?? inspection.state}`);
}

/** Absent files looked at more closely by `describeAbsent` (only the first problem is shown). */
const DESCRIBED_ABSENT = 3;

/**
 * What is in place of files the listing did not show (`rels`, relative to `prefix`; only the
 * first few are looked at), for the files that are not simply missing: rel -> "is a folder, not
 * a regular file", "is a FIFO (named pipe), not a regular file"... A folder with files in it is
 * seen in the listing; an empty folder, a FIFO, a socket or a device only through the driver's
 * `whatIsAt` (which never opens the path). A failed look leaves the file "missing".
 */
async function describeAbsent(
  source: Driver, prefix: string, sizes: ListingIndex, rels: readonly string[], signal: AbortSignal | undefined,
): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const rel of rels.slice(0, DESCRIBED_ABSENT)) {
    let type: PathType | undefined = sizes.hasPrefix(`${rel}/`) ? 'folder' : undefined;
    if (type === undefined && source.whatIsAt !== undefined) {
      try {
        type = await source.whatIsAt(`${prefix}${rel}`, { signal });
      } catch (err) {
        throwIfAborted(signal, `inspecting ${prefix}`);
        if (err instanceof AbortedError) throw err;
      }
    }
    if (type !== undefined && type !== 'missing' && type !== 'file') found.set(rel, `is ${describePathType(type)}, not a regular file`);
  }
  return found;
}

/**
 * The objects full_meta lists that the listing lacks or shows with another size: how many, the
 * first (the one the reason names) and the first few absent ones (`describeAbsent` looks at them).
 */
class ObjectProblems {
  count = 0;
  first: { readonly object: ExpectedObject; readonly size: number | undefined } | undefined;
  readonly absent: ExpectedObject[] = [];

  /** `size`: what the listing shows for the object (undefined: not there). */
  check(object: ExpectedObject, size: number | undefined): void {
    if (size !== undefined && (object.size === undefined || size === object.size)) return;
    this.count++;
    this.first ??= { object, size };
    if (size === undefined && this.absent.length < DESCRIBED_ABSENT) this.absent.push(object);
  }
}

function joinNames(names: string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1] as string}`;
}

/** Whole seconds for ages ("12 s"); the quiet period keeps one decimal when it has one. */
function seconds(ms: number, exact = false): string {
  if (exact && ms % 1000 !== 0) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 1000)} s`;
}

/** Best-effort version range from what the meta shows (see BackupInspection.layout). */
function guessLayout(summary: FullMetaSummary | undefined, backupMeta: unknown, channelCheckpoints: boolean): string | undefined {
  if (summary?.format === 'snapshot') return 'snapshot';
  if (summary === undefined) return undefined;
  let layout: string | undefined;
  if (summary.groupStyle === 'none' || summary.groupStyle === 'numbered') {
    layout = '<=0.4.3';
  } else if (channelCheckpoints) {
    layout = summary.hasLogId ? '0.5.4..0.5.9' : '0.4.13..0.5.3';
  } else if (summary.hasLogId) {
    layout = '0.5.10+';
  } else if (summary.groupStyle === 'segment-id') {
    const meta = backupMeta !== null && typeof backupMeta === 'object' ? backupMeta as Record<string, unknown> : {};
    // 0.5.10 dropped start_time/end_time/progress from the meta.
    layout = 'start_time' in meta || 'end_time' in meta || 'progress' in meta ? '0.4.4..0.4.12' : '0.5.10+';
  }
  if (layout !== undefined && summary.storageV2) layout += ', storage v2';
  return layout;
}
