/**
 * `list` with `descend` on the object-store driver, both flavours, against Ceph RGW: it walks one
 * level (a `Delimiter: '/'` listing) at a time into only the folders the caller wants, so the
 * reuse index's search for earlier copies costs a listing per copy instead of every key of every
 * copy. Checked by what the store is asked (its listings are counted by prefix) and by the
 * entries, which must equal those of a flat listing filtered the same way.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MinioStore } from '../../src/drivers/minio/client.js';
import { parseMinioOptions } from '../../src/drivers/minio/options.js';
import { ObjectDriver } from '../../src/drivers/object-store/driver.js';
import type { ObjectStore } from '../../src/drivers/object-store/store.js';
import { AwsStore } from '../../src/drivers/s3/client.js';
import { parseS3Options } from '../../src/drivers/s3/options.js';
import { objectStoreLocation } from '../../src/drivers/location.js';
import { listAll, putObject } from '../conformance/suite.js';
import { minioSection } from './minio-section.js';
import { freshBucket, removeFreshBuckets, requireServer, s3Section, testServer } from './server.js';

const found = testServer();
const skip = 'skip' in found && found.skip ? found.error : undefined;

/** The store, with every flat listing and level listing it is asked for recorded by prefix. */
function recorded(inner: ObjectStore, asked: string[]): ObjectStore {
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if ((property !== 'list' && property !== 'listLevel') || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
      return (prefix: string, ...rest: unknown[]) => {
        asked.push(`${property} ${prefix}`);
        return (value as (...args: unknown[]) => unknown).call(target, prefix, ...rest);
      };
    },
  });
}

const FILES = ['top', 'b1/.offsite/manifest.json', 'b1/binlogs/seg/f', 'b1/binlogs/seg/g', 'b2/.offsite/manifest.json', 'b2/.offsite/x/deep', 'b2/binlogs/seg/field/f'];
const wanted = (folder: string): boolean => !folder.includes('/') || (folder.endsWith('/.offsite') && folder.indexOf('/') === folder.lastIndexOf('/'));

describe('object-store list with descend', { skip }, () => {
  after(removeFreshBuckets);

  const makers: Array<[string, (bucket: string, asked: string[]) => ObjectDriver]> = [
    ['s3', (bucket, asked) => {
      const options = parseS3Options('cloud', s3Section(requireServer(), bucket, { prefix: 'root', listPageSize: 2 }));
      return new ObjectDriver('cloud', recorded(new AwsStore(options), asked), {
        prefix: options.prefix, description: 'test', location: objectStoreLocation({ endpoint: options.endpoint, bucket: options.bucket, prefix: options.prefix }), maxConcurrency: 4, maxParts: 10_000, listPageSize: options.listPageSize,
      });
    }],
    ['minio', (bucket, asked) => {
      const options = parseMinioOptions('source', minioSection(requireServer(), { bucketName: bucket, rootPath: 'root' }));
      return new ObjectDriver('source', recorded(new MinioStore(options), asked), {
        prefix: options.rootPath, description: 'test', location: objectStoreLocation({ endpoint: 'http://test', bucket: options.bucketName, prefix: options.rootPath }), maxConcurrency: 4, maxParts: 10_000, listPageSize: 2,
      });
    }],
  ];
  for (const [label, make] of makers) {
    it(`${label}: lists only the folders descend wants, one level at a time`, async () => {
      const bucket = await freshBucket(requireServer(), `level-${label}`);
      const asked: string[] = [];
      const driver = make(bucket, asked);
      try {
        for (const key of FILES) await putObject(driver, key, Buffer.from(key), 1024);
        asked.length = 0;
        const keys: string[] = [];
        for await (const entry of driver.list('', { descend: wanted, hashes: false })) keys.push(entry.key);
        assert.deepEqual(keys.sort(), ['b1/.offsite/manifest.json', 'b2/.offsite/manifest.json', 'top']);
        const levels = [...new Set(asked)].sort();
        assert.deepEqual(levels, ['listLevel root/', 'listLevel root/b1/', 'listLevel root/b1/.offsite/', 'listLevel root/b2/', 'listLevel root/b2/.offsite/'], 'binlogs/ and .offsite/x/ are never listed');
        asked.length = 0;
        const inB2: string[] = [];
        for await (const entry of driver.list('b2/', { descend: () => true, hashes: false })) inB2.push(entry.key);
        assert.deepEqual(inB2.sort(), FILES.filter((k) => k.startsWith('b2/')).sort(), 'a walk under a prefix finds all it holds');
        assert.ok(asked.every((a) => a.startsWith('listLevel root/b2/')), `only b2 was listed: ${asked.join(', ')}`);
        asked.length = 0;
        assert.deepEqual((await listAll(driver, '')).map((e) => e.key).sort(), [...FILES].sort(), 'without descend, everything');
        assert.deepEqual([...new Set(asked)], ['list root/'], 'without descend, one flat listing');
      } finally {
        await driver.close();
      }
    });
  }
});
