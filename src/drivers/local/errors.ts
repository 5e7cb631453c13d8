/**
 * Turns node:fs errors (errno codes) into `DriverError`s whose `kind` tells the engine what to
 * do. Messages name the driver instance, the key and the action, never a secret (a local driver
 * has none) and never a stack trace. The error context and the refusals every driver shares
 * (bad argument, missing part...) are in src/drivers/toolkit/errors.ts.
 */
import { DriverError, type ErrorKind, type OffsiteError } from '../../errors.js';
import { errnoOf, passThrough, where, type ErrorContext } from '../toolkit/index.js';

export { errnoOf, notFoundError, type ErrorContext } from '../toolkit/index.js';

interface Classification {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly why: string;
}

/** errno -> classification. Anything not listed with an errno is `permanent`. */
const BY_ERRNO: Readonly<Record<string, Classification>> = {
  ENOENT: { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found' },
  ENOTDIR: { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found (a parent is not a folder)' },
  EACCES: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'permission denied' },
  EPERM: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'permission denied (operation not permitted)' },
  EROFS: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'read-only file system' },
  ENOSPC: { kind: 'permanent', code: 'E_DISK_FULL', why: 'disk full (no space left on device)' },
  EDQUOT: { kind: 'permanent', code: 'E_DISK_FULL', why: 'disk full (quota exceeded)' },
  EFBIG: { kind: 'permanent', code: 'E_FS', why: 'file too large for this file system' },
  ENAMETOOLONG: { kind: 'permanent', code: 'E_FS', why: 'name too long for this file system' },
  EISDIR: { kind: 'permanent', code: 'E_FS', why: 'a folder is in the way (a folder has the name this file needs; move it away and run again)' },
  EEXIST: { kind: 'permanent', code: 'E_FS', why: 'something already exists in the way' },
  ENOTEMPTY: { kind: 'permanent', code: 'E_FS', why: 'a non-empty folder is in the way' },
  ELOOP: { kind: 'permanent', code: 'E_FS', why: 'too many levels of symlinks' },
  EXDEV: { kind: 'permanent', code: 'E_FS', why: 'cross-device rename' },
  EBADF: { kind: 'fatal', code: 'E_FS', why: 'file handle already closed' },
  EIO: { kind: 'retryable', code: 'E_TRANSIENT', why: 'I/O error' },
  ETIMEDOUT: { kind: 'retryable', code: 'E_TRANSIENT', why: 'timed out' },
  ESTALE: { kind: 'retryable', code: 'E_TRANSIENT', why: 'stale file handle (NFS)' },
  EAGAIN: { kind: 'retryable', code: 'E_TRANSIENT', why: 'resource temporarily unavailable' },
  EBUSY: { kind: 'retryable', code: 'E_TRANSIENT', why: 'resource busy' },
  EINTR: { kind: 'retryable', code: 'E_TRANSIENT', why: 'interrupted' },
  EMFILE: { kind: 'retryable', code: 'E_TRANSIENT', why: 'too many open files' },
  ENFILE: { kind: 'retryable', code: 'E_TRANSIENT', why: 'too many open files in the system' },
  ENOLCK: { kind: 'retryable', code: 'E_TRANSIENT', why: 'no locks available' },
  ECONNRESET: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection reset (network share)' },
  ECONNABORTED: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection aborted (network share)' },
  EHOSTDOWN: { kind: 'retryable', code: 'E_TRANSIENT', why: 'host down (network share)' },
  EHOSTUNREACH: { kind: 'retryable', code: 'E_TRANSIENT', why: 'host unreachable (network share)' },
  ENETDOWN: { kind: 'retryable', code: 'E_TRANSIENT', why: 'network down (network share)' },
  ENETUNREACH: { kind: 'retryable', code: 'E_TRANSIENT', why: 'network unreachable (network share)' },
};

/** True for the errno codes that mean "this path does not exist". */
export function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Classifies any thrown value. `OffsiteError`s pass through unchanged; node's `AbortError`
 * becomes `AbortedError`; errno errors get the kind from the table above (unlisted errno codes
 * are `permanent`); anything else is `fatal` (a bug).
 */
export function classifyFsError(err: unknown, context: ErrorContext): OffsiteError {
  const classified = passThrough(err, context);
  if (classified !== undefined) return classified;
  const errno = errnoOf(err);
  if (errno === undefined) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return new DriverError('E_FS', `${where(context)}: ${detail}`, { kind: 'fatal', cause: err });
  }
  const known = BY_ERRNO[errno] ?? { kind: 'permanent', code: 'E_FS', why: 'file system error' };
  return new DriverError(known.code, `${where(context)}: ${known.why} (${errno})`, { kind: known.kind, cause: err });
}
