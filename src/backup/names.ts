/**
 * Names and keys as milvus-backup writes them: backup names, the meta file names, and the
 * objects under a backup root that are not backups at all (noise).
 */

/** The folder (relative to `NAME/`) that holds milvus-backup's meta files. */
export const META_DIR = 'meta';

/** Meta file names (`internal/storage/mpath/path.go` upstream). */
export const META_FILES = {
  backup: 'backup_meta.json',
  collection: 'collection_meta.json',
  partition: 'partition_meta.json',
  segment: 'segment_meta.json',
  full: 'full_meta.json',
  /** Only written by milvus-backup 0.4.13 .. 0.5.9 (CDC channel checkpoints). */
  channelCheckpoint: 'channel_cp_meta.json',
} as const;

/** Our own per-copy folder under `NAME/` (manifests); never part of the backup itself. */
export const OFFSITE_DIR = '.offsite';

/** Prefix of the probe objects `milvus-backup check` writes directly under the backup root. */
export const CHECK_PROBE_PREFIX = 'milvus_backup_check_';

/**
 * milvus-backup's own rule for backup names: letters, digits and `_` only, the first character a
 * letter or `_`, at most 128 characters. (ASCII letters: the upstream check is a regexp over
 * `[a-zA-Z0-9_]`.)
 */
export function isValidBackupName(name: string): boolean {
  return typeof name === 'string' && name.length > 0 && name.length <= 128 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}

/**
 * True for a folder name that can be looked at as a backup folder at all: one safe key segment.
 * Looser than `isValidBackupName` on purpose, so that a copy someone renamed by hand is still
 * listed and inspected; the CLI decides whether to insist on milvus-backup's rule.
 */
export function isSafeFolderName(name: string): boolean {
  return typeof name === 'string' && name.length > 0 && name !== '.' && name !== '..'
    && !name.includes('/') && !name.includes('\\') && !name.includes('\0');
}

/**
 * Noise inside a backup folder: zero-byte "folder marker" objects (`.../`) that some S3 tools
 * create, and our own `.offsite/` folder. `rel` is relative to `NAME/`.
 */
export function isNoiseInBackup(rel: string): boolean {
  return rel === '' || rel.endsWith('/') || rel === OFFSITE_DIR || rel.startsWith(`${OFFSITE_DIR}/`);
}

/**
 * The creation time in milvus-backup's default name `backup_YYYY_MM_DD_HH_MM_SS_<nanos>` (UTC,
 * `core/backup/func.go`), or `undefined` for any other name or an impossible date.
 */
export function backupTimeFromName(name: string): Date | undefined {
  const m = /^backup_(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})(?:_\d+)?$/.exec(name);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) return undefined;
  return date;
}
