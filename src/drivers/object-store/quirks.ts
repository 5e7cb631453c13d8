/**
 * What differs between S3 implementations, as data (like rclone's backend/s3/provider table).
 * The driver picks the first row whose `host` matches the endpoint's host name; explicit options
 * in the config always win over a row.
 */

export type ChecksumMode = 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';

export interface Vendor {
  readonly name: string;
  /** Matched against the endpoint's host name; `undefined` matches "no endpoint" (AWS). */
  readonly host?: RegExp;
  /**
   * The SDK's flexible checksums (CRC32 headers, aws-chunked bodies). Only AWS supports them
   * everywhere; Ceph RGW (streamed PutObject gets 411), R2, B2, older MinIO, OSS, COS refuse or
   * mishandle them. Integrity is still checked on every upload with Content-MD5.
   */
  readonly checksums: ChecksumMode;
  /** Path-style URLs (`endpoint/bucket/key`): what self-hosted servers expect. */
  readonly forcePathStyle: boolean;
  /** Most parts in one multipart upload. */
  readonly maxParts: number;
  /** Region to sign with when the config gives none. */
  readonly region?: string;
  /**
   * The server checks a signed payload: a request whose `x-amz-content-sha256` is the SHA-256 of
   * its body is refused (400 XAmzContentSHA256Mismatch) when the body that arrives has another,
   * as SigV4 says. Ceph RGW (checked by test/s3/multipart.test.ts), MinIO and AWS do. Where
   * true, uploads sent directly (../s3/direct-request.ts) carry that hash instead of Content-MD5:
   * the same refusal of damaged bytes for less than half the CPU (SHA-256 runs on the CPU's SHA
   * instructions, MD5 cannot). `probe` (any other server): the driver finds out before its first
   * write by sending one object with a wrong signed hash (./driver.ts, `probeSignedPayloads` in
   * ./store.ts), since a server that checks the signature but not the body would otherwise let
   * damaged bytes through. Rows we could not check keep Content-MD5.
   */
  readonly signedPayloads: boolean | 'probe';
}

const S3_MAX_PARTS = 10_000;

export const VENDORS: readonly Vendor[] = [
  { name: 'AWS', host: /(^|\.)amazonaws\.com(\.cn)?$/i, checksums: 'WHEN_SUPPORTED', forcePathStyle: false, maxParts: S3_MAX_PARTS, signedPayloads: true },
  // Scaleway accepts only 1000 parts per upload (tus-node-server #711).
  { name: 'Scaleway', host: /\.scw\.cloud$/i, checksums: 'WHEN_REQUIRED', forcePathStyle: false, maxParts: 1000, signedPayloads: false },
  { name: 'Cloudflare R2', host: /\.r2\.cloudflarestorage\.com$/i, checksums: 'WHEN_REQUIRED', forcePathStyle: true, maxParts: S3_MAX_PARTS, region: 'auto', signedPayloads: false },
  { name: 'Backblaze B2', host: /\.backblazeb2\.com$/i, checksums: 'WHEN_REQUIRED', forcePathStyle: false, maxParts: S3_MAX_PARTS, signedPayloads: false },
  { name: 'Wasabi', host: /\.wasabisys\.com$/i, checksums: 'WHEN_REQUIRED', forcePathStyle: false, maxParts: S3_MAX_PARTS, signedPayloads: false },
  // Anything else (Ceph RGW, MinIO, on-premises appliances): the conservative settings.
  { name: 'S3-compatible', checksums: 'WHEN_REQUIRED', forcePathStyle: true, maxParts: S3_MAX_PARTS, signedPayloads: 'probe' },
];

/** The vendor row for an endpoint URL (`undefined` = AWS's own default endpoint). */
export function vendorFor(endpoint: string | undefined): Vendor {
  if (endpoint === undefined) return VENDORS[0] as Vendor;
  const host = new URL(endpoint).hostname;
  return VENDORS.find((v) => v.host?.test(host)) ?? (VENDORS[VENDORS.length - 1] as Vendor);
}

/**
 * Known server bugs, for the record (no code path avoids them):
 * - Ceph RGW 16.2 (pacific) aborts the whole radosgw process (SIGABRT in
 *   RGWPutObj::verify_permission) on an UploadPartCopy whose source key contains `%`. The
 *   driver uses UploadPartCopy only for objects above `multipartCopyThresholdBytes` (5 GiB), and
 *   milvus-backup's keys are made of digits, letters, `_`, `-`, `.` and `/`.
 * - Ceph RGW returns an empty ETag from CompleteMultipartUpload (the commit checks the size
 *   with a HEAD instead).
 * - With SSE-KMS (AWS), part ETags are not the MD5 of the bytes, so `matches()` never confirms
 *   a stored part and a resumed upload sends every part again (correct, only slower).
 */

/**
 * Facts that hold for every implementation we support, kept here so that the numbers are in
 * one place: parts of 5 MiB .. 5 GiB (the last part may be smaller), 5 GiB per CopyObject.
 */
export const S3_LIMITS = {
  minPartBytes: 5 * 1024 * 1024,
  maxPartBytes: 5 * 1024 * 1024 * 1024,
  maxCopyObjectBytes: 5 * 1024 * 1024 * 1024,
} as const;
