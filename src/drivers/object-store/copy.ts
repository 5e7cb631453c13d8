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
import { checkCopySource, etagFingerprint, where, type ErrorContext } from '../toolkit/index.js';
import type { Committed, CopyExpectation } from '../types.js';
import type { StoredObject } from './store.js';
import { HASH_METADATA, type Bucket } from './bucket.js';
import { ensureRetention, retentionFor } from './object-lock.js';

/**
 * Copies `from` onto `to` (full keys) inside the bucket with the source's metadata (MetadataDirective
 * REPLACE with the same values, so with its stored hash; with `objectLock`, a retention of its own
 * counted from now), by CopyObject, or UploadPartCopy above `multipartCopyThresholdBytes`. The HEAD
 * of the source gives the size, the metadata and what `expect` is checked against (a source that
 * is not as expected: `E_COPY_SOURCE_CHANGED`, nothing copied).
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
    const head = await bucket.store.head(from, signal);
    if (head === undefined) throw bucket.failWith('NoSuchKey', 'copy', from);
    checkCopySource(context, expect, bucket.entry(from, head));
    const retention = retentionFor(bucket, to);
    const etag = await bucket.store.copy(from, to, head.size, { ...head.metadata }, signal, retention);
    if (etag !== undefined && etag === head.etag && retention === undefined) return { fingerprint: etagFingerprint(etag, head.size) };
    const copied = await bucket.store.head(to, signal);
    const problem = copied === undefined ? 'is not there after the copy'
      : copied.size !== head.size ? `has ${copied.size} bytes, the source ${head.size}`
        : copied.metadata?.[HASH_METADATA] !== head.metadata?.[HASH_METADATA] ? 'does not carry the source\'s stored hash'
          : etag !== undefined && copied.etag !== undefined && copied.etag !== '' && copied.etag !== etag ? `has ETag ${copied.etag}, the copy reported ${etag}`
            : undefined;
    if (problem !== undefined) {
      if (copied !== undefined) await bucket.store.delete(to).catch(() => undefined);
      throw new DriverError('E_COPY_MISMATCH', `${where(context)}: the server-side copy ${problem}; it was removed, copy the file again`, { kind: 'integrity' });
    }
    await ensureRetention(bucket, to, retention, signal);
    return { fingerprint: etagFingerprint((copied as StoredObject).etag, (copied as StoredObject).size) };
  } catch (err) {
    throw bucket.fail(err, `copy to ${to}`, from);
  }
}
