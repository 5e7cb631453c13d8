/**
 * Waiting for a backup to become complete: what `offsite replicate NAME --wait 10m` and
 * `offsite replicate --latest --wait 10m` (the one-line post-backup hook) do before copying.
 *
 * The source is polled (every `pollIntervalMs`, 5 s by default, sooner when the quiet period of
 * the completion rule is about to run out) and the backup is judged by the completion rule of
 * ../backup/inspect.ts, quiet period included:
 * - `complete`: done, the inspection is returned;
 * - `incomplete` (something changed within the quiet period): keep waiting;
 * - `failed` (quiet, yet meta missing or malformed, or a binlog missing or short; also "no such
 *   backup"): given one more quiet period of grace, because a single large object that is still
 *   being uploaded is invisible on S3 until it is whole; still failed after that, it is an error
 *   naming the reason (waiting longer would not help);
 * - the deadline passes: an error naming the backup, its state and the reason.
 *
 * "The newest backup" (no name given) is the backup folder with the newest last change among
 * *all* backups at the source, complete or not: a post-backup hook must wait for the backup that
 * milvus-backup has just written, not copy the previous one while the new one is still settling.
 * (`offsite replicate --latest` without `--wait` takes the newest *complete* one instead.)
 *
 * Each poll lists the source root once and inspects only the backup waited for (its meta files;
 * never a binlog).
 */
import {
  DEFAULT_QUIET_PERIOD_MS, inspectBackup, inspectListing, listBackupFolders,
  type BackupInspection, type BackupState,
} from '../backup/index.js';
import type { Driver, Entry } from '../drivers/types.js';
import { abortableSleep } from '../drivers/wrappers/sleep.js';
import { BackupError, throwIfAborted } from '../errors.js';
import { formatDuration } from '../config/units.js';

export { formatDuration };

export const DEFAULT_WAIT_POLL_MS = 5_000;
export const DEFAULT_WAIT_PROGRESS_MS = 60_000;

export interface WaitForBackupOptions {
  /** The backup to wait for; undefined: the newest backup at the source (see the module comment). */
  readonly backup?: string;
  /** Give up this long after the start. 0: look once. */
  readonly timeoutMs: number;
  /** Quiet period of the completion rule. @default 60 s */
  readonly quietPeriodMs?: number;
  /** Time between two looks at the source. @default 5 s */
  readonly pollIntervalMs?: number;
  /** Time between two `waiting` reports after the first. @default 60 s */
  readonly progressIntervalMs?: number;
  readonly signal?: AbortSignal;
  /** Told when the wait starts (`first`), every `progressIntervalMs` after, and when it ends. */
  readonly onProgress?: (event: WaitEvent) => void;
}

export type WaitEvent =
  | {
    readonly type: 'waiting';
    /** Undefined when there is no backup at the source at all (newest-backup mode). */
    readonly backup?: string;
    readonly state?: BackupState;
    readonly reason?: string;
    readonly elapsedMs: number;
    readonly timeoutMs: number;
    /** The first report for this backup (the wait started, or a newer backup appeared). */
    readonly first: boolean;
  }
  | { readonly type: 'ready'; readonly backup: string; readonly waitedMs: number };

/**
 * Waits until the backup is complete and returns its inspection (see the module comment).
 * Throws `BackupError` `E_BACKUP_FAILED` / `E_BACKUP_NOT_FOUND` (still failed, or still absent,
 * one quiet period after it was first seen so) or `E_WAIT_TIMEOUT` (the deadline passed);
 * `AbortedError` when `signal` fires; source errors as they come.
 */
export async function waitForBackup(source: Driver, options: WaitForBackupOptions): Promise<BackupInspection> {
  const quietPeriodMs = options.quietPeriodMs ?? DEFAULT_QUIET_PERIOD_MS;
  const pollMs = Math.max(10, options.pollIntervalMs ?? DEFAULT_WAIT_POLL_MS);
  const progressMs = options.progressIntervalMs ?? DEFAULT_WAIT_PROGRESS_MS;
  const { signal } = options;
  const started = Date.now();
  const deadline = started + Math.max(0, options.timeoutMs);
  const what = options.backup === undefined ? 'the newest backup' : `backup ${options.backup}`;

  let target: string | undefined;
  let announced = false;
  let lastReport = 0;
  /** Since when the target has looked failed (or absent); undefined while it does not. */
  let failedSince: number | undefined;

  for (;;) {
    throwIfAborted(signal, `waiting for ${what}`);
    const inspection = options.backup !== undefined
      ? await inspectBackup(source, options.backup, { quietPeriodMs, signal })
      : await inspectNewest(source, quietPeriodMs, signal);
    const now = Date.now();
    if (inspection?.state === 'complete') {
      if (announced) options.onProgress?.({ type: 'ready', backup: inspection.name, waitedMs: now - started });
      return inspection;
    }
    const name = inspection?.name;
    if (name !== target) {
      target = name;
      failedSince = undefined;
      announced = false;
    }
    const hopeless = inspection === undefined || inspection.state === 'failed';
    if (!hopeless) failedSince = undefined;
    else failedSince ??= now;

    if (failedSince !== undefined && now - failedSince >= quietPeriodMs) {
      throw notBecomingComplete(source, options.backup === undefined, inspection, now - started);
    }
    if (now >= deadline) throw timedOut(source, options.backup, inspection, now - started);

    const report = (first: boolean): void => options.onProgress?.({
      type: 'waiting', first, elapsedMs: now - started, timeoutMs: options.timeoutMs,
      ...(inspection ? { backup: inspection.name, state: inspection.state, reason: inspection.reason } : {}),
    });
    if (!announced) {
      announced = true;
      lastReport = now;
      report(true);
    } else if (now - lastReport >= progressMs) {
      lastReport = now;
      report(false);
    }

    let next = now + pollMs;
    if (inspection?.state === 'incomplete') {
      // Nothing can be complete before its last change is a quiet period old: look right then.
      const quietAt = inspection.lastChangeMs + quietPeriodMs + 100;
      if (quietAt > now) next = Math.min(next, Math.max(now + 250, quietAt));
    }
    if (failedSince !== undefined) next = Math.min(next, failedSince + quietPeriodMs + 50);
    next = Math.min(next, deadline);
    await abortableSleep(next - Date.now(), signal, `waiting for ${what}`);
  }
}

/** The newest backup at the source by last change, complete or not; undefined when there is none. */
async function inspectNewest(source: Driver, quietPeriodMs: number, signal?: AbortSignal): Promise<BackupInspection | undefined> {
  const groups = await listBackupFolders(source, signal);
  let newest: { name: string; entries: Entry[]; lastChangeMs: number } | undefined;
  for (const [name, entries] of groups) {
    const lastChangeMs = entries.reduce((max, e) => Math.max(max, e.mtimeMs), 0);
    if (!newest || lastChangeMs > newest.lastChangeMs || (lastChangeMs === newest.lastChangeMs && name > newest.name)) {
      newest = { name, entries, lastChangeMs };
    }
  }
  if (!newest) return undefined;
  return inspectListing(source, newest.name, newest.entries, { quietPeriodMs, signal });
}

function notBecomingComplete(source: Driver, newest: boolean, inspection: BackupInspection | undefined, elapsedMs: number): BackupError {
  if (inspection === undefined) {
    return new BackupError('E_BACKUP_NOT_FOUND', `no backup at the source (${source.description}) after waiting ${formatDuration(elapsedMs)}; check the source settings and that milvus-backup writes there`, { kind: 'not-found' });
  }
  if (inspection.files.length === 0) {
    return new BackupError('E_BACKUP_NOT_FOUND', `backup ${inspection.name} not found at the source (${source.description}): no objects under ${inspection.name}/ after waiting ${formatDuration(elapsedMs)}; check the name with offsite list`, { kind: 'not-found' });
  }
  const which = newest ? `the newest backup, ${inspection.name},` : `backup ${inspection.name}`;
  return new BackupError('E_BACKUP_FAILED', `${which} will not become complete: ${inspection.reason ?? 'failed'} (no change for longer than the quiet period); see milvus-backup's log, then re-run the backup or replicate another one by name (offsite list)`);
}

function timedOut(source: Driver, name: string | undefined, inspection: BackupInspection | undefined, elapsedMs: number): BackupError {
  const waited = formatDuration(elapsedMs);
  if (inspection === undefined) {
    return new BackupError('E_WAIT_TIMEOUT', `gave up after ${waited}: no backup at the source (${source.description}) yet; wait longer (--wait) or check that milvus-backup writes there`);
  }
  const label = name === undefined ? `the newest backup, ${inspection.name}` : `backup ${inspection.name}`;
  return new BackupError('E_WAIT_TIMEOUT', `gave up after ${waited} waiting for ${label}: still ${inspection.state} (${inspection.reason ?? 'no reason given'}); wait longer (--wait), or see offsite list and milvus-backup's log`);
}

