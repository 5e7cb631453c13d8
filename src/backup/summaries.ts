/**
 * The backups at a source as summaries: state, counts and sizes, no file list. For the commands
 * that need no more (`list`, and `audit`'s "which backups are complete at the source").
 *
 * Same selection, order and states as `listBackups` (./inspect.ts), but memory never holds more
 * than one backup's listing (issue 13: nightly full backups of 100,000 files each): the listing
 * of the root finds the backups and keeps only their names, then each backup is listed again when
 * its turn comes (`inspectBackupState`: a size per path, no entry per file), one at a time.
 * The price is a second listing of every backup, which costs less than its meta files' reading.
 */
import { throwIfAborted } from '../errors.js';
import type { Driver } from '../drivers/types.js';
import { inspectBackupState, listBackupNames, type BackupInspection, type InspectOptions } from './inspect.js';

export interface BackupSummary extends Omit<BackupInspection, 'files'> {
  /** Objects under `NAME/` (what `files.length` of the inspection was). */
  readonly fileCount: number;
}

/** Inspections in flight at once: one, as each holds a size per file and a meta file (~50 MB of heap at 100,000 files); the rest is reading, which a second one would overlap. */
const SUMMARY_CONCURRENCY = 1;

/** Every backup at the root of `source`, sorted by name, as summaries (see the file comment). */
export async function listBackupSummaries(source: Driver, options: InspectOptions = {}): Promise<BackupSummary[]> {
  throwIfAborted(options.signal, 'listing backups');
  const names = await listBackupNames(source, options.signal, options.onWarning);
  const nowMs = options.nowMs ?? Date.now();
  const results = new Array<BackupSummary | undefined>(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const index = next++;
      const name = names[index] as string;
      // A link leading outside the root that appeared since the first listing: skipped as that listing skips it.
      let refused: string | undefined;
      const summary = await inspectBackupState(source, name, { ...options, nowMs, onRefused: (_key, error) => { refused ??= error.message; } });
      if (refused === undefined) results[index] = summary;
      else options.onWarning?.(`skipped backup ${name}: ${refused}; remove the link (or copy what it points to into the backup)`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(SUMMARY_CONCURRENCY, names.length) }, worker));
  return results.filter((r): r is BackupSummary => r !== undefined);
}
