/**
 * The client adapter of a flavour: the few S3 operations the object-store driver (./driver.ts)
 * needs, as a small interface with two implementations, ../s3/client.ts on the AWS SDK (the `s3`
 * flavour) and ../minio/client.ts on the `minio` client (the `minio` flavour). Keys here are full
 * object keys inside the bucket (the driver adds its prefix). Methods throw their SDK's raw
 * errors; the driver classifies them with `describeError` + the shared table in ./errors.ts, so
 * that both flavours report the same kinds and messages. Also the small helpers both adapters
 * use (ETags, MD5, copy part sizes).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { cpuPool } from '../../runtime/cpu-pool.js';
import type { S3Failure } from './errors.js';

/**
 * What an upload carries so that the server refuses bytes damaged on the way: the MD5 of the body
 * (`Content-MD5`), or its SHA-256 (the signed `x-amz-content-sha256`) where the store's
 * `payloadCheck` is `sha256`. Taken from the bytes before they go to the store, so that a body
 * changed after that is refused too.
 */
export type PayloadDigest = { readonly md5Base64: string; readonly sha256Hex?: undefined } | { readonly sha256Hex: string; readonly md5Base64?: undefined };

/** An object as listed or HEADed. */
export interface StoredObject {
  readonly key: string;
  readonly size: number;
  readonly mtimeMs: number;
  /**
   * ETag without quotes, lower case: from `head` and from `list` (ListObjectsV2 gives every
   * object's ETag, so a listing fingerprints objects without a request per object).
   */
  readonly etag?: string;
  /** User metadata (lower-case names without `x-amz-meta-`); only from `head`. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A folder (common prefix) of a level listing: `folder` is the full key prefix, ending with `/`. */
export interface StoredFolder {
  readonly folder: string;
}

/** One version of an object in a versioned bucket (ListObjectVersions), or a delete marker. */
export interface StoredVersion {
  readonly key: string;
  readonly versionId: string;
  /** 0 for a delete marker. */
  readonly size: number;
  readonly deleteMarker: boolean;
  /** The current version of its key (a latest delete marker hides the key). */
  readonly latest: boolean;
}

/** An S3 Object Lock retention: the mode, and until when (ms since the epoch) the version cannot be deleted or overwritten. */
export interface Retention {
  readonly mode: 'GOVERNANCE' | 'COMPLIANCE';
  readonly untilMs: number;
}

/** A bucket's Object Lock configuration (GetObjectLockConfiguration). */
export interface LockConfiguration {
  /** `ObjectLockEnabled: Enabled`. */
  readonly enabled: boolean;
  /** The bucket's default retention rule, applied to every new object that names none. */
  readonly defaultRule?: { readonly mode: string; readonly days?: number; readonly years?: number };
}

/** A bucket's versioning state (GetBucketVersioning): never enabled, on, or suspended after being on. */
export type VersioningState = 'off' | 'enabled' | 'suspended';

/** An open (not completed, not aborted) multipart upload. */
export interface OpenUpload {
  readonly key: string;
  readonly uploadId: string;
  /** When it was created, ms since the epoch (0 when the server does not say). */
  readonly initiatedMs: number;
}

/** One part already stored in an open multipart upload. */
export interface StoredPart {
  /** 1-based, as in S3. */
  readonly partNumber: number;
  readonly size: number;
  /** The part's ETag without quotes, lower case: the hex MD5 of its bytes on every S3 we know. */
  readonly etag: string;
}

/** What `get` resolves with. */
export interface StoredBody {
  readonly body: Readable;
  readonly etag?: string;
}

export interface ObjectStore {
  /** Where requests go, for messages (`http://127.0.0.1:7480`, `AWS S3 (eu-central-1)`). No secrets. */
  readonly endpoint: string;
  readonly bucket: string;
  /** The object's size, mtime and metadata, or `undefined` when there is no such key (404). */
  head(key: string, signal?: AbortSignal): Promise<StoredObject | undefined>;
  /** Whether the bucket exists (HeadBucket). Throws for auth/network errors. */
  bucketExists(signal?: AbortSignal): Promise<boolean>;
  /**
   * The bytes of `key` from `start` to `end` (exclusive; to the end when omitted), and the ETag the
   * answer carries (unquoted, lower case; undefined when it has none). With `ifMatch` (an ETag), only
   * while the object has that ETag (`If-Match`): otherwise the server answers 412 PreconditionFailed.
   * Resolves once the answer's headers are in; the body is not read yet.
   */
  get(key: string, start: number, end: number | undefined, signal?: AbortSignal, ifMatch?: string): Promise<StoredBody>;
  /** Every object whose key starts with `prefix`, page by page (`pageSize` keys per request). */
  list(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject>;
  /**
   * One level under `prefix` (which ends with `/` or is empty): the objects directly there, and
   * each deeper folder once as `{ folder }` (its full key prefix, ending with `/`), from
   * ListObjectsV2 with `Delimiter: '/'`. Lets a caller that wants few folders of a large tree
   * skip the rest (see `ListOptions.descend`); optional, the driver lists flat without it.
   */
  listLevel?(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject | StoredFolder>;
  /**
   * How uploads prove their bytes to the server (see `PayloadDigest`): `md5` (Content-MD5, every
   * S3), or `sha256` where the store signs payloads and the server is known to check them (by
   * its vendor row, or once `probeSignedPayloads` has seen it refuse a wrong one).
   */
  readonly payloadCheck: 'md5' | 'sha256';
  /**
   * Present while it is not known whether the server checks signed payloads (a server outside
   * the vendor table, ./quirks.ts): sends one small PutObject of `key` whose signed SHA-256 is
   * not its body's. A refusal (XAmzContentSHA256Mismatch) turns `payloadCheck` to `sha256`;
   * anything else leaves it at `md5`, and resolves with whether an object may have been written
   * under `key` (the caller removes it). Never throws.
   */
  probeSignedPayloads?(key: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * One PutObject with `digest` (so the server rejects corrupted bytes), user `metadata`, and the
   * configured storage class and encryption; with `retention`, the Object Lock mode and
   * retain-until date (S3 requires Content-MD5 or a checksum on such a request: give an MD5 then).
   * Resolves with the ETag the server answered (undefined when it gave none).
   */
  put(key: string, body: Uint8Array, digest: PayloadDigest, metadata: Record<string, string>, signal?: AbortSignal, retention?: Retention): Promise<string | undefined>;
  /** CreateMultipartUpload with the configured encryption (never a storage class: see driver.ts). */
  createUpload(key: string, signal?: AbortSignal): Promise<string>;
  /** Open multipart uploads whose key starts with `prefix`, all pages. */
  listUploads(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<OpenUpload>;
  /** The parts of one open upload, all pages, in part-number order. */
  listParts(key: string, uploadId: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredPart>;
  /** UploadPart with `digest`; returns the part's ETag (unquoted, lower case). */
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, digest: PayloadDigest, signal?: AbortSignal): Promise<string>;
  completeUpload(key: string, uploadId: string, parts: ReadonlyArray<{ partNumber: number; etag: string }>, signal?: AbortSignal): Promise<void>;
  /** Resolves when the upload is already gone (NoSuchUpload). */
  abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<void>;
  /**
   * Server-side copy of `fromKey` (of `size` bytes) onto `toKey` with exactly `metadata` and the
   * configured storage class and encryption; multipart copy above the single-copy limit.
   * Resolves with the new object's ETag when the server reported one (unquoted, lower case),
   * `undefined` otherwise (RGW answers a completed multipart upload with an empty ETag). A 200
   * answer whose body is an `<Error>` rejects like any failed request. With `retention`, the new
   * object carries that Object Lock mode and retain-until date. With `ifSourceEtag`, only while
   * the source has that ETag (`x-amz-copy-source-if-match`, on every request of a multipart
   * copy): otherwise the server answers 412 PreconditionFailed and copies nothing.
   */
  copy(fromKey: string, toKey: string, size: number, metadata: Record<string, string>, signal?: AbortSignal, retention?: Retention, ifSourceEtag?: string): Promise<string | undefined>;
  /** DeleteObject; resolves when the key is already gone. In a versioned bucket it only adds a delete marker. */
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** GetBucketVersioning. */
  versioning(signal?: AbortSignal): Promise<VersioningState>;
  /** Every version and delete marker whose key starts with `prefix` (ListObjectVersions, all pages). */
  listVersions(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredVersion>;
  /** DeleteObject with a VersionId: removes that version (or delete marker) for good; resolves when it is already gone. */
  deleteVersion(key: string, versionId: string, signal?: AbortSignal): Promise<void>;
  /**
   * Object Lock (only flavours that offer the driver's `objectLock` option implement these; see
   * ./object-lock.ts). GetObjectLockConfiguration: a bucket created without Object Lock answers
   * with an error (`ObjectLockConfigurationNotFoundError`), returned as `{ enabled: false }`.
   */
  lockConfiguration?(signal?: AbortSignal): Promise<LockConfiguration>;
  /** The retention of one version of `key` (the current one without `versionId`), from HeadObject; `undefined` when it has none or is gone. */
  retention?(key: string, versionId: string | undefined, signal?: AbortSignal): Promise<Retention | undefined>;
  /** PutObjectRetention on the current version of `key` (extending is allowed in both modes; shortening is not tried). */
  putRetention?(key: string, retention: Retention, signal?: AbortSignal): Promise<void>;
  /** Extracts what the shared classification needs from one of this SDK's errors. */
  describeError(err: unknown): S3Failure;
  close(): void;
}

/** RFC 3986 percent-encoding as SigV4 and S3 want it: everything but `A-Za-z0-9-._~` (so also `!'()*`). */
export function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A key as a URL path or an `x-amz-copy-source`: percent-encoded (`encodeRfc3986`), `/` kept. */
export function encodeKeyPath(key: string): string {
  return encodeRfc3986(key).replace(/%2F/g, '/');
}

/** Strips quotes and lower-cases an ETag (`"ABC"` -> `abc`). */
export function cleanEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/"/g, '').toLowerCase();
}

/** Bytes per UploadPartCopy request in a multipart copy: big, but under 5 GiB and 10,000 parts. */
export function copyPartBytes(size: number, maxParts: number): number {
  return Math.max(512 * 1024 * 1024, Math.ceil(size / maxParts));
}

/** The ETag S3 gives a completed multipart object: MD5 of the parts' binary MD5s, `-`, part count. */
export function multipartEtag(partEtags: readonly string[]): string {
  const digests = Buffer.concat(partEtags.map((etag) => Buffer.from(etag, 'hex')));
  return `${createHash('md5').update(digests).digest('hex')}-${partEtags.length}`;
}

/** MD5 of some bytes, as hex (an ETag) and base64 (`Content-MD5`). */
export function md5(bytes: Uint8Array): { hex: string; base64: string } {
  const digest = createHash('md5').update(bytes).digest();
  return { hex: digest.toString('hex'), base64: digest.toString('base64') };
}

/** SHA-256 of some bytes as hex (`x-amz-content-sha256`), on the calling thread: ~0.7 ms per MiB with the CPU's SHA instructions. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * `md5` of a part or object body in the CPU pool's worker threads (src/runtime/cpu-pool.ts), so
 * that hashing parts of one S3 destination (~6 ms of CPU per MiB) does not hold up the event loop
 * that every other destination of the run shares; bodies under 256 KiB are hashed inline.
 */
export function partMd5(bytes: Uint8Array, signal?: AbortSignal): Promise<{ hex: string; base64: string }> {
  return cpuPool().run('md5', {}, bytes, { signal });
}
