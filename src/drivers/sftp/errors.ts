/**
 * Turns ssh2 / SFTP errors into `DriverError`s whose `kind` tells the engine what to do.
 * Messages name the driver instance, the key and the action (`nas: a/b.bin: write: permission
 * denied (SFTP status 3)`), never a password or passphrase and never a stack trace. The error
 * context and the refusals every driver shares are in src/drivers/toolkit/errors.ts.
 *
 * ssh2 reports three families of errors:
 * - SFTP status replies: `code` is the numeric status (2 no such file, 3 permission denied,
 *   4 failure: OpenSSH's answer to most errno values, a full disk included);
 * - socket errors: `code` is an errno string (`ECONNRESET`, `ETIMEDOUT`...);
 * - SSH protocol errors: `level` says where (`client-authentication`, `client-timeout`,
 *   `handshake`, `client-socket`...), and a lost connection fails pending SFTP requests with
 *   "No response from server".
 */
import { DriverError, type ErrorKind, type OffsiteError } from '../../errors.js';
import { firstLine, MAX_NAME_BYTES, overlongName, passThrough, redact, where, type ErrorContext } from '../toolkit/index.js';

export { notFoundError, where, type ErrorContext } from '../toolkit/index.js';

interface Classification {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly why: string;
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks). */
export const SFTP_STATUS = {
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

const BY_STATUS: Readonly<Record<number, Classification>> = {
  [SFTP_STATUS.EOF]: { kind: 'integrity', code: 'E_SHORT_READ', why: 'unexpected end of file' },
  [SFTP_STATUS.NO_SUCH_FILE]: { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found' },
  [SFTP_STATUS.PERMISSION_DENIED]: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'permission denied' },
  // OpenSSH's sftp-server maps every errno without an SFTP v3 equivalent (ENOSPC, EDQUOT, EROFS,
  // EEXIST, ENOTEMPTY...) to FAILURE; retrying does not fix any of them.
  [SFTP_STATUS.FAILURE]: { kind: 'permanent', code: 'E_SFTP_FAILURE', why: 'the server refused (disk full, quota, read-only, or something in the way)' },
  // OpenSSH's answer to ENAMETOOLONG and EINVAL too (a name over 255 bytes: see `classifySftpError`).
  [SFTP_STATUS.BAD_MESSAGE]: { kind: 'permanent', code: 'E_SFTP_PROTOCOL', why: 'the server rejected the request as malformed (OpenSSH says so for a name over 255 bytes, or an invalid argument)' },
  [SFTP_STATUS.NO_CONNECTION]: { kind: 'retryable', code: 'E_TRANSIENT', why: 'no connection' },
  [SFTP_STATUS.CONNECTION_LOST]: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection lost' },
  [SFTP_STATUS.OP_UNSUPPORTED]: { kind: 'permanent', code: 'E_UNSUPPORTED', why: 'operation not supported by this server' },
};

const TRANSIENT_ERRNO = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN',
  'ENETUNREACH', 'ENETDOWN', 'ENETRESET', 'EAI_AGAIN', 'ENOTCONN',
]);

/** Messages ssh2 uses when the connection or channel went away under a request. */
const TRANSIENT_MESSAGES = [
  'No response from server', 'Not connected', 'Channel is not open', 'Keepalive timeout',
  'Timed out while waiting for handshake', 'socket hang up', 'Connection lost before handshake',
  'No free channels available', 'Unexpected close event', 'Unexpected end event', 'connection closed',
];

/** The numeric SFTP status of an ssh2 error, if it is one. */
export function sftpStatusOf(err: unknown): number | undefined {
  const status = (err as { code?: unknown } | null)?.code;
  return typeof status === 'number' ? status : undefined;
}

export function isNoSuchFile(err: unknown): boolean {
  return sftpStatusOf(err) === SFTP_STATUS.NO_SUCH_FILE;
}

/**
 * Classifies any thrown value. `OffsiteError`s pass through unchanged; node's `AbortError`
 * becomes `AbortedError`; SFTP statuses, errno codes and ssh2 levels get the kinds above;
 * anything else is `permanent` (an unknown server-side refusal is not worth retrying blindly).
 */
export function classifySftpError(err: unknown, context: ErrorContext, secrets: readonly (string | undefined)[] = []): OffsiteError {
  const classified = passThrough(err, context);
  if (classified !== undefined) return classified;
  const detail = redact(firstLine(err), secrets);
  const status = sftpStatusOf(err);
  const known = status === undefined ? undefined : BY_STATUS[status];
  const overlong = status === SFTP_STATUS.BAD_MESSAGE && context.key !== undefined ? overlongName(context.key) : undefined;
  if (overlong !== undefined) {
    return new DriverError('E_NAME_TOO_LONG', `${where(context)}: a name in the key is too long for the server's file system: ${overlong}, at most ${MAX_NAME_BYTES} are allowed (SFTP status ${status})`, { kind: 'permanent', cause: err });
  }
  if (known) {
    const server = detail && detail.toLowerCase() !== known.why ? `; server said "${detail}"` : '';
    return new DriverError(known.code, `${where(context)}: ${known.why} (SFTP status ${status})${server}`, { kind: known.kind, cause: err });
  }
  const errno = (err as { code?: unknown } | null)?.code;
  const level = (err as { level?: unknown } | null)?.level;
  if (level === 'client-authentication' || /All configured authentication methods failed/i.test(detail)) {
    return new DriverError('E_AUTH', `${where(context)}: authentication refused (${detail})`, { kind: 'auth', cause: err });
  }
  if (/Cannot parse privateKey|Encrypted .*key detected|bad passphrase|Unsupported key format|no passphrase/i.test(detail)) {
    return new DriverError('E_BAD_KEY_FILE', `${where(context)}: cannot use the private key (${detail})`, { kind: 'auth', cause: err });
  }
  if (errno === 'ENOTFOUND') {
    return new DriverError('E_HOST_NOT_FOUND', `${where(context)}: host name not found (ENOTFOUND)`, { kind: 'permanent', cause: err });
  }
  const transient =
    (typeof errno === 'string' && TRANSIENT_ERRNO.has(errno)) ||
    level === 'client-timeout' ||
    level === 'client-socket' ||
    TRANSIENT_MESSAGES.some((message) => detail.includes(message));
  if (transient) {
    const suffix = typeof errno === 'string' && !detail.includes(errno) ? ` (${errno})` : '';
    return new DriverError('E_TRANSIENT', `${where(context)}: ${detail || 'connection failed'}${suffix}`, { kind: 'retryable', cause: err });
  }
  return new DriverError('E_SFTP', `${where(context)}: ${detail || 'unknown SFTP error'}`, { kind: 'permanent', cause: err });
}
