/**
 * Options of the `s3` driver (AWS S3 or any S3-compatible service) and their validation from a
 * config section such as
 *
 *     cloud: { type: s3, endpoint: https://s3.eu-central-1.amazonaws.com, region: eu-central-1,
 *              bucket: milvus-offsite, prefix: prod/ }
 *
 * The keys declared in `S3_SCHEMA` are read by src/config/schema.ts; the tuning keys and the
 * bucket and prefix rules are shared with the `minio` flavour (../object-store/options.ts).
 */
import { boolean, contextFor, custom, oneOf, readSection, refuse, secret, sectionError, string, type SectionContext } from '../../config/schema.js';
import { parseDuration } from '../../config/units.js';
import { objectStoreLocation, type ConfiguredPlace } from '../location.js';
import type { ObjectLockSettings } from '../object-store/object-lock.js';
import { checkBucketName, normalizePrefix, TUNING_SCHEMA, tuningOf, type ObjectStoreTuning } from '../object-store/options.js';
import { vendorFor, type ChecksumMode } from '../object-store/quirks.js';

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
  /** @default WHEN_SUPPORTED for AWS endpoints, WHEN_REQUIRED for all others (see ../object-store/quirks.ts) */
  readonly requestChecksumCalculation: ChecksumMode;
  /** @default WHEN_SUPPORTED for AWS endpoints, WHEN_REQUIRED for all others */
  readonly responseChecksumValidation: ChecksumMode;
  /** Most parts per upload, from the vendor table (10,000; Scaleway 1,000). */
  readonly maxParts: number;
  /** The server checks signed payloads (the vendor table's `signedPayloads`; `probe`: found out before the first write): direct uploads then carry their SHA-256 instead of Content-MD5. */
  readonly signedPayloads: boolean | 'probe';
  /**
   * S3 Object Lock: every object of a copy is written locked in this mode for `retain` from its
   * write (config `objectLock: { mode: GOVERNANCE | COMPLIANCE, retain: 30d }`); see
   * ../object-store/object-lock.ts. @default no locks
   */
  readonly objectLock?: ObjectLockSettings;
}

const LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'] as const;
/** The longest `retain` accepted: 100 years (S3 itself allows far more; this catches typos in units). */
const MAX_RETAIN_MS = 100 * 365 * 86_400_000;

/**
 * `objectLock: { mode: GOVERNANCE, retain: 30d }`, read back in the same shape (the config loader
 * reads a section twice): `mode` upper-cased, `retain` a duration of at least 1s (s, m, h, d).
 */
function readObjectLock(value: unknown): { mode: (typeof LOCK_MODES)[number]; retain: string | number } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return refuse();
  const { mode, retain, ...rest } = value as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) refuse(`got the unknown key ${JSON.stringify(unknown[0])} (known: mode, retain)`);
  const upper = typeof mode === 'string' ? mode.trim().toUpperCase() : undefined;
  if (upper !== 'GOVERNANCE' && upper !== 'COMPLIANCE') refuse(`"mode" must be GOVERNANCE or COMPLIANCE, got ${JSON.stringify(mode ?? null)}`);
  if (typeof retain !== 'string' && typeof retain !== 'number') refuse(`"retain" must be a duration like 30d, got ${JSON.stringify(retain ?? null)}`);
  let ms: number;
  try {
    ms = parseDuration(retain, 'retain');
  } catch {
    return refuse(`"retain" must be a duration like 30d, 12h or 90s, got ${JSON.stringify(retain)}`);
  }
  if (ms < 1000 || ms > MAX_RETAIN_MS) refuse(`"retain" must be from 1s to 36500d, got ${JSON.stringify(retain)}`);
  return { mode: upper, retain: typeof retain === 'string' ? retain.trim() : retain };
}

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
  objectLock: custom({ expected: `{ mode: ${LOCK_MODES.join(' | ')}, retain: DURATION } like { mode: GOVERNANCE, retain: 30d }` }, readObjectLock),
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
  // A path would be put before every bucket and key (`/mybucket/BUCKET/KEY`), so the server
  // answers about a bucket that does not exist.
  if (url.pathname.replace(/\/+$/, '') !== '') {
    return `got ${JSON.stringify(endpoint)} with a path (${url.pathname}): the endpoint must not contain a path; put the bucket name in "bucket" and a folder inside it in "prefix"`;
  }
  return undefined;
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
    signedPayloads: vendor.signedPayloads,
    ...(v.objectLock !== undefined ? { objectLock: { mode: v.objectLock.mode, retainMs: parseDuration(v.objectLock.retain, 'objectLock.retain') } } : {}),
    ...tuningOf(v),
  };
}

/** `s3://bucket/prefix @ endpoint`: where the driver points, without credentials. */
export function describeS3(options: Pick<S3Options, 'bucket' | 'prefix' | 'endpoint' | 'region'>): string {
  return `s3://${options.bucket}/${options.prefix} @ ${options.endpoint ?? `AWS S3 (${options.region})`}`;
}

/** Its description and location (../location.ts `ConfiguredPlace`). */
export function s3Place(options: Pick<S3Options, 'bucket' | 'prefix' | 'endpoint' | 'region'>): ConfiguredPlace {
  return { description: describeS3(options), location: objectStoreLocation({ endpoint: options.endpoint, bucket: options.bucket, prefix: options.prefix }) };
}
