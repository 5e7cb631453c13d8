/**
 * Server-side copies of the object-store driver: `copyWithin` (the contract's optional method,
 * capability `serverSideCopy`). The copy at the end of a multipart commit (temp key onto final key)
 * is the same `ObjectStore.copy` request, made by ./write-session.ts.
 */
import type { Bucket } from './bucket.js';

/**
 * Copies `from` onto `to` (full keys) inside the bucket with the source's metadata, so with its
 * stored hash (CopyObject, or UploadPartCopy above `multipartCopyThresholdBytes`). The source
 * missing: `not-found`. A failed copy leaves `to` as it was (S3 copies are atomic).
 */
export async function copyObject(bucket: Bucket, from: string, to: string, signal: AbortSignal | undefined): Promise<void> {
  try {
    const head = await bucket.store.head(from, signal);
    if (head === undefined) throw bucket.failWith('NoSuchKey', 'copy', from);
    await bucket.store.copy(from, to, head.size, { ...head.metadata }, signal);
  } catch (err) {
    throw bucket.fail(err, `copy to ${to}`, from);
  }
}
