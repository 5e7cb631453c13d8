/**
 * Reuse with a bucket source whose ETags are trusted (issue 12, item 4; the source's `trustEtags`
 * key), against Ceph RGW through the built CLI: milvus-backup's bucket is a `minio` source, the
 * copies go to a local folder and to an S3 bucket. Every object is put in one PutObject, so its
 * ETag is the MD5 of its bytes. With `trustEtags`, night 2's unchanged objects (same path, size
 * and ETag as night 1's records) are not read at the source at all (the run's `bytesRead` is
 * about the changed objects alone) and are still created server-side and byte for byte; a changed
 * object (same path and size, new bytes, new ETag) is read and sent. Without the key every
 * object is read, as before.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import { deriveNight, makeNights, type Nights } from '../helpers/nights.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { minioSection } from '../s3/minio-section.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer, s3Section, type S3TestServer } from '../s3/server.js';

const NIGHT1 = 'backup_2025_12_01_01_00_00';
const NIGHT2 = 'backup_2025_12_02_01_00_00';
const NIGHT3 = 'backup_2025_12_03_01_00_00';
const CHUNK_BYTES = 128 * 1024;
const UTC = { TZ: 'UTC' };

interface DestinationJson { name: string; status: string; filesCopied: number; filesReused: number }
interface ReplicateJson { bytesRead: number; destinations: DestinationJson[] }

describe('reuse from a bucket source with trusted ETags (CLI, Ceph RGW)', () => {
  let s3: S3TestServer;
  let admin: S3Client;
  let dir: string;
  let nights: Nights;
  let sourceBucket: string;
  let cloudBucket: string;
  const local = (...rest: string[]): string => join(dir, 'vault', ...rest);
  const tree = (...rest: string[]): string => join(dir, 'backups', ...rest);
  const configWith = (trustEtags: boolean): string => {
    const path = join(dir, `offsite-${trustEtags}.yaml`);
    writeFileSync(path, stringify({
      source: { ...minioSection(s3, { bucketName: sourceBucket, rootPath: 'backup' }), ...(trustEtags ? { trustEtags: true } : {}) },
      destinations: { vault: { type: 'local', root: local() }, cloud: s3Section(s3, cloudBucket, { prefix: 'copies/' }) },
      options: { quietPeriod: '0s', chunkSize: `${CHUNK_BYTES / 1024}KiB`, retries: 2 },
    }));
    return path;
  };
  const replicate = async (trustEtags: boolean, backup: string): Promise<ReplicateJson> => {
    const run = await runCli(['--config', configWith(trustEtags), '--json', 'replicate', backup], { env: UTC, timeoutMs: 180_000 });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    return jsonOf<ReplicateJson>(run);
  };
  /** Puts every file of `backup` into the source bucket, each in one PutObject (its ETag the MD5 of its bytes). */
  const upload = async (backup: string): Promise<void> => {
    await Promise.all(filesUnder(tree(backup)).map((path) =>
      admin.send(new PutObjectCommand({ Bucket: sourceBucket, Key: `backup/${backup}/${path}`, Body: readFileSync(tree(backup, path)) }))));
  };
  const sameCopies = async (backup: string): Promise<void> => {
    const expected = treeDigest(tree(backup));
    assert.deepEqual(treeDigest(local(backup), ['.offsite']), expected, `vault/${backup}`);
    const prefix = `copies/${backup}/`;
    const keys = (await keysIn(admin, cloudBucket, prefix)).filter((k) => !k.slice(prefix.length).startsWith('.offsite/'));
    const cloud = new Map(await Promise.all(keys.map(async (key) => {
      const body = await (await admin.send(new GetObjectCommand({ Bucket: cloudBucket, Key: key }))).Body?.transformToByteArray();
      return [key.slice(prefix.length), createHash('sha256').update(body ?? new Uint8Array()).digest('hex')] as const;
    })));
    assert.deepEqual(cloud, expected, `cloud/${backup}`);
  };

  before(async () => {
    s3 = requireServer();
    admin = adminClient(s3);
    dir = tempDir('reuse-bucket-source');
    // The largest file well under half the backup: reading only the changed ones is far from reading all.
    nights = await makeNights(tree(), NIGHT1, NIGHT2, { seed: 1207, totalBytes: 3 * 1024 * 1024, largestFileBytes: 384 * 1024, files: 24 });
    assert.ok(3 * nights.changedBytes < nights.bytes - nights.changedBytes, `changed ${nights.changedBytes} of ${nights.bytes} bytes`);
    sourceBucket = await freshBucket(s3, 'reuse-src');
    cloudBucket = await freshBucket(s3, 'reuse-dst');
    await upload(NIGHT1);
    await upload(NIGHT2);
    const first = await replicate(true, NIGHT1);
    assert.ok(first.bytesRead >= nights.bytes, 'night 1: every object read');
  });
  after(async () => {
    await removeFreshBuckets();
    admin?.destroy();
  });

  it('night 2: unchanged objects are not read at the source, changed ones are read and sent, every copy equals the source', async () => {
    const result = await replicate(true, NIGHT2);
    const shared = nights.files.length - nights.changed.length;
    for (const d of result.destinations) {
      assert.equal(d.status, 'complete', d.name);
      assert.equal(d.filesReused, shared, `${d.name}: every unchanged file reused`);
      assert.equal(d.filesCopied, nights.changed.length, `${d.name}: the changed files (new ETags) sent`);
    }
    // The changed objects, read once for both destinations (more only for a destination that fell
    // behind and read alone: at most 1 + 2 times), far from the unchanged bytes.
    assert.ok(result.bytesRead >= nights.changedBytes && result.bytesRead <= 3 * nights.changedBytes,
      `${result.bytesRead} bytes read at the source for ${nights.changedBytes} changed bytes (backup: ${nights.bytes})`);
    await sameCopies(NIGHT2);
    const verify = await runCli(['--config', configWith(true), '--json', 'verify', NIGHT2, '--deep'], { env: UTC, timeoutMs: 120_000 });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('without trustEtags every object is read (and the unchanged ones still reused)', async () => {
    deriveNight(tree(), NIGHT2, NIGHT3, [nights.changed[1] as string]);
    await upload(NIGHT3);
    const result = await replicate(false, NIGHT3);
    assert.ok(result.bytesRead >= nights.bytes, `${result.bytesRead} bytes read for a backup of ${nights.bytes}`);
    for (const d of result.destinations) assert.equal(d.filesReused, nights.files.length - 1, d.name);
    await sameCopies(NIGHT3);
  });

  it('trustEtags is refused where it means nothing', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, stringify({ source: { type: 'local', root: tree(), trustEtags: true }, destinations: { vault: { type: 'local', root: local() } } }));
    const run = await runCli(['--config', path, 'list'], { env: UTC });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /trustEtags" is for a bucket source/);
  });
});
