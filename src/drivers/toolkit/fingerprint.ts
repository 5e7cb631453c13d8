/**
 * Fingerprints: a cheap summary of a stored file, taken from the listing or stat a driver already
 * makes (no extra request), that changes whenever the file is rewritten in place in the ways we
 * can see without reading it. One canonical string per driver family:
 *
 * - `local:<size>:<mtime ns>:<inode>`: a rewrite changes the mtime (and a replace the inode);
 * - `sftp:<size>:<mtime s>`: SFTP gives whole seconds, so a same-size rewrite within the same
 *   second as the last one is not seen;
 * - `etag:<etag>:<size>`: S3's ETag changes with every PutObject / multipart completion.
 *
 * A fingerprint that changed says "read this file again"; one that did not is no proof that the
 * bytes are intact (bit rot, or a rewrite that restores the mtime): only reading back proves that.
 *
 * Each is returned flat (src/strings.ts): the engine keeps one or two per file for the whole run,
 * and as a rope of its pieces one cost four times its characters.
 */
import { flatString } from '../../strings.js';

export function localFingerprint(size: number | bigint, mtimeNs: bigint, inode: bigint): string {
  return flatString(`local:${size}:${mtimeNs}:${inode}`);
}

export function sftpFingerprint(size: number, mtimeSeconds: number): string {
  return flatString(`sftp:${size}:${mtimeSeconds}`);
}

/** `undefined` when the server gave no ETag (nothing to compare). */
export function etagFingerprint(etag: string | undefined, size: number): string | undefined {
  const clean = (etag ?? '').replace(/"/g, '').toLowerCase();
  return clean === '' ? undefined : flatString(`etag:${clean}:${size}`);
}

/** The ETag in an `etagFingerprint` of an object of `size` bytes; `undefined` for any other fingerprint. */
export function etagOfFingerprint(fingerprint: string, size: number): string | undefined {
  const match = /^etag:([^:]+):(\d+)$/.exec(fingerprint);
  return match !== null && Number(match[2]) === size ? match[1] : undefined;
}

/** The ETag in an `etagFingerprint` of an object of any size; `undefined` for any other fingerprint. */
export function etagOfAnyFingerprint(fingerprint: string): string | undefined {
  return /^etag:([^:]+):\d+$/.exec(fingerprint)?.[1];
}
