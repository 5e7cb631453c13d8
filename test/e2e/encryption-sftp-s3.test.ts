/**
 * Client-side encryption end to end on an SFTP destination (the test sshd) and an S3 destination
 * (Ceph RGW): the cases of ./encryption-suite.ts. The sshd serves a folder of this machine, so its
 * stored bytes are read and changed there; RGW's through an admin S3 client.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
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
