/**
 * What the parts of the object-store driver share, handed explicitly to the read pipeline
 * (./read.ts), the write sessions (./write-session.ts) and the copy (./copy.ts) so that none of
 * them reaches into the driver: the flavour's client adapter, the key prefix, the cap on uploads
 * in flight, the buffers of single-part sessions, error classification with the bucket's context,
 * the removal of a key's temp state, and what a versioned bucket needs (see `removeKey`).
 *
 * Versioned buckets: in a bucket with versioning on (or suspended), a DeleteObject only hides
 * the object behind a delete marker, and every overwrite keeps the old bytes as a noncurrent
 * version, all of it still stored and billed. So the driver asks once (GetBucketVersioning),
 * warns once naming the bucket and the cost, and removes what it deletes for good: every version
 * and delete marker of the key (DeleteObject with VersionId, permission s3:DeleteObjectVersion).
 * Where that is refused, the key is still hidden (plain DeleteObject) and what remains is counted
 * and reported (one warning at the first refusal, a total when the driver closes).
 *
 * Refused deletes: a refusal names the permission (`s3:DeleteObject is denied; offsite needs
 * s3:DeleteObject on bucket/prefix*`). A temp object that cannot be removed after its copy is
 * written is a warning, not a failed copy (`dropTemp`); a later `list` removes it (driver.ts).
 */
import { randomUUID } from 'node:crypto';
import { DriverError, type OffsiteError } from '../../errors.js';
import { checkDriverKey, etagFingerprint, Semaphore } from '../toolkit/index.js';
import { classifyS3Error, isAccessDenied, type S3Failure } from './errors.js';
import { lockedVersions, retainedError, type ObjectLockSettings } from './object-lock.js';
import { ByteStash } from './resources.js';
import type { ObjectStore, StoredObject, StoredVersion, VersioningState } from './store.js';
import type { Entry } from '../types.js';

/** User-metadata name of our whole-file hash (`x-amz-meta-offsite-hash`). */
export const HASH_METADATA = 'offsite-hash';
/** Idle bytes the single-part sessions of one driver keep for reuse (see `ByteStash`). */
const STASH_IDLE_BYTES = 32 * 1024 * 1024;

/** Where a driver's one-line warnings go (`offsite: WARNING: ...`). */
export type WarnSink = (line: string) => void;

function warnOnStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** `1234567` -> `1.2 MiB` (for warnings). */
function bytesText(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Removals refused so far, of one sort (first one warned at once, the total at `close`). */
interface Refusals {
  count: number;
  bytes: number;
  readonly summary: (count: number, bytes: string) => string;
}

export class Bucket {
  /** Where single-part sessions keep their bytes until commit. */
  readonly stash = new ByteStash(STASH_IDLE_BYTES);
  readonly #uploads: Semaphore;
  readonly #warn: WarnSink;
  #versioning: Promise<VersioningState> | undefined;
  readonly #refusals = new Map<string, Refusals>();
  #payloadProbe: Promise<void> | undefined;

  constructor(
    /** The driver instance's name, first word of every message. */
    readonly driver: string,
    readonly store: ObjectStore,
    /** `''` or `folder/` inside the bucket. */
    readonly prefix: string,
    readonly listPageSize: number,
    readonly maxConcurrency: number,
    warn?: WarnSink,
    /** The destination's `objectLock` option (./object-lock.ts): what it writes is locked, locked versions are never deleted. */
    readonly lock?: ObjectLockSettings,
  ) {
    this.#uploads = new Semaphore(maxConcurrency);
    this.#warn = warn ?? warnOnStderr;
  }

  /**
   * Before the first write to a server outside the vendor table: whether it checks signed
   * payloads (../object-store/store.ts `probeSignedPayloads`), tried once on a key under this
   * prefix's `.offsite/` (offsite's bookkeeping, never locked), which is removed again when the
   * server took it. Until then, and when it took it, uploads carry Content-MD5.
   */
  checkPayloads(signal: AbortSignal | undefined): Promise<void> {
    return (this.#payloadProbe ??= (async () => {
      // Asked meanwhile, once: the first removal needs it, and is otherwise one more round trip
      // in a row at the end of a run (its checkpoint and lock removed). A failure is asked again then.
      this.versioning(signal).catch(() => undefined);
      const probe = this.store.probeSignedPayloads?.bind(this.store);
      if (probe === undefined) return;
      const key = `${this.prefix}.offsite/payload-check-${randomUUID()}`;
      if (await probe(key, signal)) await this.removeKey(key, signal).catch(() => undefined);
    })());
  }

  /** `bucket/prefix*`: where offsite needs its permissions (for messages). */
  get scope(): string {
    return `${this.store.bucket}/${this.prefix}*`;
  }

  warn(message: string): void {
    this.#warn(`offsite: WARNING: ${this.driver}: ${message}`);
  }

  /**
   * The bucket's versioning state, asked once per driver (GetBucketVersioning); the first answer
   * other than `off` is warned about. Refused (no s3:GetBucketVersioning) or not implemented by
   * the server: taken as `off`, with a warning for the refusal. Network errors are not cached.
   */
  versioning(signal: AbortSignal | undefined): Promise<VersioningState> {
    this.#versioning ??= this.store.versioning(signal).then((state) => {
      // With Object Lock, versioning is required (./object-lock.ts checks it): nothing to warn about.
      if (state !== 'off' && this.lock === undefined) this.warn(versioningWarning(this.store.bucket, this.prefix, state));
      return state;
    }, (err: unknown) => {
      const failure = this.store.describeError(err);
      if (isAccessDenied(failure)) {
        this.warn(`cannot tell whether bucket ${this.store.bucket} keeps old versions: s3:GetBucketVersioning is denied; if versioning is on there, what offsite deletes or overwrites stays stored as noncurrent versions (grant s3:GetBucketVersioning and s3:DeleteObjectVersion so that offsite removes them)`);
        return 'off';
      }
      if (failure.status !== undefined && failure.status >= 400 && failure.status < 500) return 'off';
      this.#versioning = undefined;
      throw err;
    });
    return this.#versioning;
  }

  /**
   * Records a refused removal of `sort`; warns at once with `first` the first time. `close`
   * prints the totals (`summaries`).
   */
  refused(sort: string, bytes: number, first: () => string, summary: Refusals['summary']): void {
    let entry = this.#refusals.get(sort);
    if (entry === undefined) {
      this.#refusals.set(sort, (entry = { count: 0, bytes: 0, summary }));
      this.warn(first());
    }
    entry.count++;
    entry.bytes += bytes;
  }

  /** One warning per sort of refusal seen more than once (the first was warned already). */
  summarizeRefusals(): void {
    for (const entry of this.#refusals.values()) if (entry.count > 1) this.warn(entry.summary(entry.count, bytesText(entry.bytes)));
    this.#refusals.clear();
  }

  /**
   * Deletes `full` for good. Unversioned bucket: DeleteObject. Versioned (or suspended): every
   * version and delete marker of exactly that key, by VersionId; where that is refused, the
   * remaining versions are reported (`refused`) and the key is still hidden with a plain
   * DeleteObject. A refused DeleteObject throws (the caller names the permission). With Object
   * Lock: when any version is still locked, nothing is removed and `E_RETAINED` is thrown
   * (./object-lock.ts `lockedVersions`).
   */
  async removeKey(full: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.lock === undefined && (await this.versioning(signal)) === 'off') {
      await this.store.delete(full, signal);
      return;
    }
    const versions: StoredVersion[] = [];
    for await (const v of this.store.listVersions(full, this.listPageSize, signal)) if (v.key === full) versions.push(v);
    if (this.lock !== undefined) {
      const locked = await lockedVersions(this, full, versions, signal);
      if (locked.length > 0) throw retainedError(this, full, locked);
    }
    const left: StoredVersion[] = [];
    for (const v of versions) {
      try {
        await this.store.deleteVersion(full, v.versionId, signal);
      } catch (err) {
        if (!isAccessDenied(this.store.describeError(err))) throw err;
        left.push(v);
      }
    }
    if (left.length === 0) return;
    if (left.some((v) => v.latest && !v.deleteMarker)) await this.store.delete(full, signal);
    const bytes = left.reduce((sum, v) => sum + v.size, 0);
    this.refused('versions', bytes,
      () => `s3://${this.store.bucket}/${full}: ${left.length} old version(s) (${bytesText(bytes)}) remain stored: s3:DeleteObjectVersion is denied; offsite needs s3:DeleteObjectVersion on ${this.scope} to remove what it deletes for good in a versioned bucket; remove them by hand or with a lifecycle rule (NoncurrentVersionExpiration, ExpiredObjectDeleteMarker)`,
      (count, total) => `${count} deleted object(s) left old versions behind in s3://${this.store.bucket}/${this.prefix} (${total} in all) because s3:DeleteObjectVersion is denied`);
  }

  /**
   * Removes the temp object of a committed multipart write (the final object is written). A
   * refusal (AccessDenied) is a warning, not a failure: the copy is complete, the temp object is
   * hidden from listings and a later run removes it (driver.ts `list`). Other errors throw.
   */
  async dropTemp(temp: string, size: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.removeKey(temp, signal);
    } catch (err) {
      if (err instanceof DriverError && err.code === 'E_RETAINED') {
        this.warn(`${err.message} (a temp object: was it locked by a default retention rule added after offsite checked the bucket?)`);
        return;
      }
      if (!isAccessDenied(this.store.describeError(err))) throw err;
      this.refused('temp', size,
        () => `cannot delete temp object s3://${this.store.bucket}/${temp} (${bytesText(size)}): s3:DeleteObject is denied; offsite needs s3:DeleteObject on ${this.scope}. The copy itself is complete; the temp object is hidden from offsite's listings and the first run allowed to delete it removes it`,
        (count, total) => `${count} temp object(s) (${total}) could not be deleted from s3://${this.store.bucket}/${this.prefix} (s3:DeleteObject is denied); a later run with the permission removes them`);
    }
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
  fail(err: unknown, action: string, fullKey?: string, failure: S3Failure = this.store.describeError(err), permission?: string): OffsiteError {
    return classifyS3Error(err, failure, {
      driver: this.driver, action, bucket: this.store.bucket, endpoint: this.store.endpoint, ...(fullKey !== undefined ? { key: fullKey } : {}),
      ...(permission !== undefined ? { permission: { action: permission, on: this.scope } } : {}),
    });
  }

  /** `fail` for a request that needs the IAM action `permission` (named when it is denied). */
  failNeeding(permission: string, err: unknown, action: string, fullKey?: string): OffsiteError {
    return this.fail(err, action, fullKey, this.store.describeError(err), permission);
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

  /**
   * Aborts every open upload of `temp` (and `uploadId`, listed or not) and deletes a completed temp
   * object. The object is deleted after the aborts, so that no upload completed meanwhile leaves
   * one behind; when there is no upload to abort (almost always: `delete` of a key written in one
   * piece, or whose commit went through), its deletion goes out with the listing instead of after
   * it: one round trip, not two, at the end of every run (checkpoint and lock removed).
   */
  async removeTemp(temp: string, signal: AbortSignal | undefined, uploadId?: string): Promise<void> {
    const ids = new Set<string>(uploadId !== undefined ? [uploadId] : []);
    const early = uploadId === undefined ? this.removeKey(temp, signal) : undefined;
    early?.catch(() => undefined); // awaited below
    for await (const upload of this.store.listUploads(temp, this.listPageSize, signal)) {
      if (upload.key === temp) ids.add(upload.uploadId);
    }
    await early;
    if (ids.size === 0) return;
    await Promise.all([...ids].map((id) => this.store.abortUpload(temp, id, signal)));
    await this.removeKey(temp, signal);
  }
}

function versioningWarning(bucket: string, prefix: string, state: Exclude<VersioningState, 'off'>): string {
  const how = state === 'enabled' ? 'has versioning enabled' : 'has versioning suspended (versions kept while it was on remain)';
  return `bucket ${bucket} ${how}: what is deleted or overwritten there stays stored (and billed) as noncurrent versions and delete markers. ` +
    `Left alone, every file above one part would be stored twice (its multipart temp object) and prune would free nothing. ` +
    `offsite removes the versions it writes under s3://${bucket}/${prefix}: the temp objects after each commit, and every version and delete marker of what prune and delete remove ` +
    `(needs s3:ListBucketVersions and s3:DeleteObjectVersion); older versions of the few objects it rewrites in place (lock, manifest) stay until then. ` +
    `A lifecycle rule with NoncurrentVersionExpiration bounds what remains`;
}
