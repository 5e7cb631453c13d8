/** What the command functions share: picking the newest backup, checking a backup name. */
import { isValidBackupName, type BackupInspection } from '../backup/index.js';
import { UsageError } from '../errors.js';

/** Picks the newest complete backup (by name order of milvus-backup's timestamped names, then last change). */
export function pickLatest(backups: readonly BackupInspection[]): BackupInspection | undefined {
  const complete = backups.filter((b) => b.state === 'complete');
  return [...complete].sort((a, b) => a.lastChangeMs - b.lastChangeMs || (a.name < b.name ? -1 : 1)).at(-1);
}

/** Throws a `UsageError` for a name milvus-backup never makes. */
export function checkBackupName(name: string): void {
  if (!isValidBackupName(name)) throw new UsageError(`${JSON.stringify(name)} is not a milvus-backup backup name (letters, digits and _, not starting with a digit)`);
}
