/**
 * Classification of S3 errors (from the AWS SDK or the `minio` client) into `DriverError`s whose
 * `kind` tells the engine what to do. One table for both flavours: each adapter reduces its SDK's
 * errors to an `S3Failure` (S3 error code, HTTP status, socket errno: ../s3/errors.ts,
 * ../minio/errors.ts), then the failure is looked up here. Messages name the driver instance, the
 * bucket, the key and the action, never a credential.
 */
import { AbortedError, DriverError, type ErrorKind, type OffsiteError } from '../../errors.js';
import { passThrough, type ErrorContext } from '../toolkit/index.js';

/** What the table needs to know about one SDK error. */
export interface S3Failure {
  /** S3 error code (`NoSuchKey`, `SlowDown`...) when the server sent one. */
  readonly code?: string;
  /** HTTP status when a response arrived. */
  readonly status?: number;
  /** Socket-level code (`ECONNREFUSED`, `ECONNRESET`...) when the request never got an answer. */
  readonly errno?: string;
  /** The host name that was looked up, for `ENOTFOUND` (`bucket.localhost` in virtual-hosted style). */
  readonly hostname?: string;
  /** The request was cancelled through its AbortSignal. */
  readonly aborted?: boolean;
  /** A client-side timeout fired (connect or request). */
  readonly timeout?: boolean;
  /** The SDK's own message (first line only is used, and only for unknown errors). */
  readonly message: string;
}

/**
 * Where an error happened: `cloud: s3://bucket/prefix/a/b.bin: upload part 3`. The toolkit's
 * context (src/drivers/toolkit/errors.ts) plus the bucket and endpoint; `key` is the full object
 * key in the bucket, when the action concerns one.
 */
export interface BucketErrorContext extends ErrorContext {
  readonly bucket: string;
  readonly endpoint: string;
  /**
   * The IAM action the request needs (`s3:DeleteObject`) and where (`bucket/prefix*`): an
   * AccessDenied then names them ("s3:DeleteObject is denied; offsite needs s3:DeleteObject on
   * bucket/prefix*") instead of a general "lacks permission".
   */
  readonly permission?: { readonly action: string; readonly on: string };
}

interface Rule {
  readonly kind: ErrorKind;
  readonly code: string;
  /** Text of the message after the location; may use {bucket} and {endpoint}. */
  readonly why: string;
}

const RETRYABLE_NETWORK: Rule = { kind: 'retryable', code: 'E_TRANSIENT', why: 'network error talking to {endpoint}' };

/** S3 error code -> rule. Codes not listed fall back on the HTTP status (see `byStatus`). */
const BY_CODE: Readonly<Record<string, Rule>> = {
  NoSuchKey: { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found' },
  NotFound: { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found' },
  NoSuchBucket: { kind: 'permanent', code: 'E_NO_BUCKET', why: 'bucket {bucket} does not exist at {endpoint}' },
  NoSuchUpload: { kind: 'permanent', code: 'E_UPLOAD_GONE', why: 'the multipart upload was aborted meanwhile (another run, or a lifecycle rule); write the file again' },
  InvalidAccessKeyId: { kind: 'auth', code: 'E_AUTH', why: 'access key refused by {endpoint} (InvalidAccessKeyId): check accessKeyId' },
  SignatureDoesNotMatch: { kind: 'auth', code: 'E_AUTH', why: 'signature refused by {endpoint} (SignatureDoesNotMatch): check secretAccessKey' },
  ExpiredToken: { kind: 'auth', code: 'E_AUTH', why: 'session token expired (ExpiredToken)' },
  InvalidToken: { kind: 'auth', code: 'E_AUTH', why: 'session token refused (InvalidToken)' },
  TokenRefreshRequired: { kind: 'auth', code: 'E_AUTH', why: 'session token must be refreshed (TokenRefreshRequired)' },
  CredentialsProviderError: { kind: 'auth', code: 'E_AUTH', why: 'no credentials: set accessKeyId/secretAccessKey, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE' },
  // Valid credentials without the right permission: retrying or re-entering the key will not help.
  AccessDenied: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'access denied by {endpoint} (AccessDenied): the credentials lack permission on bucket {bucket}' },
  AllAccessDisabled: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'all access to bucket {bucket} is disabled' },
  AccountProblem: { kind: 'permanent', code: 'E_PERMISSION_DENIED', why: 'account problem reported by {endpoint} (AccountProblem)' },
  RequestTimeTooSkewed: { kind: 'permanent', code: 'E_CLOCK', why: 'the clock of this machine is too far from the server\'s (RequestTimeTooSkewed)' },
  BadDigest: { kind: 'integrity', code: 'E_INTEGRITY', why: 'the server refused the bytes: their MD5 does not match Content-MD5 (BadDigest)' },
  InvalidDigest: { kind: 'integrity', code: 'E_INTEGRITY', why: 'the server refused the bytes: invalid Content-MD5 (InvalidDigest)' },
  XAmzContentSHA256Mismatch: { kind: 'integrity', code: 'E_INTEGRITY', why: 'the server refused the bytes: SHA-256 mismatch (XAmzContentSHA256Mismatch)' },
  IncompleteBody: { kind: 'retryable', code: 'E_TRANSIENT', why: 'the request body was cut short (IncompleteBody)' },
  EntityTooSmall: { kind: 'permanent', code: 'E_PART_SIZE', why: 'a part is below the server\'s minimum part size (EntityTooSmall)' },
  EntityTooLarge: { kind: 'permanent', code: 'E_PART_SIZE', why: 'a part or object is above the server\'s maximum size (EntityTooLarge)' },
  InvalidPart: { kind: 'permanent', code: 'E_MISSING_PART', why: 'a part is missing or its ETag does not match (InvalidPart)' },
  InvalidPartOrder: { kind: 'permanent', code: 'E_MISSING_PART', why: 'parts out of order (InvalidPartOrder)' },
  InvalidRange: { kind: 'permanent', code: 'E_RANGE', why: 'range outside the object (InvalidRange)' },
  InvalidBucketName: { kind: 'permanent', code: 'E_CONFIG', why: 'invalid bucket name {bucket}' },
  InvalidStorageClass: { kind: 'permanent', code: 'E_CONFIG', why: 'storage class refused by {endpoint} (InvalidStorageClass)' },
  PermanentRedirect: { kind: 'permanent', code: 'E_CONFIG', why: 'bucket {bucket} is in another region or needs another endpoint (PermanentRedirect)' },
  AuthorizationHeaderMalformed: { kind: 'permanent', code: 'E_CONFIG', why: 'wrong region for bucket {bucket} (AuthorizationHeaderMalformed)' },
  KeyTooLongError: { kind: 'permanent', code: 'E_BAD_KEY', why: 'key too long for the server (KeyTooLongError)' },
  NotImplemented: { kind: 'permanent', code: 'E_UNSUPPORTED', why: 'the server does not implement this request (NotImplemented)' },
  InvalidRequest: { kind: 'permanent', code: 'E_REQUEST', why: 'request refused (InvalidRequest)' },
  InvalidArgument: { kind: 'permanent', code: 'E_REQUEST', why: 'request refused (InvalidArgument)' },
  MethodNotAllowed: { kind: 'permanent', code: 'E_REQUEST', why: 'method not allowed (MethodNotAllowed)' },
  QuotaExceeded: { kind: 'permanent', code: 'E_DISK_FULL', why: 'quota exceeded at {endpoint} (QuotaExceeded)' },
  SlowDown: { kind: 'retryable', code: 'E_THROTTLED', why: 'throttled by {endpoint} (SlowDown)' },
  RequestTimeout: { kind: 'retryable', code: 'E_TRANSIENT', why: 'the server timed out waiting for the request (RequestTimeout)' },
  InternalError: { kind: 'retryable', code: 'E_TRANSIENT', why: 'server error (InternalError)' },
  ServiceUnavailable: { kind: 'retryable', code: 'E_TRANSIENT', why: 'service unavailable (ServiceUnavailable)' },
  OperationAborted: { kind: 'retryable', code: 'E_TRANSIENT', why: 'a conflicting operation is in progress (OperationAborted)' },
  TimeoutError: { kind: 'retryable', code: 'E_TIMEOUT', why: 'timed out talking to {endpoint}' },
};

const CANNOT_REACH: Rule = { kind: 'retryable', code: 'E_UNREACHABLE', why: 'cannot reach endpoint {endpoint}' };

/** Socket-level codes (no HTTP response). */
const BY_ERRNO: Readonly<Record<string, Rule>> = {
  ECONNREFUSED: CANNOT_REACH,
  ENOTFOUND: { kind: 'retryable', code: 'E_UNREACHABLE', why: 'cannot reach endpoint {endpoint}: host name not found' },
  EAI_AGAIN: { kind: 'retryable', code: 'E_UNREACHABLE', why: 'cannot reach endpoint {endpoint}: DNS lookup failed' },
  EHOSTUNREACH: CANNOT_REACH,
  ENETUNREACH: CANNOT_REACH,
  ECONNRESET: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection to {endpoint} reset' },
  EPIPE: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection to {endpoint} broken' },
  ECONNABORTED: { kind: 'retryable', code: 'E_TRANSIENT', why: 'connection to {endpoint} aborted' },
  ETIMEDOUT: { kind: 'retryable', code: 'E_TIMEOUT', why: 'timed out talking to {endpoint}' },
  ESOCKETTIMEDOUT: { kind: 'retryable', code: 'E_TIMEOUT', why: 'timed out talking to {endpoint}' },
  EPROTO: { kind: 'permanent', code: 'E_TLS', why: 'TLS handshake with {endpoint} failed (is useSSL/https right?)' },
  CERT_HAS_EXPIRED: { kind: 'permanent', code: 'E_TLS', why: 'the TLS certificate of {endpoint} has expired' },
  DEPTH_ZERO_SELF_SIGNED_CERT: { kind: 'permanent', code: 'E_TLS', why: 'the TLS certificate of {endpoint} is self-signed' },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: { kind: 'permanent', code: 'E_TLS', why: 'the TLS certificate of {endpoint} cannot be verified' },
  ERR_TLS_CERT_ALTNAME_INVALID: { kind: 'permanent', code: 'E_TLS', why: 'the TLS certificate of {endpoint} does not match its name' },
};

function byStatus(status: number): Rule | undefined {
  if (status === 404) return { kind: 'not-found', code: 'E_NOT_FOUND', why: 'not found' };
  if (status === 401 || status === 403) return { kind: 'auth', code: 'E_AUTH', why: `access refused by {endpoint} (HTTP ${status}): wrong credentials, or no permission on bucket {bucket}` };
  if (status === 408 || status === 429) return { kind: 'retryable', code: 'E_THROTTLED', why: `server busy (HTTP ${status})` };
  if (status >= 500) return { kind: 'retryable', code: 'E_TRANSIENT', why: `server error (HTTP ${status})` };
  return undefined;
}

function where(context: BucketErrorContext): string {
  const location = context.key === undefined ? `s3://${context.bucket}` : `s3://${context.bucket}/${context.key}`;
  return `${context.driver}: ${location}: ${context.action}`;
}

/** Message for an error, one line, never containing anything the SDK printed about credentials. */
function render(rule: Rule, context: BucketErrorContext): string {
  return `${where(context)}: ${rule.why.replaceAll('{bucket}', context.bucket).replaceAll('{endpoint}', context.endpoint)}`;
}

/** The rule for a failure, or undefined when nothing in the tables fits. */
export function ruleFor(failure: S3Failure): Rule | undefined {
  if (failure.code !== undefined && BY_CODE[failure.code]) return BY_CODE[failure.code];
  if (failure.errno !== undefined && BY_ERRNO[failure.errno]) return BY_ERRNO[failure.errno];
  if (failure.timeout) return BY_CODE['TimeoutError'];
  if (failure.status !== undefined) return byStatus(failure.status);
  if (failure.errno !== undefined) return RETRYABLE_NETWORK;
  return undefined;
}

/**
 * Turns any thrown value into an `OffsiteError`. `OffsiteError`s pass through; aborts become
 * `AbortedError`; S3 failures take the kind from the tables; a 4xx not listed is `permanent`;
 * anything without a code, a status or an errno is `fatal` (most likely a bug here).
 */
export function classifyS3Error(err: unknown, failure: S3Failure, context: BucketErrorContext): OffsiteError {
  const classified = passThrough(err, context);
  if (classified !== undefined) return classified;
  if (failure.aborted) return new AbortedError(`${context.driver}: ${context.action}`);
  if (failure.errno === 'ENOTFOUND' && failure.hostname !== undefined && failure.hostname.startsWith(`${context.bucket}.`)) {
    // Virtual-hosted style puts the bucket in the host name; `localhost` and private names have no such sub-names.
    return new DriverError('E_CONFIG', `${where(context)}: cannot reach endpoint ${context.endpoint}: host name ${failure.hostname} not found (with forcePathStyle: false the bucket is looked up as part of the host name); set forcePathStyle: true for this endpoint`, { kind: 'permanent', cause: err });
  }
  const rule = ruleFor(failure);
  if (rule && context.permission !== undefined && (rule.code === 'E_PERMISSION_DENIED' || (rule.kind === 'auth' && failure.status === 403 && failure.code === undefined))) {
    const { action, on } = context.permission;
    return new DriverError('E_PERMISSION_DENIED', `${where(context)}: ${action} is denied by ${context.endpoint}; offsite needs ${action} on ${on}`, { kind: 'permanent', cause: err });
  }
  if (rule) return new DriverError(rule.code, render(rule, context), { kind: rule.kind, cause: err });
  const detail = `${failure.code ?? (failure.status !== undefined ? `HTTP ${failure.status}` : 'error')}: ${firstLine(failure.message)}`;
  const kind: ErrorKind = failure.status !== undefined || failure.code !== undefined ? 'permanent' : 'fatal';
  return new DriverError('E_S3', `${where(context)}: ${detail}`, { kind, cause: err });
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').slice(0, 300);
}
/** True for a refusal of valid credentials (AccessDenied, or a bare 403 without code). */
export function isAccessDenied(failure: S3Failure): boolean {
  return failure.code === 'AccessDenied' || (failure.code === undefined && failure.status === 403);
}

/** True for an S3 error code the table knows (an adapter tells server answers from its own bugs with it). */
export function isKnownS3Code(code: string): boolean {
  return Object.hasOwn(BY_CODE, code);
}
