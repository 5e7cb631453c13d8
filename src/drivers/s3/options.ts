/**
 * Options of the `s3` driver (AWS S3 or any S3-compatible service) and their validation from a
 * config section such as
 *
 *     cloud: { type: s3, endpoint: https://s3.eu-central-1.amazonaws.com, region: eu-central-1,
 *              bucket: milvus-offsite, prefix: prod/ }
 *
 * Also the helpers shared with the `minio` driver (timeouts, concurrency, prefix rules).
 */
import { boolean, contextFor, integer, oneOf, readSection, secret, sectionError, string, type SectionContext } from '../../config/schema.js';
import { checkKey } from '../keys.js';
import { vendorFor, type ChecksumMode } from './quirks.js';

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
   * Also the HEADs that `list` runs at once to read stored hashes, and half the sockets kept
   * open. @default 16
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

export interface S3Options extends ObjectStoreTuning {
  /** Service URL (`https://host[:port]`); AWS's regional endpoint when omitted. */
  readonly endpoint?: string;
  /** Signing region. @default 'us-east-1' (or the vendor's, e.g. 'auto' for R2) */
  readonly region: string;
  readonly bucket: string;
  /** Folder inside the bucket, normalized to `''` or `a/b/` (no leading slash). @default '' */
  readonly prefix: string;
  /** Path-style URLs. @default false for AWS, true for every other endpoint */
  readonly forcePathStyle: boolean;
  /**
   * Static credentials (the config loader has already substituted `${ENV}`). When absent, the
   * SDK's default chain is used: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, IMDS...
   */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** `STANDARD_IA`, `GLACIER_IR`, ...: the class of committed objects. */
  readonly storageClass?: string;
  /** Server-side encryption. */
  readonly sse?: 'AES256' | 'aws:kms';
  /** KMS key for `sse: aws:kms` (the bucket's default key when omitted). */
  readonly sseKmsKeyId?: string;
  /** @default WHEN_SUPPORTED for AWS endpoints, WHEN_REQUIRED for all others (see quirks.ts) */
  readonly requestChecksumCalculation: ChecksumMode;
  /** @default WHEN_SUPPORTED for AWS endpoints, WHEN_REQUIRED for all others */
  readonly responseChecksumValidation: ChecksumMode;
  /** Most parts per upload, from the vendor table (10,000; Scaleway 1,000). */
  readonly maxParts: number;
}

/** The tuning keys every object-store flavour has (read by src/config/schema.ts). */
export const TUNING_SCHEMA = {
  connectTimeoutMs: integer({ default: 10_000, min: 1, max: 3_600_000 }),
  requestTimeoutMs: integer({ default: 300_000, min: 1, max: 3_600_000 }),
  maxConcurrency: integer({ default: 16, min: 1, max: 256 }),
  listPageSize: integer({ default: 1000, min: 1, max: 1000 }),
  multipartCopyThresholdBytes: integer({ default: 5 * 1024 ** 3, min: 1, max: 5 * 1024 ** 3 }),
};

const CHECKSUM_MODES = ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const;

/** The config keys of `type: s3`. */
export const S3_SCHEMA = {
  endpoint: string({ expected: 'an http:// or https:// URL like https://s3.example.com or http://127.0.0.1:7480', check: endpointProblem }),
  region: string(),
  bucket: string({ required: true, expected: 'the bucket name' }),
  prefix: string(),
  forcePathStyle: boolean(),
  accessKeyId: string(),
  secretAccessKey: secret(),
  sessionToken: secret(),
  storageClass: string({ expected: 'an S3 storage class like STANDARD_IA', check: (v) => (/^[A-Z_]+$/.test(v) ? undefined : `got ${JSON.stringify(v)}`) }),
  sse: oneOf(['AES256', 'aws:kms'] as const),
  sseKmsKeyId: string(),
  requestChecksumCalculation: oneOf(CHECKSUM_MODES),
  responseChecksumValidation: oneOf(CHECKSUM_MODES),
  ...TUNING_SCHEMA,
};

function endpointProblem(endpoint: string): string | undefined {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return `got ${JSON.stringify(endpoint)}`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `got ${JSON.stringify(endpoint)}`;
  // Never echo a URL that carries credentials.
  if (url.username !== '' || url.password !== '') return 'got a URL with a user name or password in it: it must not carry credentials; use accessKeyId and secretAccessKey';
  return undefined;
}

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

/** Validates a `type: s3` config section. No IO. */
export function parseS3Options(name: string, section: Readonly<Record<string, unknown>>, contextOverrides?: Partial<SectionContext>): S3Options {
  const context = contextFor(name, 's3', contextOverrides);
  const v = readSection(S3_SCHEMA, section, context);
  const vendor = vendorFor(v.endpoint);
  if ((v.accessKeyId === undefined) !== (v.secretAccessKey === undefined)) {
    throw sectionError(context, 'give both "accessKeyId" and "secretAccessKey", or neither (to use AWS_PROFILE or the environment)');
  }
  if (v.sessionToken !== undefined && v.accessKeyId === undefined) throw sectionError(context, '"sessionToken" needs "accessKeyId" and "secretAccessKey"');
  if (v.sseKmsKeyId !== undefined && v.sse !== 'aws:kms') throw sectionError(context, '"sseKmsKeyId" needs "sse: aws:kms"');
  return {
    endpoint: v.endpoint?.replace(/\/+$/, ''),
    region: v.region ?? vendor.region ?? 'us-east-1',
    bucket: checkBucketName(context, 'bucket', v.bucket),
    prefix: normalizePrefix(context, 'prefix', v.prefix),
    forcePathStyle: v.forcePathStyle ?? vendor.forcePathStyle,
    credentials: v.accessKeyId !== undefined && v.secretAccessKey !== undefined
      ? { accessKeyId: v.accessKeyId, secretAccessKey: v.secretAccessKey, ...(v.sessionToken !== undefined ? { sessionToken: v.sessionToken } : {}) }
      : undefined,
    storageClass: v.storageClass,
    sse: v.sse,
    sseKmsKeyId: v.sseKmsKeyId,
    requestChecksumCalculation: v.requestChecksumCalculation ?? vendor.checksums,
    responseChecksumValidation: v.responseChecksumValidation ?? vendor.checksums,
    maxParts: vendor.maxParts,
    ...tuningOf(v),
  };
}
