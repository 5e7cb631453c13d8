/**
 * `offsite prune`: removes backup copies at destinations by a retention policy (restic's
 * `forget --keep-*` semantics, see ./retention.ts). Never at the source.
 *
 * Per destination (all destinations concurrently; one failing does not stop the others):
 *
 * 1. List the copies (`listCopies`). Only complete copies take part in the policy: a copy whose
 *    manifest is present and verifies (its digest) and names this backup. Its time is the
 *    manifest's `backupTime`, else the time in a milvus-backup name (`backup_YYYY_MM_DD_…`,
 *    UTC), else the manifest's `createdAt`.
 * 2. Never touched, only reported as skipped: copies without a manifest (a replicate running
 *    or interrupted), copies whose manifest is damaged or names another backup, and copies
 *    whose lock is held by a live offsite run. Leaving a copy out of the policy only ever makes
 *    the policy keep more of the others, never fewer.
 * 3. Apply the policy; for each copy to remove, in this order:
 *    take the copy's lock (held by a live run: skip it) ->
 *    write the tombstone `NAME/.offsite/pruning.json` ->
 *    delete `NAME/.offsite/manifest.json` FIRST (from here on the copy no longer counts as
 *    complete anywhere: list, verify, replicate, audit) ->
 *    delete `NAME/.offsite/progress.json` -> delete every other object under `NAME/` (listed in
 *    batches, so memory does not grow with the backup) -> delete the tombstone -> release the lock.
 *    A copy under S3 Object Lock (destination option `objectLock`) whose lock has not passed is
 *    not touched at all: it is reported as skipped, "kept until DATE (locked)", and removed by
 *    the first prune after that date (it stays one the policy removes). The driver deletes every
 *    version of what it removes (a versioned bucket), and refuses a key still locked.
 * 4. Record the removed names in the destination's `.offsite/pruned.json` (`addPruned`), so
 *    that `offsite watch` never copies them there again.
 *
 * An interrupted prune (crash, Ctrl-C, a file that cannot be deleted) therefore never leaves a
 * copy that looks complete. It leaves a copy without a manifest but with the tombstone; the next
 * prune recognises the tombstone and finishes the removal, whatever the policy. A tombstone next
 * to a manifest (the backup was replicated there again since) is stale and is removed.
 *
 * `dryRun` computes the same plan and deletes nothing, writes nothing, takes no lock.
 */
import { withRuntime, type TransferOptions } from '../runtime/drivers.js';
import { refuseOverlaps } from '../runtime/overlap.js';
import { backupTimeFromName } from '../backup/names.js';
import type { OffsiteConfig } from '../config/config.js';
import { acquireLock, lockKey, type HeldLock } from '../core/lock.js';
import type { Driver } from '../drivers/types.js';
import { AbortedError, errorMessage, OffsiteError, throwIfAborted } from '../errors.js';
import { ManifestError, manifestKey, OFFSITE_DIR, progressKey } from '../manifest/manifest.js';
import { streamManifestAt, type ManifestSummary } from '../manifest/read.js';
import { listCopies, type CopyListing } from './copies.js';
import { lockDate } from '../drivers/object-store/object-lock.js';
import { retainedUntil } from './object-locks.js';
import { applyRetention, describePolicy, checkPolicy, type RetentionPolicy } from './retention.js';
import { addPruned, writeRecord } from './state.js';

/** Marks a copy whose removal has started; see the file comment. */
export function tombstoneKey(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/pruning.json`;
}

export interface PruneOptions extends TransferOptions {
  /** Destination names; all configured ones when empty or absent. */
  readonly at?: readonly string[];
  readonly policy: RetentionPolicy;
  /** Plan only: delete nothing, write nothing. */
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
  /** "Now" for `keepWithin` and the pruned record. @default new Date() */
  readonly now?: Date;
  /** Bucket days/weeks/months in UTC instead of the process's local time zone. @default false */
  readonly utc?: boolean;
  /** Told when a copy has been removed (or its removal failed), as it happens. */
  readonly onRemoved?: (event: PruneEvent) => void;
  /** Told what the listing of a destination skipped (a stray symlink leading outside its root). */
  readonly onWarning?: (message: string) => void;
}

/** Where a copy's time came from. */
export type TimeSource = 'backupTime' | 'name' | 'createdAt';

export interface PruneEvent {
  readonly destination: string;
  readonly name: string;
  /** Absent when the copy was removed; the error message otherwise. */
  readonly error?: string;
}

export interface PruneKept {
  readonly name: string;
  /** ISO. */
  readonly time: string;
  readonly timeSource: TimeSource;
  /** restic's wording: `daily snapshot`, `oldest monthly snapshot`, `within 30d`... */
  readonly reasons: readonly string[];
  readonly files: number;
  readonly bytes: number;
}

export interface PruneRemoved {
  readonly name: string;
  /** ISO; absent for the leftover of an interrupted prune (its manifest is already gone). */
  readonly time?: string;
  readonly timeSource?: TimeSource;
  readonly files: number;
  readonly bytes: number;
  /** The leftover of an earlier, interrupted prune (found by its tombstone), finished now. */
  readonly finishing?: boolean;
  /** Another offsite run holds the copy's lock now (reported in dry runs only: a real run skips it). */
  readonly lockPresent?: boolean;
}

export interface PruneSkipped {
  readonly name: string;
  /**
   * incomplete: no manifest; damaged: manifest unreadable or for another backup; locked: a live
   * run holds the lock; retained: the policy removes it, but an object of it is under S3 Object
   * Lock until `retainedUntil` (the first prune after that date removes it).
   */
  readonly reason: 'incomplete' | 'damaged' | 'locked' | 'retained';
  readonly message: string;
  /** ISO: when the last Object Lock of the copy ends (reason `retained`). */
  readonly retainedUntil?: string;
}

export interface PruneError {
  /** The copy concerned, when the error is about one copy. */
  readonly name?: string;
  readonly message: string;
  /** True when the copy's manifest was already deleted: it is incomplete now; run prune again. */
  readonly manifestRemoved?: boolean;
}

export interface PruneDestinationResult {
  readonly destination: string;
  /** Where it points (no secrets). */
  readonly description: string;
  /** ok: every planned removal done (skipped copies do not count as failures); failed: see errors. */
  readonly status: 'ok' | 'failed';
  /** Newest first. */
  readonly kept: readonly PruneKept[];
  /** Removed (or, in a dry run, to be removed), newest first. */
  readonly removed: readonly PruneRemoved[];
  readonly skipped: readonly PruneSkipped[];
  readonly errors: readonly PruneError[];
}

export interface PruneResult {
  readonly dryRun: boolean;
  /** The policy in words, e.g. `keep 7 daily, 4 weekly snapshots`. */
  readonly policy: string;
  readonly destinations: readonly PruneDestinationResult[];
}

/** Runs `fn` over `items` with at most `limit` at once; stops starting new ones after the first failure, then throws it. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const failure: { error?: unknown } = {};
  const worker = async (): Promise<void> => {
    while (!('error' in failure) && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        if (!('error' in failure)) failure.error = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if ('error' in failure) throw failure.error;
}

/** The time retention goes by, and where it came from (also audit's, for Object Lock: ./audit-locks.ts). */
export function copyTime(name: string, manifest: ManifestSummary): { time: Date; source: TimeSource } | undefined {
  const fromManifest = manifest.backupTime === undefined ? undefined : new Date(manifest.backupTime);
  if (fromManifest && !Number.isNaN(fromManifest.getTime())) return { time: fromManifest, source: 'backupTime' };
  const fromName = backupTimeFromName(name);
  if (fromName) return { time: fromName, source: 'name' };
  const created = new Date(manifest.createdAt);
  return Number.isNaN(created.getTime()) ? undefined : { time: created, source: 'createdAt' };
}

const LIST_BATCH = 1000;

/**
 * Deletes every object under `NAME/` except `keep`, in batches of listed keys: list up to
 * LIST_BATCH keys, delete them, list again, until nothing else is left. A key that is listed
 * again after its delete succeeded is an error (something keeps writing there).
 */
async function deleteTree(driver: Driver, backup: string, keep: ReadonlySet<string>, concurrency: number, signal?: AbortSignal): Promise<void> {
  let previous = new Set<string>();
  for (;;) {
    throwIfAborted(signal, `${driver.name}: prune ${backup}`);
    const batch: string[] = [];
    for await (const entry of driver.list(`${backup}/`, { signal })) {
      if (keep.has(entry.key)) continue;
      batch.push(entry.key);
      if (batch.length >= LIST_BATCH) break;
    }
    if (batch.length === 0) return;
    const back = batch.find((key) => previous.has(key));
    if (back !== undefined) {
      throw new OffsiteError('E_PRUNE', `${driver.name}: ${back} is still there after it was deleted (is something writing to ${backup}/?)`, { kind: 'permanent' });
    }
    await forEachLimit(batch, concurrency, (key) => driver.delete(key, { signal }));
    previous = new Set(batch);
  }
}

interface Candidate {
  readonly copy: CopyListing;
  readonly time: Date;
  readonly timeSource: TimeSource;
}

/**
 * The copies among `names` that cannot be removed yet because an object of theirs is under S3
 * Object Lock (./object-locks.ts), each as its skip record. A copy whose lock cannot be read is
 * an error in `errors` (and is not removed).
 */
async function retainedCopies(driver: Driver, names: readonly string[], options: PruneOptions, errors: PruneError[]): Promise<Map<string, PruneSkipped>> {
  const out = new Map<string, PruneSkipped>();
  if (driver.objectLock === undefined) return out;
  const nowMs = (options.now ?? new Date()).getTime();
  for (const name of names) {
    try {
      const held = await retainedUntil(driver, name, nowMs, options.signal);
      if (held === undefined) continue;
      const until = new Date(held.untilMs).toISOString();
      out.set(name, {
        name, reason: 'retained', retainedUntil: until,
        message: `kept until ${lockDate(held.untilMs)} (locked: S3 Object Lock ${held.mode}); the first prune after that date removes it`,
      });
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      errors.push({ name, message: `could not read its Object Lock state: ${errorMessage(err)}; not removed` });
    }
  }
  return out;
}

/**
 * Plans (and unless dryRun, carries out) the prune of one destination. `confirmApart` is called
 * right before the first delete: it rejects when the destination cannot be shown to be apart
 * from the source and the other destinations, and then nothing is deleted there. Reports
 * failures in the result; throws only when aborted or on an internal error.
 */
async function pruneDestination(driver: Driver, options: PruneOptions, concurrency: number, confirmApart: () => Promise<void>): Promise<PruneDestinationResult> {
  const { signal } = options;
  const kept: PruneKept[] = [];
  const removed: PruneRemoved[] = [];
  const skipped: PruneSkipped[] = [];
  const errors: PruneError[] = [];
  const result = (): PruneDestinationResult => ({
    destination: driver.name, description: driver.description, status: errors.length === 0 ? 'ok' : 'failed', kept, removed, skipped, errors,
  });

  let copies: CopyListing[];
  try {
    copies = await listCopies(driver, signal, options.onWarning);
  } catch (err) {
    errors.push({ message: `could not list the copies: ${errorMessage(err)}` });
    return result();
  }

  // 1. Classify every copy: candidate for the policy, leftover of an interrupted prune, or skipped.
  const candidates: Candidate[] = [];
  const leftovers: CopyListing[] = [];
  const staleTombstones: string[] = [];
  await forEachLimit(copies, 4, async (copy) => {
    try {
      if (!copy.hasManifest) {
        if (await driver.stat(tombstoneKey(copy.name), { signal })) {
          leftovers.push(copy);
        } else {
          const why = copy.hasLock || copy.hasProgress ? 'a replicate is running there or was interrupted' : 'files without a manifest';
          skipped.push({ name: copy.name, reason: 'incomplete', message: `no manifest (${why}): an incomplete copy is never pruned; finish it with offsite replicate ${copy.name} --to ${driver.name}, or delete it by hand` });
        }
        return;
      }
      let manifest: ManifestSummary | undefined;
      try {
        // Streamed: read whole and its digest checked; only its fields are kept.
        manifest = await streamManifestAt(driver, manifestKey(copy.name), { signal });
      } catch (err) {
        if (!(err instanceof ManifestError)) throw err;
        skipped.push({ name: copy.name, reason: 'damaged', message: `${errorMessage(err)}; a copy with a damaged manifest is never pruned: check it with offsite verify ${copy.name} --at ${driver.name}` });
        return;
      }
      if (!manifest) {
        skipped.push({ name: copy.name, reason: 'incomplete', message: 'its manifest disappeared while prune was looking (another run is changing it); not pruned' });
        return;
      }
      if (manifest.kind !== 'complete') {
        skipped.push({ name: copy.name, reason: 'damaged', message: `its manifest is of kind "${String(manifest.kind)}", not "complete"; never pruned` });
        return;
      }
      if (manifest.backup !== copy.name) {
        skipped.push({ name: copy.name, reason: 'damaged', message: `its manifest is for backup "${manifest.backup}", not "${copy.name}" (renamed by hand?); never pruned` });
        return;
      }
      const time = copyTime(copy.name, manifest);
      if (!time) {
        skipped.push({ name: copy.name, reason: 'damaged', message: 'its manifest has no valid time and its name carries none; never pruned' });
        return;
      }
      candidates.push({ copy, time: time.time, timeSource: time.source });
      if (!options.dryRun && await driver.stat(tombstoneKey(copy.name), { signal })) staleTombstones.push(copy.name);
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      // Leaving this copy out of the policy can only make it keep more of the others.
      errors.push({ name: copy.name, message: `could not read its manifest: ${errorMessage(err)}; left out of this prune` });
    }
  }).catch((err: unknown) => { errors.push({ message: errorMessage(err) }); });
  if (signal?.aborted) return result();

  // 2. The policy.
  const byName = new Map(candidates.map((c) => [c.copy.name, c]));
  const decisions = applyRetention(candidates.map((c) => ({ name: c.copy.name, time: c.time })), options.policy, { utc: options.utc, now: options.now });
  const toRemove: { copy: CopyListing; time?: Date; timeSource?: TimeSource; finishing: boolean }[] = [];
  for (const d of decisions) {
    const c = byName.get(d.name) as Candidate;
    if (d.keep) kept.push({ name: d.name, time: d.time.toISOString(), timeSource: c.timeSource, reasons: d.reasons, files: c.copy.files, bytes: c.copy.bytes });
    else toRemove.push({ copy: c.copy, time: d.time, timeSource: c.timeSource, finishing: false });
  }
  if (decisions.length > 0 && kept.length === 0) {
    // applyRetention keeps the newest for every non-empty policy; never remove every copy.
    throw new OffsiteError('E_INTERNAL', `${driver.name}: the policy would remove every copy; refusing (please report it)`, { kind: 'fatal' });
  }
  for (const copy of leftovers.sort((a, b) => (a.name < b.name ? 1 : -1))) toRemove.push({ copy, finishing: true });
  skipped.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));

  const describe = (r: (typeof toRemove)[number], extra: Partial<PruneRemoved> = {}): PruneRemoved => ({
    name: r.copy.name, ...(r.time ? { time: r.time.toISOString(), timeSource: r.timeSource } : {}),
    files: r.copy.files, bytes: r.copy.bytes, ...(r.finishing ? { finishing: true } : {}), ...extra,
  });

  // Copies under S3 Object Lock are kept until their lock has passed: never even tried.
  const retained = await retainedCopies(driver, toRemove.map((r) => r.copy.name), options, errors);
  for (const skip of retained.values()) skipped.push(skip);
  skipped.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  const removable = toRemove.filter((r) => !retained.has(r.copy.name) && !errors.some((e) => e.name === r.copy.name));

  if (options.dryRun) {
    for (const r of removable) removed.push(describe(r, r.copy.hasLock ? { lockPresent: true } : {}));
    return result();
  }

  // Never at the source: check again, by identity, right before deleting (a symlink or a mount
  // may have changed since the command started).
  try {
    await confirmApart();
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    errors.push({ message: `${errorMessage(err)}; nothing was deleted at ${driver.name}` });
    return result();
  }

  // 3. Stale tombstones next to a manifest (replicated again after an interrupted prune).
  for (const name of staleTombstones) {
    if (!kept.some((k) => k.name === name)) continue;
    try {
      const lock = await acquireLock(driver, name, { signal });
      try { await driver.delete(tombstoneKey(name), { signal }); } finally { await lock.release(); }
    } catch (err) {
      if (err instanceof OffsiteError && err.code === 'E_LOCKED') continue; // harmless: next time
      errors.push({ name, message: `could not remove the stale ${tombstoneKey(name)}: ${errorMessage(err)}` });
    }
  }

  // 4. Remove, one copy after the other, manifest first.
  const recorded: string[] = [];
  for (const r of removable) {
    if (signal?.aborted) break;
    const name = r.copy.name;
    let lock: HeldLock;
    try {
      lock = await acquireLock(driver, name, { signal });
    } catch (err) {
      if (err instanceof OffsiteError && err.code === 'E_LOCKED') {
        skipped.push({ name, reason: 'locked', message: `${errorMessage(err)}; not pruned this time` });
      } else {
        const message = `could not lock it for removal: ${errorMessage(err)}`;
        errors.push({ name, message, manifestRemoved: r.finishing });
        options.onRemoved?.({ destination: driver.name, name, error: message });
      }
      continue;
    }
    let manifestRemoved = r.finishing;
    try {
      if (!r.finishing) {
        await writeRecord(driver, tombstoneKey(name), { pruning: name, startedAt: new Date().toISOString(), policy: describePolicy(options.policy) }, signal);
        await driver.delete(manifestKey(name), { signal });
        manifestRemoved = true;
      }
      await driver.delete(progressKey(name), { signal });
      await deleteTree(driver, name, new Set([lockKey(name), tombstoneKey(name)]), concurrency, signal);
      await driver.delete(tombstoneKey(name), { signal });
      removed.push(describe(r));
      recorded.push(name);
      options.onRemoved?.({ destination: driver.name, name });
    } catch (err) {
      if (manifestRemoved) recorded.push(name);
      const message = manifestRemoved
        ? `removal stopped after its manifest was deleted: ${errorMessage(err)}; the copy no longer counts as complete; run offsite prune again to finish it`
        : `could not start its removal: ${errorMessage(err)}; the copy is untouched`;
      errors.push({ name, message, manifestRemoved });
      options.onRemoved?.({ destination: driver.name, name, error: message });
    } finally {
      await lock.release();
    }
  }

  // 5. So that watch never copies them here again (also the ones whose removal stopped half-way:
  //    they are no longer complete, and the next prune finishes them).
  try {
    // No signal: after Ctrl-C this small write must still happen, or watch could copy them again.
    await addPruned(driver, recorded, options.now ?? new Date());
  } catch (err) {
    errors.push({ message: `could not record the pruned backups in ${OFFSITE_DIR}/pruned.json: ${errorMessage(err)}` });
  }
  return result();
}

/**
 * `offsite prune`: applies `policy` to the complete copies at each destination (concurrently)
 * and removes the others (unless `dryRun`). Throws only for bad usage or config (empty policy,
 * unknown destination, a destination overlapping the source) or when aborted; everything else
 * is reported per destination.
 */
export async function pruneCommand(config: OffsiteConfig, options: PruneOptions): Promise<PruneResult> {
  checkPolicy(options.policy);
  return withRuntime(config, options, async (runtime) => {
    // Refuses a destination that overlaps the source or another destination (exit 2).
    const destinations = await runtime.destinations(options.at ?? []);
    const source = await runtime.source();
    const confirmApart = (driver: Driver) => (): Promise<void> => refuseOverlaps(config, [driver, ...destinations.filter((d) => d !== driver)], { source, signal: options.signal, strict: true });
    const results = await Promise.all(destinations.map(async (driver) => {
      try {
        return await pruneDestination(driver, options, config.settings.concurrency, confirmApart(driver));
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        return { destination: driver.name, description: driver.description, status: 'failed', kept: [], removed: [], skipped: [], errors: [{ message: errorMessage(err) }] } satisfies PruneDestinationResult;
      }
    }));
    throwIfAborted(options.signal, 'prune');
    return { dryRun: options.dryRun ?? false, policy: describePolicy(options.policy), destinations: results };
  });
}
