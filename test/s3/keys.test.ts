/**
 * Keys and roots with characters that need escaping (space, + % & = ? # ' " ! ( ) * ~ ; , @ $,
 * unicode) through the paths the conformance suite only covers with small objects: a multipart
 * commit (temp key + server-side copy) and copyWithin, with single CopyObject and with
 * UploadPartCopy, for both the `s3` and the `minio` driver.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createMinioDriver } from '../../src/drivers/minio/index.js';
import { createS3Driver } from '../../src/drivers/s3/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { hashOf, listAll, putObject, readKey, seededBytes } from '../conformance/suite.js';
import { minioSection } from './minio-section.js';
import { freshBucket, removeFreshBuckets, requireServer, s3Section, testServer } from './server.js';

const found = testServer();
const skip = 'skip' in found && found.skip ? found.error : undefined;
const PART = 5 * 1024 * 1024;
const KEYS = ['a b+c%d&e=f?g#h/日本 語.bin', 'x\'y"z!(*)~;,@$.bin'];
/**
 * Ceph RGW 16.2 aborts (SIGABRT in RGWPutObj::verify_permission) on an UploadPartCopy whose
 * source key contains `%`: a server bug, see quirks.ts. That case copies keys without `%`.
 */
const PART_COPY_KEYS = ['a b+c&e=f?g#h/日本 語.bin', 'x\'y"z!(*)~;,@$.bin'];

describe('keys that need escaping, multipart and server-side copies', { skip }, () => {
  after(removeFreshBuckets);

  const makers: Array<[string, (bucket: string, threshold: number) => Promise<Driver>]> = [
    ['s3', async (bucket, threshold) => createS3Driver('cloud', s3Section(requireServer(), bucket, { prefix: 'p q/ü', multipartCopyThresholdBytes: threshold }))],
    ['minio', async (bucket, threshold) => createMinioDriver('source', minioSection(requireServer(), { bucketName: bucket, rootPath: 'm n/é', multipartCopyThresholdBytes: threshold }))],
  ];
  for (const [label, make] of makers) {
    for (const threshold of [5 * 1024 ** 3, 1024]) {
      it(`${label}, ${threshold === 1024 ? 'UploadPartCopy' : 'CopyObject'}`, async () => {
        const driver = await make(await freshBucket(requireServer(), `keys-${label}`), threshold);
        try {
          const data = seededBytes(PART + 10, 9);
          const keys = threshold === 1024 ? PART_COPY_KEYS : KEYS;
          for (const key of keys) {
            await putObject(driver, key, data, PART);
            await driver.copyWithin?.(key, `${key}.copy`);
            for (const k of [key, `${key}.copy`]) {
              assert.equal((await driver.stat(k))?.hash, await hashOf(data), k);
              assert.ok((await readKey(driver, k, PART - 5, 10)).equals(data.subarray(PART - 5, PART + 5)), k);
            }
          }
          assert.deepEqual((await listAll(driver, '')).map((e) => e.key), keys.flatMap((k) => [k, `${k}.copy`]).sort());
        } finally {
          await driver.close();
        }
      });
    }
  }
});
