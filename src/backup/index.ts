/**
 * milvus-backup knowledge: finding backups at a source, deciding whether one is complete, and
 * reading its meta losslessly. Everything reads through a `Driver`, so it works the same for a
 * local folder, MinIO or S3. See ./inspect.ts for the completion rule and the states.
 */
export {
  assertComplete, inspectBackup, inspectBackupState, inspectBackupStreamed, inspectListing, listBackupFolders, listBackupNames, listBackups, DEFAULT_QUIET_PERIOD_MS,
  type BackupFile, type BackupInspection, type BackupState, type InspectOptions,
} from './inspect.js';
export { listBackupSummaries, type BackupSummary } from './summaries.js';
export { readMetaJson, parseMetaText, MAX_META_BYTES, type ReadMetaOptions } from './json.js';
export {
  binlogBackupPath, summarizeFullMeta, declaredFormat,
  type BinlogKind, type BinlogLocation, type ExpectedObject, type FullMetaSummary, type GroupStyle,
} from './meta.js';
export {
  backupTimeFromName, isValidBackupName, isSafeFolderName, META_DIR, META_FILES, OFFSITE_DIR, CHECK_PROBE_PREFIX,
} from './names.js';
