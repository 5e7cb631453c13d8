/**
 * Client-side encryption end to end on an SFTP destination (the test sshd) and an S3 destination
 * (Ceph RGW): the cases of ./encryption-suite.ts. The sshd serves a folder of this machine, so its
 * stored bytes are read and changed there; RGW's through an admin S3 client.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { storedSize } from '../../src/crypto/format.js';
import { DestinationKey } from '../../src/crypto/keys.js';
import { createDriver } from '../../src/drivers/index.js';
import { withEncryption } from '../../src/drivers/wrappers/encrypt.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { readKey } from '../conformance/suite.js';
import { filesUnder } from '../helpers/cli.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { freshRoot, makeFolder, removeFreshRoots, requireServer as requireSftp, sectionFor } from '../sftp/server.js';
import { encryptionSuite } from './encryption-suite.js';

after(async () => {
  await removeFreshBuckets();
  await removeFreshRoots();
});

encryptionSuite('sftp (sshd)', async (label) => {
  const server = requireSftp();
  const root = await freshRoot(server, label);
  await makeFolder(root);
  return {
    section: sectionFor(server, root),
    stored: {
      keys: async (prefix) => filesUnder(root).filter((k) => k.startsWith(prefix)),
      read: async (key) => readFileSync(join(root, key)),
      write: async (key, bytes) => { mkdirSync(dirname(join(root, key)), { recursive: true }); writeFileSync(join(root, key), bytes); },
    },
  };
});

encryptionSuite('s3 (Ceph RGW)', async (label) => {
  const server = requireS3();
  const bucket = await freshBucket(server, label);
  const client = adminClient(server);
  const prefix = 'offsite/';
  return {
    section: s3Section(server, bucket, { prefix }),
    stored: {
      keys: async (under) => (await keysIn(client, bucket, `${prefix}${under}`)).map((k) => k.slice(prefix.length)),
      read: async (key) => Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }))).Body?.transformToByteArray() ?? new Uint8Array()),
      write: async (key, bytes) => { await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${key}`, Body: bytes })); },
    },
  };
});

/**
 * An encrypted upload interrupted after its first part resumes on the real servers: the stored
 * part matches when sealed again (S3: the open multipart upload's part ETag; sftp: the partial
 * file), only the rest is sent, and the object reads back whole.
 */
describe('interrupted encrypted uploads resume (sshd, RGW)', () => {
  const key = new DestinationKey('vault', randomBytes(32));
  const CHUNK = 64 * 1024;
  const PART = 5 * 1024 * 1024; // S3's smallest part, whole 64 KiB chunks
  const cases: [string, () => Promise<Record<string, unknown>>][] = [
    ['s3', async () => s3Section(requireS3(), await freshBucket(requireS3(), 'enc-resume'))],
    ['sftp', async () => { const root = await freshRoot(requireSftp(), 'enc-resume'); await makeFolder(root); return sectionFor(requireSftp(), root); }],
  ];
  for (const [type, section] of cases) {
    it(`${type}: the first part is confirmed, not sent again`, async () => {
      const inner = await createDriver('vault', await section());
      const driver = withEncryption(inner, key, CHUNK);
      try {
        const data = randomBytes(2 * PART + 12_345);
        const first = await driver.openWrite('b/big', { size: data.length, partBytes: PART });
        await first.write(0, data.subarray(0, PART));
        await first.suspend();
        const second = await driver.openWrite('b/big', { size: data.length, partBytes: PART });
        assert.ok(second.resumableParts.has(0), 'part 0 is found at the destination');
        assert.equal(await second.matches(0, data.subarray(0, PART)), true);
        await second.write(1, data.subarray(PART, 2 * PART));
        await second.write(2, data.subarray(2 * PART));
        const committed = await second.commit({ hash: 'xxh64:0000000000000000' });
        const stored = await readKey(inner, 'b/big');
        assert.equal(stored.length, storedSize(data.length, CHUNK));
        assert.equal(committed?.stored?.hash, (await getHasher()).hash(stored));
        assert.deepEqual(await readKey(driver, 'b/big'), data);
      } finally {
        await driver.close();
      }
    });
  }
});
