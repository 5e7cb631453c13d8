/**
 * Options every flavour of the object-store driver has (`s3` and `minio`): the tuning keys, and
 * the rules for bucket names and prefixes. Each flavour declares its own keys in its options.ts
 * and spreads `TUNING_SCHEMA` into them.
 */
import { integer, sectionError, type SectionContext } from '../../config/schema.js';
import { checkKey } from '../keys.js';

/** Settings every object-store driver has (s3 and minio). */
export interface ObjectStoreTuning {
  /** Connection set-up limit per request, in ms. @default 10000 */
  readonly connectTimeoutMs: number;
  /**
   * Longest time one request may take until the server answers, in ms, sending the body
   * included (so it must allow for one part at the slowest expected upload rate); a request that
   * exceeds it fails with kind `retryable`. The `s3` driver also fails a request whose socket
   * stays silent for min(requestTimeoutMs, 60 s). @default 300000
   */
  readonly requestTimeoutMs: number;
  /**
   * Most uploads (PutObject, UploadPart) in flight at once against this destination, whatever
   * the engine's `--concurrency` and part concurrency ask for (the others wait in the driver).
   * Also the HEADs that `list` runs at once to read stored hashes; server-side copies run
   * `COPIES_PER_UPLOAD_SLOT` times as many at once. @default 16
   */
  readonly maxConcurrency: number;
  /**
   * Keys per page for ListObjectsV2, uploads per ListMultipartUploads page and parts per
   * ListParts page. Lower it only to exercise pagination in tests. @default 1000
   */
  readonly listPageSize: number;
  /** Objects above this size are copied with UploadPartCopy instead of one CopyObject. @default 5 GiB */
  readonly multipartCopyThresholdBytes: number;
}

/**
 * Server-side copies (`copyWithin`: CopyObject, UploadPartCopy) worth having in flight per upload
 * slot (`maxConcurrency`): they move no bytes through this machine and only wait on the server,
 * so a reuse of thousands of kept files is bound by round trips, not by the link
 * (`capabilities.copyConcurrency`).
 */
export const COPIES_PER_UPLOAD_SLOT = 4;

/**
 * Sockets a client keeps open: two per upload slot (uploads, and the HEADs, listings and reads
 * beside them), at least 16, plus one per server-side copy in flight.
 */
export function socketsFor(maxConcurrency: number): number {
  return Math.max(maxConcurrency * 2, 16) + maxConcurrency * COPIES_PER_UPLOAD_SLOT;
}

/** The tuning keys every object-store flavour has (read by src/config/schema.ts). */
export const TUNING_SCHEMA = {
  connectTimeoutMs: integer({ default: 10_000, min: 1, max: 3_600_000 }),
  requestTimeoutMs: integer({ default: 300_000, min: 1, max: 3_600_000 }),
  maxConcurrency: integer({ default: 16, min: 1, max: 256 }),
  listPageSize: integer({ default: 1000, min: 1, max: 1000 }),
  multipartCopyThresholdBytes: integer({ default: 5 * 1024 ** 3, min: 1, max: 5 * 1024 ** 3 }),
};

/** The tuning values of a section already read against a schema that includes `TUNING_SCHEMA`. */
export function tuningOf(values: ObjectStoreTuning): ObjectStoreTuning {
  const { connectTimeoutMs, requestTimeoutMs, maxConcurrency, listPageSize, multipartCopyThresholdBytes } = values;
  return { connectTimeoutMs, requestTimeoutMs, maxConcurrency, listPageSize, multipartCopyThresholdBytes };
}

/** `'/a/b'`, `'a/b/'`, `'a/b'` -> `'a/b/'`; `''`, `'/'` -> `''`. Refuses `..` and the like. */
export function normalizePrefix(context: SectionContext, key: string, value: string | undefined): string {
  if (value === undefined) return '';
  const trimmed = value.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  try {
    checkKey(trimmed);
  } catch {
    throw sectionError(context, `"${key}" must be a folder path inside the bucket like "prod/milvus", got ${JSON.stringify(value)}`);
  }
  return `${trimmed}/`;
}

/** Bucket names per S3's rules (3-63 of a-z 0-9 . -), loosely: also what RGW/MinIO accept. */
export function checkBucketName(context: SectionContext, key: string, bucket: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$/.test(bucket)) {
    throw sectionError(context, `"${key}" is not a valid bucket name: ${JSON.stringify(bucket)}`);
  }
  return bucket;
}

