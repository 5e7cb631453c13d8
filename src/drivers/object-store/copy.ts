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
import { where, type ErrorContext } from '../toolkit/index.js';
import { HASH_METADATA, type Bucket } from './bucket.js';
import { ensureRetention, retentionFor } from './object-lock.js';

/**
 * Copies `from` onto `to` (full keys) inside the bucket with the source's metadata (MetadataDirective
 * REPLACE with the same values, so with its stored hash; with `objectLock`, a retention of its own
 * counted from now), by CopyObject, or UploadPartCopy above
 * `multipartCopyThresholdBytes`. Then checks the result with a HEAD of `to`: the size must be the
 * source's, the stored hash the source's, and the ETag the one the copy reported (when it reported
 * one); otherwise `E_COPY_MISMATCH` (kind `integrity`), and `to` is deleted again so nothing
 * wrong stays under the final key. The source missing: `not-found`.
 */
export async function copyObject(bucket: Bucket, from: string, to: string, signal: AbortSignal | undefined): Promise<void> {
  const context: ErrorContext = { driver: bucket.driver, action: `copy from ${from}`, key: to };
  try {
    const head = await bucket.store.head(from, signal);
    if (head === undefined) throw bucket.failWith('NoSuchKey', 'copy', from);
    const retention = retentionFor(bucket, to);
    const etag = await bucket.store.copy(from, to, head.size, { ...head.metadata }, signal, retention);
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
  } catch (err) {
    throw bucket.fail(err, `copy to ${to}`, from);
  }
}
