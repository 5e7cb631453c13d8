/**
 * The backups at a source as summaries: state, counts and sizes, no file list. For the commands
 * that need no more (`list`, and `audit`'s "which backups are complete at the source").
 *
 * Same selection, order and states as `listBackups` (./inspect.ts), but each inspection's file
 * list is dropped as soon as it is made and at most two inspections run at once, so memory holds
 * the one listing of the root and two inspections, not the files of every backup (issue 13:
 * nightly full backups of 100,000 files each).
 */
import { throwIfAborted } from '../errors.js';
import type { Driver } from '../drivers/types.js';
import { inspectListing, listBackupFolders, type BackupInspection, type InspectOptions } from './inspect.js';

export interface BackupSummary extends Omit<BackupInspection, 'files'> {
  /** Objects under `NAME/` (what `files.length` of the inspection was). */
  readonly fileCount: number;
}

/** Inspections in flight at once. */
const SUMMARY_CONCURRENCY = 2;

/** Every backup at the root of `source`, sorted by name, as summaries (see the file comment). */
export async function listBackupSummaries(source: Driver, options: InspectOptions = {}): Promise<BackupSummary[]> {
  throwIfAborted(options.signal, 'listing backups');
  const groups = await listBackupFolders(source, options.signal, options.onWarning);
  const nowMs = options.nowMs ?? Date.now();
  const names = [...groups.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const results = new Array<BackupSummary>(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const index = next++;
      const name = names[index] as string;
      const { files, ...rest } = await inspectListing(source, name, groups.get(name) ?? [], { ...options, nowMs });
      groups.delete(name);
      results[index] = { ...rest, fileCount: files.length };
    }
  };
  await Promise.all(Array.from({ length: Math.min(SUMMARY_CONCURRENCY, names.length) }, worker));
  return results;
}
