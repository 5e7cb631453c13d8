/**
 * Temp names: one rule for every driver (local and SFTP temp files, S3 temp keys).
 *
 * An unfinished write of `a/b.bin` lives next to it as `a/.b.bin.offsite-partial`: a
 * deterministic name, so that a later run on any machine finds it and resumes. A server-side
 * copy in progress uses `.b.bin.offsite-copy-<16 hex>`, the hex taken from the name's SHA-256:
 * deterministic too, so that the next copy onto the same name (or its delete) removes what a
 * killed copy left (one copy per name at a time: the destination's lock holds one run, and a run
 * handles each name once).
 * Names whose temp name would be long (a base name over 200 bytes) are shortened to their first
 * code points (at most 60, at most 160 bytes) plus `~` and 16 hex digits of the name's SHA-256,
 * so every temp name stays within the 255 bytes a path component may have on common file
 * systems (ext4, xfs, btrfs, NTFS, most NAS shares), and stays deterministic.
 *
 * Temp names are never listed, and keys whose last segment looks like one are refused
 * (`checkNotTempName`), so a user's file can never be mistaken for ours.
 */
import { createHash } from 'node:crypto';
import { keyError } from './errors.js';

/** Suffix of the temp name of an unfinished write. */
export const PARTIAL_SUFFIX = '.offsite-partial';
/** Longest base name kept whole in a temp name. */
const WHOLE_NAME_BYTES = 200;
/** Most code points and bytes of a long name kept in front of its digest. */
const SHORT_NAME_CODE_POINTS = 60;
const SHORT_NAME_BYTES = 160;
/** Longest path component on the file systems we write to. */
export const MAX_NAME_BYTES = 255;

const TEMP_NAME = /^\..+\.offsite-(?:partial|copy-[0-9a-f]{16})$/s;

/** `.` + the name (shortened when long, see the file comment) + `suffix`. */
function tempName(basename: string, suffix: string): string {
  if (Buffer.byteLength(basename) <= WHOLE_NAME_BYTES) return `.${basename}${suffix}`;
  const digest = createHash('sha256').update(basename).digest('hex').slice(0, 16);
  let kept = '';
  let bytes = 0;
  for (const codePoint of Array.from(basename).slice(0, SHORT_NAME_CODE_POINTS)) {
    bytes += Buffer.byteLength(codePoint);
    if (bytes > SHORT_NAME_BYTES) break;
    kept += codePoint;
  }
  return `.${kept}~${digest}${suffix}`;
}

/** The temp name of an unfinished write of the file named `basename` (deterministic). */
export function partialName(basename: string): string {
  return tempName(basename, PARTIAL_SUFFIX);
}

/** The temp name of a server-side copy onto the file named `basename` (deterministic). */
export function copyTempName(basename: string): string {
  return tempName(basename, `.offsite-copy-${createHash('sha256').update(`copy:${basename}`).digest('hex').slice(0, 16)}`);
}

/** True for a base name that is one of our temp names (partial write or copy in progress). */
export function isTempName(basename: string): boolean {
  return TEMP_NAME.test(basename);
}

/** The last segment of a `/`-separated key or path. */
export function basenameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The temp path (same folder) of an unfinished write of the `/`-separated `path` (a key, a remote path, an S3 key). */
export function partialPathOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return `${path.slice(0, slash + 1)}${partialName(path.slice(slash + 1))}`;
}

/** True when the last segment of the `/`-separated `path` is a temp name. */
export function isTempPath(path: string): boolean {
  return isTempName(basenameOf(path));
}

/** Refuses (`KeyError`, kind `permanent`) a key whose last segment looks like one of our temp names. */
export function checkNotTempName(driver: string, key: string): void {
  if (isTempPath(key)) throw keyError(driver, key, `names like ".x${PARTIAL_SUFFIX}" are reserved for offsite's temp files`);
}
