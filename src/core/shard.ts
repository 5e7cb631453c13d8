/**
 * One backup replicated by several workers (`offsite replicate NAME --shard i/n`, e.g. the pods of
 * a Kubernetes Indexed Job), with the same guarantee as one machine: a destination gets the
 * manifest only when every file of every shard is there and recorded.
 *
 * **The split.** A file belongs to shard `XXH64(utf8(path), seed 0) mod n`, where `path` is its
 * path relative to the backup folder (`binlogs/insert_log/…`, `meta/full_meta.json`) and the hash
 * is read as an unsigned 64-bit integer. Any implementation can reproduce it; `shardOfPath` is it.
 *
 * **What a shard writes** at each destination, besides its files, lives in a folder of its own,
 * `NAME/.offsite/shards/<i>-of-<n>/`, so that no two shards ever write the same object:
 * - `lock.json`: the shard's lock while it copies (./lock.ts): a second worker started with the
 *   same index waits its turn instead of writing the same files at the same time;
 * - `progress.json` and its journal `progress-N.json`: the progress checkpoint, as an unsharded run
 *   keeps it next to the manifest (src/manifest/manifest.ts), so a rerun of the index resumes;
 * - `done.json`: the shard's record, written once every file of its share is committed and synced
 *   (durable before recorded): manifest-shaped (`kind: "progress"`, digest-checked), with
 *   `shard: { index, count, fileListDigest, backupFiles }`. `fileListDigest` (`fileListDigest`
 *   below) is the XXH64 of the whole backup's file list (paths and sizes) as this shard saw it.
 *
 * **The manifest, once, by whoever completes the set.** After writing its record, a shard takes
 * the destination's lock (`NAME/.offsite/lock.json`, waiting while another finisher holds it) and
 * checks the set (`finishSet`): a record for every index 0..n-1, each with the same `n`, the same
 * file list digest as the backup now, the same chunk size, exactly the files of its share, and
 * every recorded file still listed at the destination with its size and destination fingerprint.
 * If all holds it syncs, writes `NAME/.offsite/manifest.json` from the union of the records,
 * syncs again, and removes the shards' records and checkpoints. Otherwise it leaves everything as
 * it is: the last shard to finish completes the copy; a failed index, run again alone, completes
 * it then; `offsite replicate NAME --finish` runs the same check by hand and names what is missing.
 *
 * Refused: a shard of another `n` for a copy that has shard state of some `n` already (a silent
 * mix of two splits could never be checked), and a shard whose destination already holds a
 * complete manifest that no longer matches the backup (a shard never removes a complete copy's
 * manifest: an unsharded run, or `offsite audit --repair`, repairs it).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Driver } from '../drivers/types.js';
import { AbortedError, errorKind, errorMessage, OffsiteError } from '../errors.js';
import { getHasher, type Hasher } from '../hash/xxh64.js';
import {
  buildManifestBody, manifestKey, OFFSITE_DIR, readManifestAt, writeManifestAt,
  type Manifest, type ManifestBody, type ManifestFile,
} from '../manifest/manifest.js';
import type { CheckpointKeys } from './destination-run.js';
import { acquireLock, type HeldLock, type LockOptions } from './lock.js';
import { planReplication, sortedByPath, type DestinationState, type ReplicationPlan, type ReuseLookup, type SourceFile } from './plan.js';
import type { DestinationHoldings } from './destination-state.js';
import { checkShardSpec, type ShardSpec } from './shard-spec.js';

// The spec and its parser live in ./shard-spec.ts (the CLI parses --shard without loading this file).
export { checkShardSpec, MAX_SHARDS, parseShardSpec, type ShardSpec } from './shard-spec.js';

/** The code of the error for shards of two different counts at one copy. */
export const SHARD_SPLIT_CODE = 'E_SHARD_SPLIT';

/** The shard of `path` among `count`: XXH64 (seed 0) of its UTF-8 bytes, unsigned, modulo `count`. */
export function shardOfPath(hasher: Hasher, path: string, count: number): number {
  if (count === 1) return 0;
  const hex = hasher.hash(Buffer.from(path, 'utf8')).slice('xxh64:'.length);
  return Number(BigInt(`0x${hex}`) % BigInt(count));
}

/**
 * The digest of a backup's file list: XXH64 of one line per file, `JSON.stringify(path)`, a space,
 * the size in bytes and `\n`, in path order (JavaScript string order). Shards that saw another
 * list (another backup under the same name) are never mixed.
 */
export async function fileListDigest(files: readonly { readonly path: string; readonly size: number }[]): Promise<string> {
  const sorted = sortedByPath(files);
  const digest = (await getHasher()).create();
  let text = '';
  for (const f of sorted) {
    text += `${JSON.stringify(f.path)} ${f.size}\n`;
    if (text.length >= 65536) { digest.update(Buffer.from(text)); text = ''; }
  }
  digest.update(Buffer.from(text));
  return digest.digest();
}

const SHARDS_DIR = 'shards';

/** `NAME/.offsite/shards/`: every shard's own folder is under it. */
export function shardsPrefix(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/${SHARDS_DIR}/`;
}

/** `NAME/.offsite/shards/<i>-of-<n>/`. */
export function shardFolder(backup: string, spec: ShardSpec): string {
  return `${shardsPrefix(backup)}${spec.index}-of-${spec.count}/`;
}

export function shardRecordKey(backup: string, spec: ShardSpec): string {
  return `${shardFolder(backup, spec)}done.json`;
}

export function shardLockKey(backup: string, spec: ShardSpec): string {
  return `${shardFolder(backup, spec)}lock.json`;
}

/** The progress checkpoint of one shard: like the copy's own, in the shard's folder. */
export function shardCheckpointKeys(backup: string, spec: ShardSpec): CheckpointKeys {
  const folder = shardFolder(backup, spec);
  return {
    progress: `${folder}progress.json`,
    journal: (sequence) => `${folder}progress-${String(sequence).padStart(8, '0')}.json`,
    sequenceOf: (key) => {
      if (!key.startsWith(`${folder}progress-`) || !key.endsWith('.json')) return undefined;
      const digits = key.slice(`${folder}progress-`.length, -'.json'.length);
      return /^[0-9]{8,15}$/.test(digits) ? Number(digits) : undefined;
    },
  };
}

/** The shard a key under `NAME/.offsite/shards/` belongs to, and the rest of its key. */
export function parseShardKey(backup: string, key: string): (ShardSpec & { readonly rest: string }) | undefined {
  const prefix = shardsPrefix(backup);
  if (!key.startsWith(prefix)) return undefined;
  const match = /^([0-9]+)-of-([0-9]+)\/(.+)$/.exec(key.slice(prefix.length));
  return match ? { index: Number(match[1]), count: Number(match[2]), rest: match[3] as string } : undefined;
}

/** What a shard's record says about the shard (see the file comment). */
export interface ShardRecordInfo {
  readonly index: number;
  readonly count: number;
  readonly fileListDigest: string;
  /** Files in the whole backup (all shards). */
  readonly backupFiles: number;
}

export type ShardRecord = Manifest & { readonly shard?: ShardRecordInfo };

/** The shard counts (`n`) that have anything at `driver` for `backup`. */
export async function shardCountsAt(driver: Driver, backup: string, signal?: AbortSignal): Promise<Map<number, string>> {
  const counts = new Map<number, string>();
  for await (const entry of driver.list(shardsPrefix(backup), { signal })) {
    const parsed = parseShardKey(backup, entry.key);
    if (parsed && !counts.has(parsed.count)) counts.set(parsed.count, entry.key);
  }
  return counts;
}

function splitError(driver: Driver, backup: string, count: number | undefined, others: Map<number, string>): OffsiteError {
  if (count === undefined) {
    const all = [...others.keys()].sort((a, b) => a - b);
    return new OffsiteError(SHARD_SPLIT_CODE, `${driver.name}: ${backup} has shards of ${all.length} different splits there (${all.map((n) => `${n} shards`).join(', ')}): they are never mixed; remove ${shardsPrefix(backup)}*-of-N/ for the split you dropped, then finish the other`, { kind: 'permanent' });
  }
  const [other, key] = [...others].find(([n]) => n !== count) as [number, string];
  return new OffsiteError(SHARD_SPLIT_CODE, `${driver.name}: ${backup} is already being copied in ${other} shards (${key}), and this run is one of ${count}: a copy is never made of two different splits; run it with --shard i/${other}, or remove ${shardsPrefix(backup)}*-of-${other}/ there to start over with ${count}`, { kind: 'permanent' });
}

/** Reads a shard's record; `undefined` when missing; a damaged one as `{ damaged }`. */
async function readRecord(driver: Driver, backup: string, spec: ShardSpec, signal?: AbortSignal): Promise<ShardRecord | { damaged: string } | undefined> {
  try {
    return await readManifestAt(driver, shardRecordKey(backup, spec), { signal }) as ShardRecord | undefined;
  } catch (err) {
    if (errorKind(err) !== 'integrity') throw err;
    return { damaged: errorMessage(err) };
  }
}

/** The state of the set of shards of one copy at one destination, after a check. */
export interface ShardSetReport {
  readonly destination: string;
  /** Shards in the set (0 when `finishSet` was not told and found none). */
  readonly count: number;
  /** Why the set is incomplete when no shard index can be named (nothing recorded yet). */
  readonly note?: string;
  /** `complete`: the manifest is there (written by this check, or before it). */
  readonly status: 'complete' | 'incomplete';
  /** This check wrote the manifest. */
  readonly manifestWritten: boolean;
  readonly manifestKey?: string;
  /** Indexes with no record yet (not finished, or never started). */
  readonly missing: readonly number[];
  /** Indexes whose record cannot be used, and why: rerun them. */
  readonly inconsistent: readonly { readonly index: number; readonly reason: string }[];
}

export interface FinishOptions {
  /** The destination lock (./lock.ts), without its key. */
  readonly lock?: Omit<LockOptions, 'signal' | 'key'>;
  /** How long to wait for the destination lock while another run holds it. @default 120 s */
  readonly lockWaitMs?: number;
  readonly signal?: AbortSignal;
}

export const DEFAULT_FINISH_LOCK_WAIT_MS = 120_000;

/** Takes the destination lock, waiting (with jitter) while another finisher or run holds it. */
async function acquireWaiting(driver: Driver, backup: string, options: FinishOptions): Promise<HeldLock> {
  const deadline = Date.now() + (options.lockWaitMs ?? DEFAULT_FINISH_LOCK_WAIT_MS);
  for (;;) {
    try {
      return await acquireLock(driver, backup, { ...options.lock, signal: options.signal });
    } catch (err) {
      if (!(err instanceof OffsiteError && err.code === 'E_LOCKED') || Date.now() >= deadline) throw err;
      await sleep(250 + Math.random() * 750, undefined, { signal: options.signal }).catch(() => { throw new AbortedError('waiting for the destination lock'); });
    }
  }
}

/**
 * Checks the set of `count` shards of `backup` at `driver` against the backup's file list
 * (`files`: every file of the backup, with its size) under the destination lock, and writes the
 * manifest from the union of their records when the set is complete and consistent (see the file
 * comment). Without `count`, the count is the one the shards there have. Throws `E_SHARD_SPLIT`
 * when shards of another count (or of two counts) are there.
 */
export async function finishSet(driver: Driver, backup: string, wanted: number | undefined, files: readonly { readonly path: string; readonly size: number }[], options: FinishOptions = {}): Promise<ShardSetReport> {
  const { signal } = options;
  const hasher = await getHasher();
  const listDigest = await fileListDigest(files);
  const lock = await acquireWaiting(driver, backup, options);
  try {
    const present = new Map<string, { size: number; fingerprint?: string }>();
    const shardKeys: string[] = [];
    const counts = new Map<number, string>();
    for await (const entry of driver.list(`${backup}/`, { signal })) {
      const parsed = parseShardKey(backup, entry.key);
      if (parsed) {
        shardKeys.push(entry.key);
        if (!counts.has(parsed.count)) counts.set(parsed.count, entry.key);
      } else if (!entry.key.startsWith(`${backup}/${OFFSITE_DIR}/`)) {
        present.set(entry.key.slice(backup.length + 1), entry);
      }
    }
    if (wanted !== undefined ? [...counts.keys()].some((n) => n !== wanted) : counts.size > 1) throw splitError(driver, backup, wanted, counts);
    const count = wanted ?? [...counts.keys()][0] ?? 0;
    const base = { destination: driver.name, count };
    const existing = await readManifestAt(driver, manifestKey(backup), { signal }).catch((err: unknown) => {
      if (errorKind(err) === 'integrity') return undefined;
      throw err;
    });
    if (existing && sameFiles(existing.files, files)) {
      await removeShardState(driver, shardKeys, signal);
      return { ...base, status: 'complete', manifestWritten: false, manifestKey: manifestKey(backup), missing: [], inconsistent: [] };
    }
    if (count === 0) return { ...base, status: 'incomplete', manifestWritten: false, missing: [], inconsistent: [], note: `no shard has recorded anything for ${backup} there` };
    const shares = new Map<number, Map<string, number>>();
    for (const f of files) {
      const i = shardOfPath(hasher, f.path, count);
      let share = shares.get(i);
      if (!share) shares.set(i, share = new Map());
      share.set(f.path, f.size);
    }
    const missing: number[] = [];
    const inconsistent: { index: number; reason: string }[] = [];
    const usable: ShardRecord[] = [];
    for (let index = 0; index < count; index++) {
      const record = await readRecord(driver, backup, { index, count }, signal);
      if (record === undefined) { missing.push(index); continue; }
      const reason = 'damaged' in record ? `its record is damaged (${record.damaged})`
        : recordProblem(record, { index, count }, listDigest, files.length, shares.get(index) ?? new Map(), present, usable[0]);
      if (reason !== undefined) inconsistent.push({ index, reason });
      else usable.push(record as ShardRecord);
    }
    if (missing.length > 0 || inconsistent.length > 0) return { ...base, status: 'incomplete', manifestWritten: false, missing, inconsistent };
    const first = usable[0] as ShardRecord;
    const body: ManifestBody = buildManifestBody({
      kind: 'complete', backup, source: first.source, chunkBytes: first.chunkBytes, backupTime: first.backupTime,
      files: usable.flatMap((r) => r.files),
    });
    // Every shard synced its files before writing its record; this sync covers this process's own writes.
    await driver.sync({ signal });
    await writeManifestAt(driver, manifestKey(backup), body, { signal });
    await driver.sync({ signal });
    await removeShardState(driver, shardKeys, signal);
    return { ...base, status: 'complete', manifestWritten: true, manifestKey: manifestKey(backup), missing: [], inconsistent: [] };
  } finally {
    await lock.release();
  }
}

/** Why a shard's record cannot be part of the manifest, or `undefined` when it can. */
function recordProblem(
  record: ShardRecord, spec: ShardSpec, listDigest: string, backupFiles: number, share: ReadonlyMap<string, number>,
  present: ReadonlyMap<string, { size: number; fingerprint?: string }>, first: ShardRecord | undefined,
): string | undefined {
  const info = record.shard;
  if (!info || info.index !== spec.index || info.count !== spec.count) return `its record is not that of shard ${spec.index}/${spec.count}`;
  if (info.fileListDigest !== listDigest) return `it copied another file list of the backup (${info.backupFiles} files, the backup has ${backupFiles} now)`;
  if (first && record.chunkBytes !== first.chunkBytes) return `it used ${record.chunkBytes}-byte chunks, shard ${first.shard?.index} ${first.chunkBytes}-byte ones (give every shard the same --chunk-size)`;
  if (record.files.length !== share.size) return `its record has ${record.files.length} files, its share of the backup ${share.size}`;
  for (const f of record.files) {
    if (share.get(f.path) !== f.size) return `its record of ${f.path} is not part of its share of the backup (or has another size)`;
    const there = present.get(f.path);
    if (!there || there.size !== f.size) return `${f.path} is ${there ? `${there.size} bytes` : 'missing'} at the destination since the shard recorded it`;
    if (f.destinationFingerprint !== undefined && there.fingerprint !== f.destinationFingerprint) return `${f.path} changed at the destination since the shard recorded it`;
  }
  return undefined;
}

function sameFiles(recorded: readonly ManifestFile[], files: readonly { readonly path: string; readonly size: number }[]): boolean {
  if (recorded.length !== files.length) return false;
  const sizes = new Map(recorded.map((f) => [f.path, f.size]));
  return files.every((f) => sizes.get(f.path) === f.size);
}

/** Removes the shards' records and checkpoints once the manifest is there (not their locks: a holder removes its own). */
async function removeShardState(driver: Driver, keys: readonly string[], signal?: AbortSignal): Promise<void> {
  for (const key of keys) {
    if (key.endsWith('/lock.json')) continue;
    await driver.delete(key, { signal }).catch(() => undefined); // best effort: leftovers are ignored and pruned with the copy
  }
}

/**
 * The shard side of one replicate run (src/core/replicate.ts calls it at five points: which files,
 * what the destination holds, the plan, the checkpoint and lock keys, and the end of the shard).
 */
export class ShardRun {
  readonly lockKey: string;
  readonly checkpointKeys: CheckpointKeys;
  private all: readonly SourceFile[] = [];
  private mine: readonly SourceFile[] = [];
  private digest = '';

  private constructor(readonly backup: string, readonly spec: ShardSpec, private readonly hasher: Hasher, private readonly finish: FinishOptions) {
    this.lockKey = shardLockKey(backup, spec);
    this.checkpointKeys = shardCheckpointKeys(backup, spec);
  }

  static async open(backup: string, spec: ShardSpec, finish: FinishOptions = {}): Promise<ShardRun> {
    checkShardSpec(spec);
    return new ShardRun(backup, spec, await getHasher(), finish);
  }

  /** This shard's files out of the backup's (remembering the whole list for the checks). */
  async select<T extends SourceFile>(files: readonly T[]): Promise<T[]> {
    this.all = files;
    this.digest = await fileListDigest(files);
    const mine = files.filter((f) => shardOfPath(this.hasher, f.path, this.spec.count) === this.spec.index);
    this.mine = mine;
    return mine;
  }

  /**
   * What the destination holds for this shard: `held` as read with this shard's checkpoint keys,
   * with its record (`done.json`, when it matches the backup) under its checkpoint, so a rerun of
   * a finished index skips its files. Throws for another split, or for a complete copy that no
   * longer matches the backup (see the file comment).
   */
  async holdings(driver: Driver, held: DestinationHoldings, chunkBytes: number, signal?: AbortSignal): Promise<DestinationHoldings> {
    if (held.manifest) {
      const full = planReplication(this.backup, this.all, [held], chunkBytes).destinations[0];
      const off = full?.actions.find((a) => a.action !== 'skip');
      if (full && !full.upToDate) {
        throw new OffsiteError('E_SHARD_COMPLETE_COPY', `${driver.name}: ${this.backup} there has a complete manifest that does not match the backup now (${off ? `${off.path}: ${off.reason}` : `chunk size or file list changed`}); a shard never removes a complete copy's manifest: repair it with one unsharded run (offsite replicate ${this.backup} --to ${driver.name}) or offsite audit --repair`, { kind: 'permanent' });
      }
      return held;
    }
    const counts = await shardCountsAt(driver, this.backup, signal);
    if ([...counts.keys()].some((n) => n !== this.spec.count)) throw splitError(driver, this.backup, this.spec.count, counts);
    const record = await readRecord(driver, this.backup, this.spec, signal);
    if (!record || 'damaged' in record || record.shard?.fileListDigest !== this.digest) return held;
    const progress = held.progress;
    if (!progress || progress.chunkBytes !== record.chunkBytes) return { ...held, progress: record };
    const files = new Map(record.files.map((f) => [f.path, f]));
    for (const f of progress.files) files.set(f.path, f);
    return { ...held, progress: { ...progress, files: [...files.values()], fileCount: files.size } };
  }

  /**
   * The plan of this shard's files. A destination is up to date when it holds a complete manifest
   * (`holdings` let it through only if it matches the whole backup); a shard never removes a
   * manifest (a damaged one is replaced by the finisher).
   */
  plan(states: readonly DestinationState[], chunkBytes: number, reuse?: ReadonlyMap<string, ReuseLookup>): ReplicationPlan {
    const plan = planReplication(this.backup, this.mine, states, chunkBytes, reuse);
    return {
      ...plan,
      destinations: plan.destinations.map((d) => ({ ...d, upToDate: states.find((s) => s.name === d.destination)?.manifest !== undefined, removeManifestFirst: false })),
    };
  }

  /**
   * The end of this shard at one destination, once every file of its share is committed there:
   * sync, write its record, drop its checkpoint (`dropCheckpoint`), then check the set and write the
   * manifest if it is complete (`finishSet`).
   */
  async complete(driver: Driver, records: readonly ManifestFile[], run: {
    readonly source: string; readonly chunkBytes: number; readonly backupTime?: string; readonly signal?: AbortSignal;
    readonly dropCheckpoint: () => Promise<void>;
  }): Promise<ShardSetReport> {
    const { signal } = run;
    const shard: ShardRecordInfo = { index: this.spec.index, count: this.spec.count, fileListDigest: this.digest, backupFiles: this.all.length };
    const body = { ...buildManifestBody({ kind: 'progress', backup: this.backup, source: run.source, chunkBytes: run.chunkBytes, backupTime: run.backupTime, files: records }), shard };
    await driver.sync({ signal });
    await writeManifestAt(driver, shardRecordKey(this.backup, this.spec), body, { signal, pretty: false });
    await run.dropCheckpoint();
    try {
      return await finishSet(driver, this.backup, this.spec.count, this.all, { ...this.finish, signal });
    } catch (err) {
      if (!(err instanceof OffsiteError && err.code === 'E_LOCKED')) throw err;
      throw new OffsiteError('E_LOCKED', `${errorMessage(err)}; shard ${this.spec.index}/${this.spec.count} is done and recorded, but could not check whether the set is complete: run offsite replicate ${this.backup} --finish once that run is over (or run this index again)`, { kind: 'permanent', cause: err });
    }
  }
}
