/**
 * Errors of the AWS SDK v3 reduced to the `S3Failure` shape that the shared table in
 * ../object-store/errors.ts classifies, so that `s3` and `minio` report the same kinds and
 * messages.
 */
import { isKnownS3Code, type S3Failure } from '../object-store/errors.js';

/** Reduces an AWS SDK v3 error to an `S3Failure`. */
export function describeAwsError(err: unknown): S3Failure {
  const e = (err ?? {}) as {
    name?: unknown; code?: unknown; Code?: unknown; message?: unknown; hostname?: unknown;
    $metadata?: { httpStatusCode?: unknown }; $response?: { statusCode?: unknown };
  };
  const name = typeof e.name === 'string' ? e.name : undefined;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode
    : typeof e.$response?.statusCode === 'number' ? e.$response.statusCode : undefined;
  const errno = typeof e.code === 'string' && /^E[A-Z_]+$|^[A-Z_]+_CERT|CERT_/.test(e.code) ? e.code : undefined;
  if (name === 'AbortError' || errno === 'ABORT_ERR') return { aborted: true, message };
  if (name === 'TimeoutError') return { timeout: true, errno, message };
  // Service errors: name is the S3 code; HEAD responses have no body, so only a status (name = '403', 'NotFound'...).
  let code = typeof e.Code === 'string' ? e.Code : name;
  if (code === 'Error' || code === 'TypeError' || code === undefined || /^\d+$/.test(code) || code === 'UnknownError') code = undefined;
  if (name === 'CredentialsProviderError') return { code: 'CredentialsProviderError', message };
  if (status === undefined && errno === undefined && code !== undefined && !isKnownS3Code(code)) {
    // A plain JavaScript error (a bug), not an answer from the server.
    return { message: `${code}: ${message}` };
  }
  const hostname = errno === 'ENOTFOUND' && typeof e.hostname === 'string' ? e.hostname : undefined;
  return { code, status, errno, message, ...(hostname !== undefined ? { hostname } : {}) };
}
