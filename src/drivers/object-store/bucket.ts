/**
 * What the parts of the object-store driver share, handed explicitly to the read pipeline
 * (./read.ts), the write sessions (./write-session.ts) and the copy (./copy.ts) so that none of
 * them reaches into the driver: the flavour's client adapter, the key prefix, the cap on uploads
 * in flight, the buffers of single-part sessions, error classification with the bucket's context,
 * and the removal of a key's temp state.
 */
import type { OffsiteError } from '../../errors.js';
import { checkDriverKey, etagFingerprint, Semaphore } from '../toolkit/index.js';
import { classifyS3Error, type S3Failure } from './errors.js';
import { ByteStash } from './resources.js';
import type { ObjectStore, StoredObject } from './store.js';
import type { Entry } from '../types.js';

/** User-metadata name of our whole-file hash (`x-amz-meta-offsite-hash`). */
export const HASH_METADATA = 'offsite-hash';
/** Idle bytes the single-part sessions of one driver keep for reuse (see `ByteStash`). */
const STASH_IDLE_BYTES = 32 * 1024 * 1024;

export class Bucket {
  /** Where single-part sessions keep their bytes until commit. */
  readonly stash = new ByteStash(STASH_IDLE_BYTES);
  readonly #uploads: Semaphore;

  constructor(
    /** The driver instance's name, first word of every message. */
    readonly driver: string,
    readonly store: ObjectStore,
    /** `''` or `folder/` inside the bucket. */
    readonly prefix: string,
    readonly listPageSize: number,
    maxConcurrency: number,
  ) {
    this.#uploads = new Semaphore(maxConcurrency);
  }

  /** The bucket's full key for a driver key; refuses unsafe keys and our temp names (`E_BAD_KEY`). */
  fullKey(key: string): string {
    return this.prefix + checkDriverKey(this.driver, key);
  }

  /** Runs one upload request (PutObject, UploadPart) within the `maxConcurrency` limit. */
  upload<T>(signal: AbortSignal | undefined, what: string, send: () => Promise<T>): Promise<T> {
    return this.#uploads.run(signal, `${this.driver}: ${what}`, send);
  }

  /** Uploads in flight right now (for tests). */
  get uploadsInFlight(): number {
    return this.#uploads.busy;
  }

  /** Classifies an SDK error with this driver's name, bucket and endpoint. */
  fail(err: unknown, action: string, fullKey?: string, failure: S3Failure = this.store.describeError(err)): OffsiteError {
    return classifyS3Error(err, failure, {
      driver: this.driver, action, bucket: this.store.bucket, endpoint: this.store.endpoint, ...(fullKey !== undefined ? { key: fullKey } : {}),
    });
  }

  /** An error of the S3 code `code` that no SDK raised (e.g. a HEAD that found nothing). */
  failWith(code: 'NoSuchKey' | 'NoSuchBucket', action: string, fullKey: string): OffsiteError {
    return this.fail(undefined, action, fullKey, { code, status: 404, message: code });
  }

  /** The contract's entry for an object (driver key, size, mtime, our stored hash if any, ETag fingerprint). */
  entry(key: string, object: StoredObject): Entry {
    const hash = object.metadata?.[HASH_METADATA];
    const fingerprint = etagFingerprint(object.etag, object.size);
    return { key, size: object.size, mtimeMs: object.mtimeMs, ...(hash !== undefined ? { hash } : {}), ...(fingerprint !== undefined ? { fingerprint } : {}) };
  }

  /** Aborts every open upload of `temp` (and `uploadId`, listed or not) and deletes a completed temp object. */
  async removeTemp(temp: string, signal: AbortSignal | undefined, uploadId?: string): Promise<void> {
    const ids = new Set<string>(uploadId !== undefined ? [uploadId] : []);
    for await (const upload of this.store.listUploads(temp, this.listPageSize, signal)) {
      if (upload.key === temp) ids.add(upload.uploadId);
    }
    await Promise.all([...ids].map((id) => this.store.abortUpload(temp, id, signal)));
    await this.store.delete(temp, signal);
  }
}
