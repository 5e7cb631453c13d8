/**
 * Server-side copies of the object-store driver: `copyWithin` (the contract's optional method,
 * capability `serverSideCopy`). The copy at the end of a multipart commit (temp key onto final key)
 * is the same `ObjectStore.copy` request, made by ./write-session.ts.
 *
 * No temp key is needed here: CopyObject, and a multipart copy (UploadPartCopy parts, then
 * CompleteMultipartUpload), make the target appear only once whole, so a crash mid-copy leaves
 * `to` as it was (an interrupted multipart copy leaves an open upload, never an object).
 */
import { DriverError } from '../../errors.js';
import { checkCopySource, copySourceChangedError, etagFingerprint, etagOfFingerprint, where, type ErrorContext } from '../toolkit/index.js';
import type { Committed, CopyExpectation } from '../types.js';
import type { StoredObject } from './store.js';
import { HASH_METADATA, type Bucket } from './bucket.js';
import { ensureRetention, retentionFor } from './object-lock.js';

/**
 * Copies `from` onto `to` (full keys) inside the bucket with the source's metadata (MetadataDirective
 * REPLACE with the same values, so with its stored hash; with `objectLock`, a retention of its own
 * counted from now), by CopyObject, or UploadPartCopy above `multipartCopyThresholdBytes`. The HEAD
 * of the source gives the size, the metadata and what `expect` is checked against (a source that
 * is not as expected: `E_COPY_SOURCE_CHANGED`, nothing copied). With an `expect` that names the
 * source's fingerprint and stored hash (the engine's reuse), see `copyExpected`: no HEAD first.
 *
 * The result is checked. When CopyObject answered with the source's own ETag, the server made
 * the object from exactly those bytes (S3 and RGW give a copy of a simple object its source's
 * ETag), and it carries the metadata the request set: nothing more to ask, and its fingerprint is
 * known. Otherwise (a multipart copy: RGW answers CompleteMultipartUpload with an empty ETag; a
 * server that gives copies new ETags) a HEAD of `to` must show the source's size and stored hash,
 * and the ETag the copy reported (when it reported one); else `E_COPY_MISMATCH` (kind
 * `integrity`), and `to` is deleted again so nothing wrong stays under the final key. The source
 * missing: `not-found`. Resolves with the copy's fingerprint.
 */
export async function copyObject(bucket: Bucket, from: string, to: string, expect: CopyExpectation | undefined, signal: AbortSignal | undefined): Promise<Committed> {
  const context: ErrorContext = { driver: bucket.driver, action: `copy from ${from}`, key: to };
  try {
    const retention = retentionFor(bucket, to);
    const expected = expect?.fingerprint !== undefined && expect.hash !== undefined && retention === undefined ? etagOfFingerprint(expect.fingerprint, expect.size) : undefined;
    if (expect !== undefined && expected !== undefined) return await copyExpected(bucket, from, to, expect, expected, context, signal);
    const head = await bucket.store.head(from, signal);
    if (head === undefined) throw bucket.failWith('NoSuchKey', 'copy', from);
    checkCopySource(context, expect, bucket.entry(from, head));
    const etag = await bucket.store.copy(from, to, head.size, { ...head.metadata }, signal, retention);
    if (etag !== undefined && etag === head.etag && retention === undefined) return { fingerprint: etagFingerprint(etag, head.size) };
    const copied = await checkCopy(bucket, to, head.size, head.metadata?.[HASH_METADATA], etag, context, signal);
    await ensureRetention(bucket, to, retention, signal);
    return copied;
  } catch (err) {
    throw bucket.fail(err, `copy to ${to}`, from);
  }
}

/**
 * The copy when the caller knows what the source must be (`expect` with its fingerprint, so its
 * ETag `etag`, and its stored hash): one CopyObject made conditional on that ETag
 * (`x-amz-copy-source-if-match`: a source changed since is refused, 412, and nothing is copied),
 * with the hash as metadata; no HEAD of the source first. Answered with that same ETag, the copy is
 * whole and its fingerprint is the source's. Any other answer (a server that gives copies new
 * ETags, or may not honour the condition; a multipart copy) is checked: the source must still
 * show the expected fingerprint (else `to` is deleted: `E_COPY_SOURCE_CHANGED`) and `to` the
 * expected size and hash (`checkCopy`).
 */
async function copyExpected(bucket: Bucket, from: string, to: string, expect: CopyExpectation, etag: string, context: ErrorContext, signal: AbortSignal | undefined): Promise<Committed> {
  let answered: string | undefined;
  try {
    answered = await bucket.store.copy(from, to, expect.size, { [HASH_METADATA]: expect.hash as string }, signal, undefined, etag);
  } catch (err) {
    const failure = bucket.store.describeError(err);
    if (failure.status === 412 || failure.code === 'PreconditionFailed') throw copySourceChangedError(context, 'changed since it was recorded (its ETag is another)');
    throw err;
  }
  if (answered === etag) return { fingerprint: expect.fingerprint };
  if (answered !== undefined) {
    const source = await bucket.store.head(from, signal);
    if (source === undefined || etagFingerprint(source.etag, source.size) !== expect.fingerprint) {
      await bucket.store.delete(to).catch(() => undefined);
      throw copySourceChangedError(context, source === undefined ? 'is gone' : 'changed since it was recorded (another fingerprint)');
    }
  }
  return checkCopy(bucket, to, expect.size, expect.hash, answered, context, signal);
}

/**
 * A HEAD of the copy `to`: it must have `size` bytes, the stored hash `hash`, and the ETag the copy
 * reported (when it reported one); else it is deleted and `E_COPY_MISMATCH` (kind `integrity`).
 * Resolves with its fingerprint.
 */
async function checkCopy(bucket: Bucket, to: string, size: number, hash: string | undefined, etag: string | undefined, context: ErrorContext, signal: AbortSignal | undefined): Promise<Committed> {
  const copied = await bucket.store.head(to, signal);
  const problem = copied === undefined ? 'is not there after the copy'
    : copied.size !== size ? `has ${copied.size} bytes, the source ${size}`
      : copied.metadata?.[HASH_METADATA] !== hash ? 'does not carry the source\'s stored hash'
        : etag !== undefined && copied.etag !== undefined && copied.etag !== '' && copied.etag !== etag ? `has ETag ${copied.etag}, the copy reported ${etag}`
          : undefined;
  if (problem !== undefined) {
    if (copied !== undefined) await bucket.store.delete(to).catch(() => undefined);
    throw new DriverError('E_COPY_MISMATCH', `${where(context)}: the server-side copy ${problem}; it was removed, copy the file again`, { kind: 'integrity' });
  }
  return { fingerprint: etagFingerprint((copied as StoredObject).etag, size) };
}
