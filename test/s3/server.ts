/**
 * How the S3 and MinIO tests find the Ceph RGW that scripts/run-tests.mjs started
 * (test/servers/rgw.ts): `OFFSITE_TEST_S3` holds its endpoint and keys. When it is missing the
 * tests FAIL with the reason from `OFFSITE_TEST_RGW_ERROR`; they skip (loudly) only when
 * OFFSITE_TEST_ALLOW_SKIP=1 and CI is not set.
 *
 * Every test works in a bucket of its own (`freshBucket`, also versioned or with Object Lock),
 * removed with all its objects (every version, locked ones too) and open uploads by
 * `removeFreshBuckets` (the gateway keeps data in RAM, capped at 2 GiB).
 */
import {
  AbortMultipartUploadCommand, CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, ListObjectVersionsCommand, PutBucketVersioningCommand, S3Client,
} from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import type { S3TestServer } from '../servers/rgw.js';

export type { S3TestServer };

/** The running server, or why there is none (`skip` = allowed to skip). */
export function testServer(): { server: S3TestServer } | { error: string; skip: boolean } {
  const raw = process.env['OFFSITE_TEST_S3'];
  if (raw) return { server: JSON.parse(raw) as S3TestServer };
  const reason = process.env['OFFSITE_TEST_RGW_ERROR'] ?? 'OFFSITE_TEST_S3 is not set: run the tests through scripts/run-tests.mjs, which starts Ceph RGW';
  const skip = process.env['OFFSITE_TEST_ALLOW_SKIP'] === '1' && !process.env['CI'];
  if (skip) console.error(`# SKIPPING S3 tests: no RGW: ${reason}`);
  return { error: `no Ceph RGW for the S3 tests: ${reason}`, skip };
}

/** The server, or throws the reason (so that the calling test fails with it). */
export function requireServer(): S3TestServer {
  const found = testServer();
  if ('server' in found) return found.server;
  throw new Error(found.error);
}

/** `{ skipReason }` for runConformance when skipping is allowed, else `{}`. */
export function skipOptions(): { skipReason?: string } {
  const found = testServer();
  return 'skip' in found && found.skip ? { skipReason: found.error } : {};
}

/** A plain SDK client for test set-up and for looking behind the driver's back. */
export function adminClient(server: S3TestServer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A `type: s3` section for the test server; `overrides` replace or (with `undefined`) drop keys. */
export function s3Section(server: S3TestServer, bucket: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const section: Record<string, unknown> = {
    type: 's3',
    endpoint: server.endpoint,
    region: server.region,
    bucket,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    connectTimeoutMs: 5000,
    requestTimeoutMs: 30_000,
    ...overrides,
  };
  for (const [key, value] of Object.entries(section)) if (value === undefined) delete section[key];
  return section;
}

const made = new Set<string>();
/** The buckets of `made` that keep versions: emptied version by version. */
const versioned = new Set<string>();

/**
 * Creates a new, empty bucket and remembers it for `removeFreshBuckets`: plain, with versioning
 * on (`versioned`), or created with Object Lock enabled (`objectLock`, which turns versioning on).
 */
export async function freshBucket(server: S3TestServer, label: string, options: { versioned?: boolean; objectLock?: boolean } = {}): Promise<string> {
  const bucket = `${label}-${randomUUID()}`.toLowerCase().slice(0, 63);
  const client = adminClient(server);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket, ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
    made.add(bucket);
    if (options.versioned || options.objectLock) versioned.add(bucket);
    if (options.versioned) await client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  } finally {
    client.destroy();
  }
  return bucket;
}

export interface ObjectVersion {
  readonly key: string;
  readonly versionId: string;
  /** 0 for a delete marker. */
  readonly size: number;
  readonly latest: boolean;
  /** A delete marker, not a version with bytes. */
  readonly marker: boolean;
}

/** Every version and delete marker under `prefix` (all pages of ListObjectVersions), versions first. */
export async function versionsIn(client: S3Client, bucket: string, prefix: string): Promise<ObjectVersion[]> {
  const out: ObjectVersion[] = [];
  const markers: ObjectVersion[] = [];
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
    for (const v of page.Versions ?? []) out.push({ key: v.Key as string, versionId: v.VersionId as string, size: v.Size ?? 0, latest: v.IsLatest === true, marker: false });
    for (const m of page.DeleteMarkers ?? []) markers.push({ key: m.Key as string, versionId: m.VersionId as string, size: 0, latest: m.IsLatest === true, marker: true });
    if (!page.IsTruncated) return [...out, ...markers];
    keyMarker = page.NextKeyMarker;
    versionIdMarker = page.NextVersionIdMarker;
  }
}

/** Deletes every version and delete marker in a versioned bucket, locked ones too (GOVERNANCE, bypassed). */
export async function removeAllVersions(client: S3Client, bucket: string): Promise<void> {
  for (const v of await versionsIn(client, bucket, '')) {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.key, VersionId: v.versionId, BypassGovernanceRetention: true }));
  }
}

/** Empties (objects and open uploads) and deletes one bucket. */
export async function removeBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    for (const u of uploads.Uploads ?? []) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
    const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    await Promise.all((objects.Contents ?? []).map((o) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }))));
    if (!uploads.IsTruncated && !objects.IsTruncated) break;
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

/** Removes every bucket `freshBucket` made. Never throws (cleanup must not hide a test's failure). */
export async function removeFreshBuckets(): Promise<void> {
  const found = testServer();
  if (!('server' in found)) return;
  const client = adminClient(found.server);
  try {
    for (const bucket of [...made]) {
      made.delete(bucket);
      const emptied = versioned.delete(bucket) ? removeAllVersions(client, bucket) : Promise.resolve();
      await emptied.then(() => removeBucket(client, bucket)).catch((err: unknown) => console.error(`# could not remove test bucket ${bucket}: ${String(err)}`));
    }
  } finally {
    client.destroy();
  }
}

/** Every current key under `prefix` in `bucket`, sorted (all pages of ListObjectsV2). */
export async function keysIn(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key as string);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}
