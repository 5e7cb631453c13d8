/**
 * Multipart behaviour of the object driver against Ceph RGW, beyond the conformance suite:
 * resume uploads only the missing parts, ListParts/ListMultipartUploads pagination, stale
 * uploads aborted, the signed SHA-256 or Content-MD5 catching corrupted bytes, the stored hash and the temp key.
 * The driver is built on a store wrapper that counts (and can corrupt) requests.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { AwsStore } from '../../src/drivers/s3/client.js';
import { ObjectDriver, tempKeyOf } from '../../src/drivers/object-store/driver.js';
import { parseS3Options } from '../../src/drivers/s3/options.js';
import { objectStoreLocation } from '../../src/drivers/location.js';
import { md5, sha256Hex, type ObjectStore, type PayloadDigest } from '../../src/drivers/object-store/store.js';
import type { Driver, WriteSession } from '../../src/drivers/types.js';
import { hashOf, partOf, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer, s3Section, testServer } from './server.js';

const MiB = 1024 * 1024;
const PART = 5 * MiB;

interface Counters {
  uploadPart: number;
  uploadedBytes: number;
  listPartsCalls: number;
  createUpload: number;
  /** When set, the next UploadPart/PutObject sends these bytes with the digest of the real ones. */
  corruptNext: boolean;
  /** The kind of digest every upload carried, in order. */
  digests: Array<'md5' | 'sha256'>;
  /** The next CompleteMultipartUpload: its answer is lost (it happens), or it never reaches the server. */
  completeFault?: 'lose-answer' | 'not-sent';
  /** When set, the payload probe (`probeSignedPayloads`) waits for it before it goes out. */
  probeGate?: Promise<void>;
}

/** A store that counts requests and can damage a body after its digest was computed. */
function countingStore(inner: ObjectStore, counters: Counters): ObjectStore {
  const damage = (body: Uint8Array): Uint8Array => {
    if (!counters.corruptNext) return body;
    counters.corruptNext = false;
    const copy = Buffer.from(body);
    copy[0] = (copy[0] as number) ^ 0xff;
    return copy;
  };
  const overrides: Partial<ObjectStore> = {
    uploadPart: (key: string, id: string, n: number, body: Uint8Array, digest: PayloadDigest, signal?: AbortSignal) => {
      counters.uploadPart++;
      counters.uploadedBytes += body.length;
      counters.digests.push(digest.md5Base64 !== undefined ? 'md5' : 'sha256');
      return inner.uploadPart(key, id, n, damage(body), digest, signal);
    },
    put: (key: string, body: Uint8Array, digest: PayloadDigest, metadata: Record<string, string>, signal?: AbortSignal) => {
      counters.digests.push(digest.md5Base64 !== undefined ? 'md5' : 'sha256');
      return inner.put(key, damage(body), digest, metadata, signal);
    },
    listParts: (key: string, id: string, pageSize: number, signal?: AbortSignal) => {
      counters.listPartsCalls++;
      return inner.listParts(key, id, pageSize, signal);
    },
    completeUpload: async (key: string, id: string, parts: ReadonlyArray<{ partNumber: number; etag: string }>, signal?: AbortSignal) => {
      const fault = counters.completeFault;
      counters.completeFault = undefined;
      if (fault !== 'not-sent') await inner.completeUpload(key, id, parts, signal);
      if (fault !== undefined) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    },
    createUpload: (key: string, signal?: AbortSignal) => {
      counters.createUpload++;
      return inner.createUpload(key, signal);
    },
  };
  const probe = inner.probeSignedPayloads;
  if (counters.probeGate !== undefined && probe !== undefined) {
    overrides.probeSignedPayloads = async (key: string, signal?: AbortSignal) => {
      await counters.probeGate;
      return probe.call(inner, key, signal);
    };
  }
  return new Proxy(inner, {
    get: (target, name: keyof ObjectStore) => {
      const value = overrides[name] ?? target[name];
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function countedDriver(bucket: string, overrides: Record<string, unknown> = {}, probeGate?: Promise<void>): Promise<{ driver: ObjectDriver; counters: Counters; store: AwsStore }> {
  const server = requireServer();
  const options = parseS3Options('cloud', s3Section(server, bucket, overrides));
  const counters: Counters = { uploadPart: 0, uploadedBytes: 0, listPartsCalls: 0, createUpload: 0, corruptNext: false, digests: [], ...(probeGate ? { probeGate } : {}) };
  const store = new AwsStore(options);
  const driver = new ObjectDriver('cloud', countingStore(store, counters), {
    prefix: options.prefix, description: 'test', location: objectStoreLocation({ endpoint: options.endpoint, bucket: options.bucket, prefix: options.prefix }), maxConcurrency: 4, maxParts: 10_000, listPageSize: options.listPageSize,
  });
  return { driver, counters, store };
}

/** What the engine does: skip parts confirmed by matches(), write the others. */
async function resumeAndCommit(session: WriteSession, data: Buffer): Promise<number[]> {
  const written: number[] = [];
  const count = Math.ceil(data.length / session.partBytes);
  for (let index = 0; index < count; index++) {
    const bytes = partOf(data, index, session.partBytes);
    if (session.resumableParts.has(index) && (await session.matches(index, bytes))) continue;
    await session.write(index, bytes);
    written.push(index);
  }
  await session.commit({ hash: await hashOf(data) });
  return written;
}

const found = testServer();
const skip = 'skip' in found && found.skip ? found.error : undefined;

describe('s3 multipart against Ceph RGW', { skip }, () => {
  after(removeFreshBuckets);
  const drivers: Driver[] = [];
  after(async () => {
    for (const d of drivers) await d.close();
  });

  it('a resumed upload sends only the missing parts (counted UploadPart calls and bytes)', async () => {
    const bucket = await freshBucket(requireServer(), 's3-resume');
    const data = seededBytes(PART * 4 + 1234, 1);
    const first = await countedDriver(bucket);
    drivers.push(first.driver);
    const session = await first.driver.openWrite('big/file.bin', { size: data.length, partBytes: PART });
    await session.write(0, partOf(data, 0, PART));
    await session.write(2, partOf(data, 2, PART));
    await session.suspend(); // the process "dies" here

    const second = await countedDriver(bucket);
    drivers.push(second.driver);
    const resumed = await second.driver.openWrite('big/file.bin', { size: data.length, partBytes: PART });
    assert.deepEqual([...resumed.resumableParts].sort(), [0, 2]);
    const written = await resumeAndCommit(resumed, data);
    assert.deepEqual(written, [1, 3, 4]);
    assert.equal(second.counters.uploadPart, 3, 'UploadPart calls in the resumed run');
    assert.equal(second.counters.uploadedBytes, PART * 2 + 1234, 'bytes sent in the resumed run');
    assert.equal(second.counters.createUpload, 0, 'the open upload was reused');
    assert.ok((await readKey(second.driver, 'big/file.bin')).equals(data));
  });

  it('a part whose stored bytes differ is not confirmed and is sent again', async () => {
    const bucket = await freshBucket(requireServer(), 's3-resume-wrong');
    const data = seededBytes(PART * 2 + 10, 2);
    const { driver, counters } = await countedDriver(bucket);
    drivers.push(driver);
    const session = await driver.openWrite('f', { size: data.length, partBytes: PART });
    await session.write(0, seededBytes(PART, 99)); // right size, wrong bytes
    await session.write(1, partOf(data, 1, PART));
    await session.suspend();
    counters.uploadPart = 0;
    const resumed = await driver.openWrite('f', { size: data.length, partBytes: PART });
    assert.deepEqual(await resumeAndCommit(resumed, data), [0, 2]);
    assert.equal(counters.uploadPart, 2);
    assert.ok((await readKey(driver, 'f')).equals(data));
  });

  it('ListParts is paginated: with pages of 2 parts all 5 parts are found', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 's3-listparts');
    const data = seededBytes(PART * 5, 3);
    const { driver } = await countedDriver(bucket, { listPageSize: 2 });
    drivers.push(driver);
    const session = await driver.openWrite('paged', { size: data.length, partBytes: PART });
    for (let i = 0; i < 5; i++) await session.write(i, partOf(data, i, PART));
    await session.suspend();

    // The server really cuts the list into pages of 2 (so the driver must follow the markers).
    const admin = adminClient(server);
    const uploads = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    const upload = uploads.Uploads?.[0];
    assert.ok(upload?.UploadId);
    const page = await admin.send(new ListPartsCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId, MaxParts: 2 }));
    assert.equal(page.Parts?.length, 2);
    assert.equal(page.IsTruncated, true);
    admin.destroy();

    const resumed = await driver.openWrite('paged', { size: data.length, partBytes: PART });
    assert.deepEqual([...resumed.resumableParts].sort(), [0, 1, 2, 3, 4]);
    assert.deepEqual(await resumeAndCommit(resumed, data), [], 'nothing to send again');
    assert.equal((await driver.stat('paged'))?.hash, await hashOf(data));
  });

  it('stale uploads of the same key are aborted; the newest fitting one is resumed (uploads listed in pages of 1)', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 's3-stale');
    const data = seededBytes(PART * 2 + 5, 4);
    const admin = adminClient(server);
    const temp = tempKeyOf('obj');
    // An old run with another part size (8 MiB parts: does not fit this layout).
    const old = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: temp }));
    await admin.send(new UploadPartCommand({ Bucket: bucket, Key: temp, UploadId: old.UploadId, PartNumber: 1, Body: seededBytes(8 * MiB, 5) }));
    await new Promise((resolve) => setTimeout(resolve, 1100)); // Initiated has 1 s resolution on some servers
    // A newer run with the same layout: part 1 stored.
    const { driver, counters } = await countedDriver(bucket, { listPageSize: 1 });
    drivers.push(driver);
    const session = await driver.openWrite('obj', { size: data.length, partBytes: PART });
    await session.write(1, partOf(data, 1, PART));
    await session.suspend();
    const newest = (await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.find((u) => u.UploadId !== old.UploadId);
    assert.ok(newest);
    // And a third, even newer, empty one (a run that died right after creating it): no parts, fits trivially.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const empty = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: temp }));

    const resumed = await driver.openWrite('obj', { size: data.length, partBytes: PART });
    const left = (await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
    assert.deepEqual(left.map((u) => u.UploadId), [empty.UploadId], 'only the newest fitting upload is kept; the others were aborted');
    assert.deepEqual([...resumed.resumableParts], [], 'the newest upload has no parts');
    counters.uploadPart = 0;
    assert.deepEqual(await resumeAndCommit(resumed, data), [0, 1, 2]);
    assert.equal(counters.uploadPart, 3);
    assert.ok((await readKey(driver, 'obj')).equals(data));
    assert.deepEqual((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], [], 'no upload left after commit');
    admin.destroy();
  });

  it('a part damaged on the way is refused by the server (signed SHA-256 on RGW): kind integrity, and a retry succeeds', async () => {
    const bucket = await freshBucket(requireServer(), 's3-md5');
    const data = seededBytes(PART * 2 + 1, 6);
    const { driver, counters, store } = await countedDriver(bucket);
    drivers.push(driver);
    const session = await driver.openWrite('damaged', { size: data.length, partBytes: PART });
    counters.corruptNext = true;
    const err = await rejectsWithKind(() => session.write(0, partOf(data, 0, PART)), 'integrity', 'UploadPart with damaged bytes');
    assert.match(err.message, /^cloud: s3:\/\/[^ ]+\/damaged: write part 0: the server refused the bytes: SHA-256 mismatch \(XAmzContentSHA256Mismatch\)$/);
    await session.write(0, partOf(data, 0, PART)); // the session is still usable
    await session.write(1, partOf(data, 1, PART));
    await session.write(2, partOf(data, 2, PART));
    await session.commit({ hash: await hashOf(data) });
    assert.ok((await readKey(driver, 'damaged')).equals(data));
    assert.deepEqual([...new Set(counters.digests)], ['sha256'], 'RGW checks signed payloads: no MD5 is computed for it');
    const keys: string[] = [];
    for await (const object of store.list('', 1000)) keys.push(object.key);
    assert.deepEqual(keys.filter((key) => key.includes('payload-check')), [], 'the probe of the first write left no object');

    const small = await driver.openWrite('small', { size: 100, partBytes: 100 });
    await small.write(0, data.subarray(0, 100));
    counters.corruptNext = true;
    const smallHash = await hashOf(data.subarray(0, 100));
    await rejectsWithKind(() => small.commit({ hash: smallHash }), 'integrity', 'PutObject with damaged bytes');
    assert.equal(await driver.stat('small'), undefined, 'nothing stored');

    // A caller's MD5 (the encryption wrapper takes it while sealing) goes as Content-MD5, which the server checks too.
    const given = await driver.openWrite('given', { size: data.length, partBytes: PART });
    counters.corruptNext = true;
    const part = partOf(data, 0, PART);
    const md5Err = await rejectsWithKind(() => given.write(0, part, { md5: md5(part) }), 'integrity', 'UploadPart with damaged bytes and the caller\'s MD5');
    assert.match(md5Err.message, /their MD5 does not match Content-MD5 \(BadDigest\)$/);

    // A caller's SHA-256 (the encryption wrapper takes it while sealing) is the signed payload
    // hash as given, not taken again: a wrong one is refused although the bytes are intact.
    assert.equal(driver.capabilities.partSha256, true, 'RGW checks signed payloads: parts take the caller\'s SHA-256');
    assert.equal(driver.capabilities.partMd5, false);
    const other = partOf(data, 1, PART);
    await rejectsWithKind(() => given.write(1, other, { sha256: sha256Hex(part) }), 'integrity', 'UploadPart with the SHA-256 of other bytes');
    counters.corruptNext = true;
    await rejectsWithKind(() => given.write(1, other, { sha256: sha256Hex(other) }), 'integrity', 'UploadPart with damaged bytes and the caller\'s SHA-256');
    await given.write(1, other, { sha256: sha256Hex(other) });
    await given.abort();
    const one = await driver.openWrite('given-one', { size: 100, partBytes: 100 });
    await one.write(0, data.subarray(0, 100), { sha256: sha256Hex(data.subarray(100, 200)) });
    await rejectsWithKind(() => one.commit({ hash: smallHash }), 'integrity', 'PutObject with the SHA-256 of other bytes');
    await one.write(0, data.subarray(0, 100), { sha256: sha256Hex(data.subarray(0, 100)) });
    await one.commit({ hash: smallHash });
    assert.ok((await readKey(driver, 'given-one')).equals(data.subarray(0, 100)));
  });

  it('a small write (a lock) does not wait for the payload probe and carries Content-MD5; a larger one waits for it (then signed SHA-256 on RGW)', async () => {
    const bucket = await freshBucket(requireServer(), 's3-probe');
    let open!: () => void;
    const gate = new Promise<void>((resolve) => { open = resolve; });
    const { driver, counters, store } = await countedDriver(bucket, {}, gate);
    drivers.push(driver);
    assert.ok(store.probeSignedPayloads !== undefined, 'RGW is outside the vendor table: the first write probes it');
    const lockBytes = Buffer.from('{"token":"t"}\n');
    const small = await driver.openWrite('.offsite/lock.json', { size: lockBytes.length, partBytes: lockBytes.length });
    await small.write(0, lockBytes);
    await small.commit({ hash: await hashOf(lockBytes) });
    assert.deepEqual(counters.digests, ['md5'], 'committed while the probe waits, with Content-MD5');
    assert.ok((await readKey(driver, '.offsite/lock.json')).equals(lockBytes));

    const data = seededBytes(PART + 1, 9);
    let opened = false;
    const opening = driver.openWrite('big.bin', { size: data.length, partBytes: PART }).then((session) => { opened = true; return session; });
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(opened, false, 'a write above SMALL_WRITE_BYTES waits for the probe');
    open();
    const big = await opening;
    await big.write(0, partOf(data, 0, PART));
    await big.write(1, partOf(data, 1, PART));
    await big.commit({ hash: await hashOf(data) });
    assert.deepEqual(counters.digests.slice(1), ['sha256', 'sha256'], 'RGW checks signed payloads: the parts carry no MD5');
    assert.ok((await readKey(driver, 'big.bin')).equals(data));
  });

  it('delete removes an open upload of the temp key and a completed temp object, and the object', async () => {
    const bucket = await freshBucket(requireServer(), 's3-delete-temp');
    const { driver } = await countedDriver(bucket);
    drivers.push(driver);
    const admin = adminClient(requireServer());
    const data = seededBytes(PART + 1, 10);
    const session = await driver.openWrite('a/b.bin', { size: data.length, partBytes: PART });
    await session.write(0, partOf(data, 0, PART));
    await session.suspend();
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: tempKeyOf('a/b.bin'), Body: 'completed temp object' }));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/b.bin', Body: 'the object' }));
    await driver.delete('a/b.bin');
    assert.deepEqual((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], [], 'the open upload was aborted');
    assert.deepEqual((await admin.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? [], [], 'neither the object nor the temp object is left');
    await driver.delete('a/b.bin'); // nothing there: succeeds
    admin.destroy();
  });

  it('the hash is stored as x-amz-meta-offsite-hash; no temp object or upload is left after commit; commit tells the fingerprint HEAD shows', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 's3-hash');
    const data = seededBytes(PART + 7, 7);
    const { driver } = await countedDriver(bucket, { prefix: 'pre/fix' });
    drivers.push(driver);
    const session = await driver.openWrite('a/b.bin', { size: data.length, partBytes: PART });
    await session.write(0, partOf(data, 0, PART));
    await session.write(1, partOf(data, 1, PART));
    const admin = adminClient(server);
    const during = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(during.Uploads?.map((u) => u.Key), ['pre/fix/a/.b.bin.offsite-partial'], 'the upload is for the temp key');
    const hash = await hashOf(data);
    const committed = await session.commit({ hash });
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: 'pre/fix/a/b.bin' }));
    assert.equal(head.Metadata?.['offsite-hash'], hash);
    // From the copy's answer (the engine then makes no HEAD of its own): what HEAD shows.
    assert.equal(committed?.fingerprint, `etag:${(head.ETag ?? '').replace(/"/g, '').toLowerCase()}:${data.length}`);
    assert.equal(head.ContentLength, data.length);
    const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
    assert.deepEqual(listed.Contents?.map((o) => o.Key), ['pre/fix/a/b.bin']);
    assert.deepEqual((await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], []);
    assert.equal((await driver.stat('a/b.bin'))?.hash, hash);
    admin.destroy();
  });

  it('a commit whose CompleteMultipartUpload answer is lost still succeeds (the completed temp object is recognized)', async () => {
    const bucket = await freshBucket(requireServer(), 's3-lost-complete');
    const data = seededBytes(PART * 2 + 3, 10);
    const { driver, counters } = await countedDriver(bucket);
    drivers.push(driver);
    const session = await driver.openWrite('lost', { size: data.length, partBytes: PART });
    for (const i of [0, 1, 2]) await session.write(i, partOf(data, i, PART));
    counters.completeFault = 'lose-answer';
    await session.commit({ hash: await hashOf(data) });
    assert.equal(counters.completeFault, undefined, 'the fault was injected');
    assert.ok((await readKey(driver, 'lost')).equals(data));
    assert.equal((await driver.stat('lost'))?.hash, await hashOf(data));
  });

  it('a failed CompleteMultipartUpload never publishes a stale temp object of the same size', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 's3-stale-temp');
    const data = seededBytes(PART * 2 + 3, 11);
    const stale = seededBytes(data.length, 12);
    // An earlier run completed the temp object with other bytes of the same size, then died.
    const admin = adminClient(server);
    const temp = tempKeyOf('obj');
    const upload = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: temp }));
    const parts = [];
    for (const i of [0, 1, 2]) {
      const out = await admin.send(new UploadPartCommand({ Bucket: bucket, Key: temp, UploadId: upload.UploadId, PartNumber: i + 1, Body: partOf(stale, i, PART) }));
      parts.push({ PartNumber: i + 1, ETag: out.ETag });
    }
    await admin.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: temp, UploadId: upload.UploadId, MultipartUpload: { Parts: parts } }));
    admin.destroy();

    const { driver, counters } = await countedDriver(bucket);
    drivers.push(driver);
    const session = await driver.openWrite('obj', { size: data.length, partBytes: PART });
    for (const i of [0, 1, 2]) await session.write(i, partOf(data, i, PART));
    counters.completeFault = 'not-sent'; // this run's CompleteMultipartUpload never reaches the server
    await rejectsWithKind(() => hashOf(data).then((hash) => session.commit({ hash })), 'retryable', 'commit whose Complete failed');
    assert.equal(await driver.stat('obj'), undefined, 'the stale temp object was not published');
    await session.commit({ hash: await hashOf(data) }); // the upload is still open: the retry completes it
    assert.ok((await readKey(driver, 'obj')).equals(data), 'the committed bytes are this run\'s');
  });

  it('copyWithin above the multipart-copy threshold uses UploadPartCopy and keeps the hash', async () => {
    const bucket = await freshBucket(requireServer(), 's3-bigcopy');
    const { driver } = await countedDriver(bucket, { multipartCopyThresholdBytes: 1024 });
    drivers.push(driver);
    const data = seededBytes(PART + 3, 8);
    const session = await driver.openWrite('src', { size: data.length, partBytes: PART });
    await session.write(0, partOf(data, 0, PART));
    await session.write(1, partOf(data, 1, PART));
    await session.commit({ hash: await hashOf(data) });
    await driver.copyWithin('src', 'dst/copy');
    assert.ok((await readKey(driver, 'dst/copy')).equals(data));
    assert.equal((await driver.stat('dst/copy'))?.hash, await hashOf(data));
  });
});
