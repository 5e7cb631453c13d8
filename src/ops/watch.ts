/**
 * `offsite watch`: keeps running, polls the source, and replicates every backup that becomes
 * complete to every destination, once.
 *
 * Each poll lists the source root once. A backup folder seen for the first time, or whose
 * listing changed (object count, bytes or newest mtime), or that was still settling, is judged
 * by the completion rule (../backup/inspect.ts, quiet period included; its meta files are
 * read); the others keep their earlier verdict. Then, for every complete backup, oldest first,
 * and every destination not yet known to be done with it, the destination is done when it
 * holds a valid manifest for it (`NAME/.offsite/manifest.json`), or when `offsite prune` removed
 * it from there (its `.offsite/pruned.json`, ./state.ts): a pruned backup is never copied back.
 * The destinations that lack it get it from one `replicate` call (../core/replicate.ts, the
 * engine behind `offsite replicate`: read once, fanned out, resumable).
 *
 * What is known done is kept in memory, so a steady-state poll costs one listing of the source
 * and nothing at the destinations. Nothing else is kept: after a restart the manifests at the
 * destinations say what is there, and a restarted watch copies nothing twice (an interrupted
 * copy is resumed, not restarted).
 *
 * A destination that fails (unreachable, full, refusing) does not hold up the others: it is
 * left out until its retry time, which grows with each consecutive failure (one poll interval,
 * then doubling, capped at `maxRetryDelayMs`), and it gets the backups it missed once it works
 * again. A source that cannot be listed is retried the same way.
 *
 * Stopping: when `signal` fires, the current copy is aborted (what was copied stays resumable;
 * the next run continues it) and `watchBackups` returns normally.
 */
import type { BackupInspection, BackupState } from '../backup/index.js';
import { inspectListing } from '../backup/index.js';
import { replicate } from '../core/replicate.js';
import type { ReusePolicy } from '../config/config.js';
import type { Driver, Entry } from '../drivers/types.js';
import { abortableSleep } from '../drivers/wrappers/sleep.js';
import { errorKind, errorMessage } from '../errors.js';
import { manifestKey } from '../manifest/manifest.js';
import { streamManifestAt } from '../manifest/read.js';
import { readPruned } from './state.js';
import { listBackupFolders } from '../backup/index.js';

export const DEFAULT_WATCH_INTERVAL_MS = 60_000;
/** Longest wait before a failing destination or source is tried again (unless the interval is longer). */
export const DEFAULT_MAX_RETRY_DELAY_MS = 15 * 60_000;

export interface WatchOptions {
  readonly source: Driver;
  readonly destinations: readonly Driver[];
  /** Time between two polls of the source. @default 1 min */
  readonly intervalMs?: number;
  /** One pass, then return (failures are not retried). */
  readonly once?: boolean;
  /** Quiet period of the completion rule. @default 60 s */
  readonly quietPeriodMs?: number;
  readonly chunkBytes?: number;
  /** Files transferred at once. @default 8 */
  readonly fileConcurrency?: number;
  /** Cap of the growing delay before a failing destination is tried again. @default max(15 min, intervalMs) */
  readonly maxRetryDelayMs?: number;
  /** Each destination's `reuse` policy (src/core/replicate.ts `ReplicateOptions.reuse`). @default no reuse */
  readonly reuse?: Readonly<Record<string, ReusePolicy>>;
  /** `ReplicateOptions.trustSourceEtags` (the source's `trustEtags` key). @default false */
  readonly trustSourceEtags?: boolean;
  /** `ReplicateOptions.memoryBudgetBytes` (`options.memoryBudget`). @default the engine's */
  readonly memoryBudgetBytes?: number;
  /** `ReplicateOptions.manifestCacheDir`. @default none */
  readonly manifestCacheDir?: string;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: WatchEvent) => void;
}

/** One line of the watch log. Destination lists keep the order of `destinations`. */
export type WatchEvent =
  | { readonly event: 'start'; readonly source: string; readonly destinations: readonly string[]; readonly intervalMs: number; readonly once: boolean }
  /** A backup not complete yet (changed within the quiet period); reported once, when first seen so. */
  | { readonly event: 'waiting'; readonly backup: string; readonly reason: string }
  /** A backup that will not become complete by waiting; not replicated unless it changes. Reported once per change. */
  | { readonly event: 'not-complete'; readonly backup: string; readonly reason: string }
  /** Destinations found done for a backup without copying: a valid manifest, or pruned there. */
  | { readonly event: 'present'; readonly backup: string; readonly present: readonly string[]; readonly pruned: readonly string[] }
  | { readonly event: 'copying'; readonly backup: string; readonly destinations: readonly string[] }
  | {
    readonly event: 'copied'; readonly backup: string; readonly destination: string; readonly status: 'complete' | 'up-to-date';
    readonly filesCopied: number; readonly filesAdopted: number; readonly filesSkipped: number; readonly bytesWritten: number; readonly durationMs: number;
    /** Files created by a server-side copy of an earlier copy's file, and their bytes (not sent). */
    readonly filesReused: number; readonly bytesReused: number;
  }
  /** A destination failed (for `backup` when set); retried in `retryInMs` (absent with `once`). */
  | { readonly event: 'failed'; readonly destination: string; readonly backup?: string; readonly message: string; readonly retryInMs?: number }
  /** The source could not be listed, or a backup could not be read from it. */
  | { readonly event: 'source-failed'; readonly backup?: string; readonly message: string; readonly retryInMs?: number }
  /** Something at the source is skipped (a folder name milvus-backup never makes, a symlink leading outside the root); reported once. */
  | { readonly event: 'warning'; readonly message: string }
  /** `interrupted`: the backup whose copy the stop cut short (it resumes on the next run). */
  | {
    readonly event: 'stop'; readonly reason: 'signal' | 'once'; readonly copies: number; readonly failing: readonly string[];
    readonly sourceFailing: boolean; readonly interrupted?: string;
  };

export interface WatchSummary {
  readonly stoppedBy: 'signal' | 'once';
  /** Copies completed (backup x destination) during this run. */
  readonly copies: number;
  /** Destinations whose last attempt failed (and have not worked since). */
  readonly failing: readonly string[];
  /** The last listing of the source failed, or a backup could not be read from it. */
  readonly sourceFailing: boolean;
  readonly destinations: number;
}

/** What is remembered of a backup between polls (not its file list: memory stays small). */
interface Seen {
  readonly signature: string;
  readonly state: BackupState;
  readonly lastChangeMs: number;
}

interface Health {
  failures: number;
  retryAt: number;
}

/** Runs the watch loop until `signal` fires (or after one pass with `once`). See the module comment. */
export async function watchBackups(options: WatchOptions): Promise<WatchSummary> {
  const { source, destinations, signal } = options;
  const intervalMs = Math.max(10, options.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS);
  const maxDelayMs = options.maxRetryDelayMs ?? Math.max(DEFAULT_MAX_RETRY_DELAY_MS, intervalMs);
  const once = options.once ?? false;
  const emit = (event: WatchEvent): void => options.onEvent?.(event);

  const seen = new Map<string, Seen>();
  /** Backup name -> destinations known to hold it (or to have pruned it). */
  const done = new Map<string, Set<string>>();
  const health = new Map<string, Health>(destinations.map((d) => [d.name, { failures: 0, retryAt: 0 }]));
  const sourceHealth: Health = { failures: 0, retryAt: 0 };
  /** Backups whose replication failed on the source side, with their own retry time. */
  const backupHealth = new Map<string, Health>();
  let copies = 0;
  let interrupted: string | undefined;
  const warned = new Set<string>();
  const warn = (message: string): void => {
    if (warned.has(message)) return;
    warned.add(message);
    emit({ event: 'warning', message });
  };

  const delayAfter = (failures: number): number => Math.min(maxDelayMs, intervalMs * 2 ** Math.min(30, failures - 1));
  const destinationFailed = (d: Driver, err: unknown, backup?: string): void => {
    const h = health.get(d.name) as Health;
    h.failures++;
    const delay = delayAfter(h.failures);
    h.retryAt = Date.now() + delay;
    emit({ event: 'failed', destination: d.name, ...(backup ? { backup } : {}), message: errorMessage(err), ...(once ? {} : { retryInMs: delay }) });
  };
  const destinationWorks = (d: Driver): void => {
    const h = health.get(d.name) as Health;
    h.failures = 0;
    h.retryAt = 0;
  };
  const sourceFailed = (h: Health, err: unknown, backup?: string): void => {
    h.failures++;
    const delay = delayAfter(h.failures);
    h.retryAt = Date.now() + delay;
    emit({ event: 'source-failed', ...(backup ? { backup } : {}), message: errorMessage(err), ...(once ? {} : { retryInMs: delay }) });
  };
  const markDone = (backup: string, destination: string): void => {
    let set = done.get(backup);
    if (!set) done.set(backup, set = new Set());
    set.add(destination);
  };
  const inOrder = (names: readonly string[]): string[] => destinations.map((d) => d.name).filter((n) => names.includes(n));

  /** Judges every backup folder at the source; returns the complete ones, oldest first. */
  const judge = async (groups: Map<string, Entry[]>): Promise<{ name: string; lastChangeMs: number }[]> => {
    for (const name of [...seen.keys()]) {
      if (!groups.has(name)) { seen.delete(name); done.delete(name); backupHealth.delete(name); }
    }
    const complete: { name: string; lastChangeMs: number }[] = [];
    for (const [name, entries] of groups) {
      const signature = signatureOf(entries);
      const before = seen.get(name);
      let now: Seen;
      if (before && before.signature === signature && before.state !== 'incomplete') {
        now = before;
      } else {
        const inspection: BackupInspection = await inspectListing(source, name, entries, { quietPeriodMs: options.quietPeriodMs, signal });
        now = { signature, state: inspection.state, lastChangeMs: inspection.lastChangeMs };
        const reason = inspection.reason ?? inspection.state;
        if (now.state === 'incomplete' && before?.state !== 'incomplete') emit({ event: 'waiting', backup: name, reason });
        if (now.state === 'failed') emit({ event: 'not-complete', backup: name, reason });
        if (before?.signature !== signature) backupHealth.delete(name);
        seen.set(name, now);
      }
      if (now.state === 'complete') complete.push({ name, lastChangeMs: now.lastChangeMs });
    }
    return complete.sort((a, b) => a.lastChangeMs - b.lastChangeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  };

  /** Brings one complete backup to every destination that lacks it (and is not resting after a failure). */
  const bring = async (backup: string, pruned: (d: Driver) => Promise<Map<string, string>>): Promise<void> => {
    const have = done.get(backup);
    const bh = backupHealth.get(backup);
    if (bh && Date.now() < bh.retryAt) return;
    const ready = destinations.filter((d) => !have?.has(d.name) && Date.now() >= (health.get(d.name) as Health).retryAt);
    if (ready.length === 0) return;

    const present: string[] = [];
    const prunedThere: string[] = [];
    const need: Driver[] = [];
    await Promise.all(ready.map(async (d) => {
      try {
        if (await hasValidManifest(d, backup, signal)) present.push(d.name);
        else if ((await pruned(d)).has(backup)) prunedThere.push(d.name);
        else { need.push(d); return; }
        markDone(backup, d.name);
        destinationWorks(d);
      } catch (err) {
        if (!signal?.aborted) destinationFailed(d, err, backup);
      }
    }));
    if (signal?.aborted) return;
    if (present.length + prunedThere.length > 0) emit({ event: 'present', backup, present: inOrder(present), pruned: inOrder(prunedThere) });
    if (need.length === 0) return;

    const targets = destinations.filter((d) => need.includes(d));
    emit({ event: 'copying', backup, destinations: targets.map((d) => d.name) });
    const started = Date.now();
    let result;
    try {
      result = await replicate({
        source, backup, destinations: targets, chunkBytes: options.chunkBytes, fileConcurrency: options.fileConcurrency,
        quietPeriodMs: options.quietPeriodMs, reuse: options.reuse, trustSourceEtags: options.trustSourceEtags,
        memoryBudgetBytes: options.memoryBudgetBytes, manifestCacheDir: options.manifestCacheDir, signal,
      });
    } catch (err) {
      if (signal?.aborted) { interrupted = backup; return; }
      // Thrown, not per destination: the backup could not be read (changed since the listing,
      // source unreachable...). Judge it afresh next time; retry it with a growing delay.
      seen.delete(backup);
      let h = backupHealth.get(backup);
      if (!h) backupHealth.set(backup, h = { failures: 0, retryAt: 0 });
      sourceFailed(h, err, backup);
      return;
    }
    backupHealth.delete(backup);
    if (signal?.aborted && result.destinations.some((r) => r.status === 'failed')) interrupted = backup;
    for (const r of result.destinations) {
      const d = targets.find((t) => t.name === r.name);
      if (!d) continue;
      if (r.status === 'complete' || r.status === 'up-to-date') {
        markDone(backup, d.name);
        destinationWorks(d);
        if (r.status === 'complete') copies++;
        emit({
          event: 'copied', backup, destination: d.name, status: r.status, filesCopied: r.filesCopied, filesAdopted: r.filesAdopted,
          filesSkipped: r.filesSkipped, bytesWritten: r.bytesWritten, durationMs: Date.now() - started, filesReused: r.filesReused, bytesReused: r.bytesReused,
        });
      } else if (!signal?.aborted) {
        const first = r.errors[0];
        destinationFailed(d, new Error(first ? `${first.path ? `${first.path}: ` : ''}${first.message}` : 'failed'), backup);
      }
    }
  };

  const pass = async (): Promise<void> => {
    if (Date.now() < sourceHealth.retryAt) return;
    let complete: { name: string }[];
    try {
      complete = await judge(await listBackupFolders(source, signal, warn));
      sourceHealth.failures = 0;
      sourceHealth.retryAt = 0;
    } catch (err) {
      if (signal?.aborted) return;
      if (once) throw err;
      sourceFailed(sourceHealth, err);
      return;
    }
    // Each destination's pruned record is read at most once per pass, and only when needed.
    const prunedRecords = new Map<string, Promise<Map<string, string>>>();
    const pruned = (d: Driver): Promise<Map<string, string>> => {
      let record = prunedRecords.get(d.name);
      if (!record) prunedRecords.set(d.name, record = readPruned(d, signal));
      return record;
    };
    for (const { name } of complete) {
      if (signal?.aborted) return;
      await bring(name, pruned);
    }
  };

  emit({ event: 'start', source: source.description, destinations: destinations.map((d) => d.name), intervalMs, once });
  for (;;) {
    await pass();
    if (once || signal?.aborted) break;
    try {
      await abortableSleep(intervalMs, signal, 'watch');
    } catch (err) {
      if (signal?.aborted) break;
      throw err;
    }
  }
  const failing = destinations.filter((d) => (health.get(d.name) as Health).failures > 0).map((d) => d.name);
  const sourceFailing = sourceHealth.failures > 0 || [...backupHealth.values()].some((h) => h.failures > 0);
  const stoppedBy = signal?.aborted ? 'signal' : 'once';
  emit({ event: 'stop', reason: stoppedBy, copies, failing, sourceFailing, ...(interrupted ? { interrupted } : {}) });
  return { stoppedBy, copies, failing, sourceFailing, destinations: destinations.length };
}

/** A valid manifest for `backup` at `d`? A damaged one counts as absent (replicate replaces it). */
async function hasValidManifest(d: Driver, backup: string, signal?: AbortSignal): Promise<boolean> {
  try {
    return (await streamManifestAt(d, manifestKey(backup), { signal })) !== undefined;
  } catch (err) {
    if (errorKind(err) === 'integrity') return false;
    throw err;
  }
}

/** Changes whenever an object under the backup is added, removed, resized or rewritten. */
function signatureOf(entries: readonly Entry[]): string {
  let bytes = 0;
  let newest = 0;
  for (const e of entries) {
    bytes += e.size;
    if (e.mtimeMs > newest) newest = e.mtimeMs;
  }
  return `${entries.length}:${bytes}:${newest}`;
}
