/**
 * Options of the `s3` driver (AWS S3 or any S3-compatible service) and their validation from a
 * config section such as
 *
 *     cloud: { type: s3, endpoint: https://s3.eu-central-1.amazonaws.com, region: eu-central-1,
 *              bucket: milvus-offsite, prefix: prod/ }
 *
 * Also the helpers shared with the `minio` driver (timeouts, concurrency, prefix rules).
 */
import { ConfigError } from '../../errors.js';
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

const TUNING_KEYS = ['connectTimeoutMs', 'requestTimeoutMs', 'maxConcurrency', 'listPageSize', 'multipartCopyThresholdBytes'] as const;
const S3_KEYS = new Set([
  'type', 'endpoint', 'region', 'bucket', 'prefix', 'forcePathStyle', 'accessKeyId', 'secretAccessKey', 'sessionToken',
  'storageClass', 'sse', 'sseKmsKeyId', 'requestChecksumCalculation', 'responseChecksumValidation', ...TUNING_KEYS,
]);

/** Reads a section with one-line `ConfigError`s naming the destination and the key. */
export class SectionReader {
  constructor(readonly name: string, readonly type: string, readonly section: Readonly<Record<string, unknown>>) {}

  refuseUnknown(known: ReadonlySet<string>): void {
    for (const key of Object.keys(this.section)) {
      if (!known.has(key)) {
        throw new ConfigError(`${this.name}: unknown key "${key}" for type ${this.type} (known: ${[...known].filter((k) => k !== 'type').join(', ')})`);
      }
    }
  }

  string(key: string): string | undefined {
    const value = this.section[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || value.trim() === '') throw this.bad(key, 'a non-empty string', value);
    return value.trim();
  }

  /** Secrets: the same checks, but the value never appears in the message. */
  secret(key: string): string | undefined {
    const value = this.section[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || value === '') {
      throw new ConfigError(`${this.name}: "${key}" must be a non-empty string (is the environment variable it refers to set?)`);
    }
    return value;
  }

  boolean(key: string): boolean | undefined {
    const value = this.section[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === 'false') return value === 'true';
    throw this.bad(key, 'true or false', value);
  }

  integer(key: string, min: number, max: number): number | undefined {
    const value = this.section[key];
    if (value === undefined || value === null) return undefined;
    const number = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < min || number > max) {
      throw this.bad(key, `an integer from ${min} to ${max}`, value);
    }
    return number;
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    const value = this.string(key);
    if (value === undefined) return undefined;
    if (!(values as readonly string[]).includes(value)) throw this.bad(key, `one of ${values.join(', ')}`, value);
    return value as T;
  }

  bad(key: string, what: string, value: unknown): ConfigError {
    const shown = value === undefined ? 'nothing' : typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${JSON.stringify(value)}`;
    return new ConfigError(`${this.name}: "${key}" must be ${what}, got ${shown}`);
  }
}

/** The tuning keys, with their defaults. */
export function parseTuning(reader: SectionReader): ObjectStoreTuning {
  return {
    connectTimeoutMs: reader.integer('connectTimeoutMs', 1, 3_600_000) ?? 10_000,
    requestTimeoutMs: reader.integer('requestTimeoutMs', 1, 3_600_000) ?? 300_000,
    maxConcurrency: reader.integer('maxConcurrency', 1, 256) ?? 16,
    listPageSize: reader.integer('listPageSize', 1, 1000) ?? 1000,
    multipartCopyThresholdBytes: reader.integer('multipartCopyThresholdBytes', 1, 5 * 1024 ** 3) ?? 5 * 1024 ** 3,
  };
}

export const TUNING_OPTION_KEYS: readonly string[] = TUNING_KEYS;

/** `'/a/b'`, `'a/b/'`, `'a/b'` -> `'a/b/'`; `''`, `'/'` -> `''`. Refuses `..` and the like. */
export function normalizePrefix(name: string, key: string, value: string | undefined): string {
  if (value === undefined) return '';
  const trimmed = value.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  try {
    checkKey(trimmed);
  } catch {
    throw new ConfigError(`${name}: "${key}" must be a folder path inside the bucket like "prod/milvus", got ${JSON.stringify(value)}`);
  }
  return `${trimmed}/`;
}

/** Bucket names per S3's rules (3-63 of a-z 0-9 . -), loosely: also what RGW/MinIO accept. */
export function checkBucketName(name: string, key: string, bucket: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$/.test(bucket)) {
    throw new ConfigError(`${name}: "${key}" is not a valid bucket name: ${JSON.stringify(bucket)}`);
  }
  return bucket;
}

/** Validates a `type: s3` config section. No IO. */
export function parseS3Options(name: string, section: Readonly<Record<string, unknown>>): S3Options {
  const reader = new SectionReader(name, 's3', section);
  reader.refuseUnknown(S3_KEYS);
  const endpoint = reader.string('endpoint');
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw reader.bad('endpoint', 'a URL like https://s3.example.com or http://127.0.0.1:7480', endpoint);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw reader.bad('endpoint', 'an http:// or https:// URL', endpoint);
    if (url.username !== '' || url.password !== '') throw new ConfigError(`${name}: "endpoint" must not carry credentials; use accessKeyId and secretAccessKey`);
  }
  const vendor = vendorFor(endpoint);
  const bucket = reader.string('bucket');
  if (bucket === undefined) throw reader.bad('bucket', 'the bucket name', undefined);
  const accessKeyId = reader.string('accessKeyId');
  const secretAccessKey = reader.secret('secretAccessKey');
  const sessionToken = reader.secret('sessionToken');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError(`${name}: give both "accessKeyId" and "secretAccessKey", or neither (to use AWS_PROFILE or the environment)`);
  }
  if (sessionToken !== undefined && accessKeyId === undefined) throw new ConfigError(`${name}: "sessionToken" needs "accessKeyId" and "secretAccessKey"`);
  const sse = reader.oneOf('sse', ['AES256', 'aws:kms'] as const);
  const sseKmsKeyId = reader.string('sseKmsKeyId');
  if (sseKmsKeyId !== undefined && sse !== 'aws:kms') throw new ConfigError(`${name}: "sseKmsKeyId" needs "sse: aws:kms"`);
  const storageClass = reader.string('storageClass');
  if (storageClass !== undefined && !/^[A-Z_]+$/.test(storageClass)) throw reader.bad('storageClass', 'an S3 storage class like STANDARD_IA', storageClass);
  const checksums = ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const;
  const requestChecksumCalculation = reader.oneOf('requestChecksumCalculation', checksums) ?? vendor.checksums;
  return {
    endpoint: endpoint?.replace(/\/+$/, ''),
    region: reader.string('region') ?? vendor.region ?? 'us-east-1',
    bucket: checkBucketName(name, 'bucket', bucket),
    prefix: normalizePrefix(name, 'prefix', reader.string('prefix')),
    forcePathStyle: reader.boolean('forcePathStyle') ?? vendor.forcePathStyle,
    credentials: accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) } : undefined,
    storageClass,
    sse,
    sseKmsKeyId,
    requestChecksumCalculation,
    responseChecksumValidation: reader.oneOf('responseChecksumValidation', checksums) ?? vendor.checksums,
    maxParts: vendor.maxParts,
    ...parseTuning(reader),
  };
}
