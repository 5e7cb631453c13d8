/**
 * Errors of the `minio` client reduced to the `S3Failure` shape that the shared table in
 * ../object-store/errors.ts classifies, so that `minio` and `s3` report the same kinds and messages.
 * The client turns body-less answers (HEAD) into codes by status (403 -> AccessDenied, 404 ->
 * NotFound, 503 -> SlowDown); those are mapped back to statuses here, because a HEAD refused
 * for wrong credentials must read as `auth`, not as a missing permission.
 */
import type { S3Failure } from '../object-store/errors.js';

/** Reduces a `minio` client error (or a socket error) to an `S3Failure`. */
export function describeMinioError(err: unknown): S3Failure {
  const e = (err ?? {}) as { name?: unknown; code?: unknown; message?: unknown; timeout?: unknown; aborted?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(err);
  if (e.aborted === true) return { aborted: true, message };
  if (e.timeout === true) return { timeout: true, message };
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code !== undefined && /^E[A-Z_]+$/.test(code)) return { errno: code, message };
  if (e.name === 'S3Error' && code !== undefined) {
    // Answers without a body (HEAD) only have the status, which the client turns into a code.
    if (code === 'NotFound') return { code, status: 404, message };
    if (code === 'AccessDenied' && message === 'Valid and authorized credentials required') return { status: 403, message };
    if (code === 'SlowDown' && message.startsWith('Please reduce')) return { code, status: 503, message };
    return { code, message };
  }
  if (typeof e.name === 'string' && /Error$/.test(e.name) && e.name !== 'Error' && e.name !== 'TypeError' && e.name !== 'S3Error') {
    // The client's own argument checks (InvalidBucketNameError...): refused before any request.
    return { code: e.name, status: 400, message };
  }
  return { message };
}
