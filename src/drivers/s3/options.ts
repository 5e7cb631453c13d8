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
import { boolean, contextFor, oneOf, readSection, secret, sectionError, string, type SectionContext } from '../../config/schema.js';
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
    ...tuningOf(v),
  };
}
