/**
 * Both object-store flavours (`s3` on the AWS SDK, `minio` on the minio client) in a bucket with
 * versioning enabled, on the real Ceph RGW (issue 11 finding 12): a multipart write leaves no
 * version of its temp object, and `delete` removes every version and delete marker of the key
 * and of its temp object, also across ListObjectVersions pages (`listPageSize: 1`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { writeBytes } from '../../src/drivers/io.js';
import { createMinioDriver } from '../../src/drivers/minio/index.js';
import { createS3Driver } from '../../src/drivers/s3/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer, s3Section, versionsIn, type S3TestServer } from './server.js';
import { minioSection } from './minio-section.js';

const PART = 5 * 1024 * 1024;

/** Every version and delete marker in the bucket, as `key`, `key (noncurrent)` or `key (delete marker)`, sorted. */
async function versionNames(client: S3Client, bucket: string): Promise<string[]> {
  return (await versionsIn(client, bucket, '')).map((v) => `${v.key}${v.marker ? ' (delete marker)' : v.latest ? '' : ' (noncurrent)'}`).sort();
}

async function writeMultipart(driver: Driver, key: string, bytes: Buffer): Promise<void> {
  const session = await driver.openWrite(key, { size: bytes.length, partBytes: PART });
  for (let i = 0; i * PART < bytes.length; i++) await session.write(i, bytes.subarray(i * PART, (i + 1) * PART));
  await session.commit({ hash: 'xxh64:0123456789abcdef' });
}

describe('object-store driver in a versioned bucket (Ceph RGW)', () => {
  let server: S3TestServer;
  let admin: S3Client;

  before(() => {
    server = requireServer();
    admin = adminClient(server);
  });
  after(async () => {
    admin?.destroy();
    await removeFreshBuckets();
  });

  const flavours: Array<[string, (bucket: string) => Promise<Driver>]> = [
    ['s3', (bucket) => createS3Driver('cloud', s3Section(server, bucket, { prefix: 'p/', listPageSize: 1 }))],
    ['minio', (bucket) => createMinioDriver('cloud', minioSection(server, { bucketName: bucket, rootPath: 'p', listPageSize: 1 }))],
  ];
  for (const [flavour, create] of flavours) {
    it(`${flavour}: no temp version after a multipart commit; delete leaves no version or delete marker`, async () => {
      const bucket = await freshBucket(server, `ver-${flavour}`, { versioned: true });
      const driver = await create(bucket);
      try {
        await writeMultipart(driver, 'a/big.bin', randomBytes(PART + 1000));
        await writeBytes(driver, 'a/small.json', Buffer.from('one'), 'xxh64:1111111111111111');
        await writeBytes(driver, 'a/small.json', Buffer.from('two'), 'xxh64:2222222222222222');
        assert.deepEqual(await versionNames(admin, bucket), ['p/a/big.bin', 'p/a/small.json', 'p/a/small.json (noncurrent)'], 'no version of the temp object');
        await driver.delete('a/big.bin');
        await driver.delete('a/small.json');
        assert.deepEqual(await versionNames(admin, bucket), [], 'every version and delete marker is gone');
      } finally {
        await driver.close();
      }
    });
  }
});
