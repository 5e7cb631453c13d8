/**
 * The upload path of the `s3` driver, beyond the conformance suite:
 * - request shape, against a local fake endpoint that records what arrives (no server needed):
 *   uploads are signed with UNSIGNED-PAYLOAD next to a signed Content-MD5, other bodies keep
 *   their SHA-256, no `Expect: 100-continue`; the reused middleware chains honour each call's
 *   own abort signal;
 * - `ByteStash` (src/drivers/object-store/resources.ts) on its own (the toolkit's `Semaphore` that caps
 *   uploads is tested in test/drivers/toolkit.test.ts);
 * - against Ceph RGW: `maxConcurrency` caps the uploads in flight; a single-part session keeps
 *   its bytes across a failed commit, so a retried commit sends them again, and returns its
 *   buffer for reuse once the object is stored; with the caller's `hold`, it keeps the caller's
 *   buffer instead of a copy and gives it back exactly once.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AwsStore } from '../../src/drivers/s3/client.js';
import { ObjectDriver } from '../../src/drivers/object-store/driver.js';
import { parseS3Options } from '../../src/drivers/s3/options.js';
import { objectStoreLocation } from '../../src/drivers/location.js';
import { ByteStash } from '../../src/drivers/object-store/resources.js';
import type { ObjectStore } from '../../src/drivers/object-store/store.js';
import { hashOf, partOf, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { freshBucket, removeFreshBuckets, requireServer, s3Section, testServer } from './server.js';

const MiB = 1024 * 1024;

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** An HTTP endpoint that answers like S3 just enough for put, uploadPart, completeUpload and head. */
async function fakeEndpoint(): Promise<{ server: Server; endpoint: string; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.method === 'PUT' && (req.url ?? '').includes('/bad-digest')) {
        const xml = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not match what we received.</Message></Error>';
        res.writeHead(400, { 'Content-Type': 'application/xml', 'Content-Length': String(Buffer.byteLength(xml)) }).end(xml);
      } else if (req.method === 'PUT' && (req.url ?? '').includes('/checks-payload/') && /^[0-9a-f]{64}$/.test(String(req.headers['x-amz-content-sha256']))
        && createHash('sha256').update(body).digest('hex') !== req.headers['x-amz-content-sha256']) {
        const xml = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided x-amz-content-sha256 does not match.</Message></Error>';
        res.writeHead(400, { 'Content-Type': 'application/xml', 'Content-Length': String(Buffer.byteLength(xml)) }).end(xml);
      } else if (req.method === 'PUT' && (req.url ?? '').includes('/forbidden')) {
        res.writeHead(403, { 'Content-Length': '0' }).end();
      } else if (req.method === 'PUT') {
        res.writeHead(200, { ETag: `"${createHash('md5').update(body).digest('hex')}"`, 'Content-Length': '0' }).end();
      } else if (req.method === 'POST') {
        const xml = '<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><ETag>"e-2"</ETag></CompleteMultipartUploadResult>';
        res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Length': String(Buffer.byteLength(xml)) }).end(xml);
      } else {
        res.writeHead(200, { 'Content-Length': '3', ETag: '"abc"', 'Last-Modified': new Date().toUTCString() }).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** A store on the fake endpoint; `WHEN_SUPPORTED` checksums send uploads through the SDK's middleware, not src/drivers/s3/direct-request.ts. */
function fakeStore(endpoint: string, checksums: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED' = 'WHEN_REQUIRED'): AwsStore {
  return new AwsStore(parseS3Options('fake', {
    type: 's3', endpoint, region: 'us-east-1', bucket: 'bucket', accessKeyId: 'AKIDFAKE', secretAccessKey: 'fake-secret', requestTimeoutMs: 5000,
    requestChecksumCalculation: checksums,
  }));
}

function signedHeaders(recorded: Recorded): string[] {
  const match = /SignedHeaders=([^,]+)/.exec(String(recorded.headers['authorization']));
  return match?.[1]?.split(';') ?? [];
}

describe('s3 upload requests (fake endpoint)', () => {
  let fake: Awaited<ReturnType<typeof fakeEndpoint>>;
  let store: AwsStore;
  before(async () => {
    fake = await fakeEndpoint();
    store = fakeStore(fake.endpoint);
  });
  after(() => {
    store?.close();
    fake?.server.closeAllConnections();
    fake?.server.close();
  });

  for (const checksums of ['WHEN_REQUIRED', 'WHEN_SUPPORTED'] as const) {
    const direct = checksums === 'WHEN_REQUIRED';
    it(`PutObject and UploadPart are signed with UNSIGNED-PAYLOAD next to a signed Content-MD5, without Expect: 100-continue (${direct ? 'sent directly' : 'through the SDK\'s middleware'})`, async () => {
      const tried = direct ? store : fakeStore(fake.endpoint, checksums);
      try {
        fake.requests.length = 0;
        const body = seededBytes(3 * MiB, 1); // above the SDK's 2 MiB threshold for Expect: 100-continue
        const md5 = createHash('md5').update(body).digest('base64');
        const until = Date.UTC(2030, 0, 2, 3, 4, 5);
        assert.equal(await tried.put('dir/a b+(1).bin', body, { md5Base64: md5 }, { 'offsite-hash': 'xxh64:0123456789abcdef' }, undefined, { mode: 'GOVERNANCE', untilMs: until }),
          `"${createHash('md5').update(body).digest('hex')}"`, 'put resolves with the ETag the server sent');
        assert.equal(await tried.uploadPart('k', 'upload/1+=', 2, body, { md5Base64: md5 }), createHash('md5').update(body).digest('hex'), 'uploadPart resolves with the clean ETag');
        assert.equal(fake.requests.length, 2);
        for (const request of fake.requests) {
          assert.equal(request.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD', `${request.url}: x-amz-content-sha256`);
          assert.equal(request.headers['content-md5'], md5, `${request.url}: Content-MD5`);
          assert.equal(request.headers['expect'], undefined, `${request.url}: Expect`);
          assert.equal(request.headers['content-type'], 'application/octet-stream', `${request.url}: Content-Type`);
          assert.ok(signedHeaders(request).includes('content-md5'), `${request.url}: Content-MD5 is signed: ${signedHeaders(request).join(';')}`);
          assert.ok(signedHeaders(request).includes('x-amz-content-sha256'), `${request.url}: the payload mode is signed`);
          assert.ok(request.body.equals(body), `${request.url}: body arrives unchanged`);
          assert.equal(request.headers['amz-sdk-invocation-id'] === undefined, direct, `${request.url}: ${direct ? 'sent without' : 'sent through'} the SDK's middleware`);
        }
        const [put, part] = fake.requests;
        assert.match(put?.url ?? '', /^\/bucket\/dir\/a%20b%2B%281%29\.bin(\?x-id=PutObject)?$/, 'the key is escaped as the SDK escapes it');
        assert.equal(put?.headers['x-amz-meta-offsite-hash'], 'xxh64:0123456789abcdef');
        assert.equal(put?.headers['x-amz-object-lock-mode'], 'GOVERNANCE');
        assert.equal(put?.headers['x-amz-object-lock-retain-until-date'], '2030-01-02T03:04:05Z');
        for (const name of ['x-amz-meta-offsite-hash', 'x-amz-object-lock-mode', 'x-amz-object-lock-retain-until-date']) assert.ok(signedHeaders(put as Recorded).includes(name), `${name} is signed`);
        assert.match(part?.url ?? '', /^\/bucket\/k\?partNumber=2&uploadId=upload%2F1%2B%3D(&x-id=UploadPart)?$/);
      } finally {
        if (tried !== store) tried.close();
      }
    });
  }

  it('a server outside the vendor table is asked once whether it checks signed payloads; one that takes a wrong hash keeps Content-MD5', async () => {
    const careless = fakeStore(fake.endpoint);
    const checking = fakeStore(fake.endpoint);
    try {
      assert.equal(careless.payloadCheck, 'md5', 'not known yet: Content-MD5');
      fake.requests.length = 0;
      assert.equal(await careless.probeSignedPayloads?.('probe'), true, 'the server took the object: the caller removes it');
      assert.equal(careless.payloadCheck, 'md5', 'a server that does not check the signed hash keeps Content-MD5');
      assert.equal(careless.probeSignedPayloads, undefined, 'asked once');
      const [probe] = fake.requests;
      assert.equal(fake.requests.length, 1);
      assert.notEqual(probe?.headers['x-amz-content-sha256'], createHash('sha256').update(probe?.body ?? Buffer.alloc(0)).digest('hex'), 'the probe signs a hash that is not its body\'s');
      assert.equal(probe?.headers['content-md5'], undefined);
      assert.equal(await checking.probeSignedPayloads?.('checks-payload/probe'), false, 'refused: nothing to remove');
      assert.equal(checking.payloadCheck, 'sha256', 'a server that refuses a wrong signed hash: SHA-256 instead of Content-MD5');
    } finally {
      careless.close();
      checking.close();
    }
  });

  it('where the server checks signed payloads, a direct upload without an MD5 carries its signed SHA-256 and no Content-MD5', async () => {
    await store.probeSignedPayloads?.('checks-payload/probe');
    assert.equal(store.payloadCheck, 'sha256', 'a self-hosted endpoint that refused a wrong signed hash');
    const viaSdk = fakeStore(fake.endpoint, 'WHEN_SUPPORTED');
    assert.equal(viaSdk.payloadCheck, 'md5', 'uploads through the SDK carry Content-MD5');
    viaSdk.close();
    assert.equal(parseS3Options('r2', { type: 's3', endpoint: 'https://account.r2.cloudflarestorage.com', bucket: 'bucket' }).signedPayloads, false, 'a vendor not checked keeps Content-MD5');
    fake.requests.length = 0;
    const body = seededBytes(1000, 3);
    const sha256 = createHash('sha256').update(body).digest('hex');
    assert.ok(await store.put('k', body, { sha256Hex: sha256 }, { 'offsite-hash': 'xxh64:0123456789abcdef' }));
    assert.ok(await store.uploadPart('k', 'upload-1', 1, body, { sha256Hex: sha256 }));
    assert.equal(fake.requests.length, 2);
    for (const request of fake.requests) {
      assert.equal(request.headers['x-amz-content-sha256'], sha256, `${request.url}: x-amz-content-sha256`);
      assert.equal(request.headers['content-md5'], undefined, `${request.url}: no Content-MD5`);
      assert.ok(signedHeaders(request).includes('x-amz-content-sha256'), `${request.url}: the payload hash is signed`);
      assert.ok(request.body.equals(body), `${request.url}: body arrives unchanged`);
    }
  });

  it('an error answer to a direct upload is reported as the SDK reports it: the S3 code and the status', async () => {
    const body = seededBytes(1000, 2);
    const md5 = createHash('md5').update(body).digest('base64');
    const failure = async (key: string): Promise<ReturnType<AwsStore['describeError']>> => {
      try {
        await store.put(key, body, { md5Base64: md5 }, {});
      } catch (err) {
        return store.describeError(err);
      }
      throw new Error(`put ${key} succeeded`);
    };
    const digest = await failure('bad-digest');
    assert.equal(digest.code, 'BadDigest');
    assert.equal(digest.status, 400);
    assert.match(digest.message, /did not match/);
    const forbidden = await failure('forbidden');
    assert.equal(forbidden.code, undefined, 'no body, no code');
    assert.equal(forbidden.status, 403);
    // The connection is reused after an error answer: the next upload goes through.
    assert.ok(await store.put('k', body, { md5Base64: md5 }, {}));
  });

  it('a body without Content-MD5 (CompleteMultipartUpload) is still signed with its SHA-256', async () => {
    fake.requests.length = 0;
    await store.completeUpload('k', 'upload-1', [{ partNumber: 1, etag: '0123456789abcdef0123456789abcdef' }]);
    const [request] = fake.requests;
    assert.ok(request !== undefined && request.body.length > 0);
    assert.equal(request.headers['content-md5'], undefined);
    assert.equal(request.headers['x-amz-content-sha256'], createHash('sha256').update(request.body).digest('hex'));
  });

  it('the reused middleware chains honour each call\'s own signal', async () => {
    fake.requests.length = 0;
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(store.head('k', aborted.signal), (err: Error) => err.name === 'AbortError', 'an aborted signal rejects');
    const live = new AbortController();
    assert.equal((await store.head('k', live.signal))?.size, 3, 'another signal still works');
    assert.equal((await store.head('k'))?.size, 3, 'no signal still works');
    await assert.rejects(store.head('k', aborted.signal), (err: Error) => err.name === 'AbortError', 'the aborted signal still rejects');
    assert.equal((await store.head('k', live.signal))?.size, 3, 'the cached chain of the live signal still works');
    assert.equal(fake.requests.length, 3, 'aborted calls send nothing');
  });
});

describe('ByteStash', () => {
  it('copies exactly, and reuses a returned buffer for the next copy of the same class', () => {
    const stash = new ByteStash(MiB);
    const first = stash.copy(seededBytes(100_000, 1));
    assert.ok(first.equals(seededBytes(100_000, 1)));
    const backing = first.buffer;
    stash.release(first);
    assert.equal(stash.idleBytes, 128 * 1024, 'a 100 kB copy lives in a 128 KiB buffer');
    const second = stash.copy(seededBytes(70_000, 2));
    assert.equal(second.buffer, backing, 'the same memory is reused');
    assert.equal(second.length, 70_000);
    assert.ok(second.equals(seededBytes(70_000, 2)));
    assert.equal(stash.idleBytes, 0);
  });

  it('keeps at most maxIdleBytes idle and ignores buffers it did not hand out', () => {
    const stash = new ByteStash(256 * 1024);
    const copies = [stash.copy(Buffer.alloc(200_000)), stash.copy(Buffer.alloc(200_000)), stash.copy(Buffer.alloc(10))];
    for (const c of copies) stash.release(c);
    assert.equal(stash.idleBytes, 256 * 1024, 'one 256 KiB buffer kept, the rest dropped');
    const roomy = new ByteStash(64 * MiB);
    roomy.release(Buffer.alloc(64 * 1024).subarray(1));
    roomy.release(Buffer.alloc(100_000));
    roomy.release(Buffer.from('foreign'));
    assert.equal(roomy.idleBytes, 0, 'foreign buffers are not taken');
  });
});

const found = testServer();
const skip = 'skip' in found && found.skip ? found.error : undefined;

/** A store that records the most uploads in flight at once, and can damage the next PutObject body. */
function watchedStore(inner: ObjectStore, watch: { inFlight: number; peak: number; corruptNextPut: boolean }): ObjectStore {
  const track = async <T>(send: () => Promise<T>): Promise<T> => {
    watch.inFlight++;
    watch.peak = Math.max(watch.peak, watch.inFlight);
    try {
      return await send();
    } finally {
      watch.inFlight--;
    }
  };
  const overrides: Partial<ObjectStore> = {
    uploadPart: (key, id, n, body, md5, signal) => track(() => inner.uploadPart(key, id, n, body, md5, signal)),
    put: (key, body, md5, metadata, signal) => {
      let sent = body;
      if (watch.corruptNextPut) {
        watch.corruptNextPut = false;
        sent = Buffer.from(body);
        sent[0] = (sent[0] as number) ^ 0xff;
      }
      return track(() => inner.put(key, sent, md5, metadata, signal));
    },
  };
  return new Proxy(inner, {
    get: (target, name: keyof ObjectStore) => {
      const value = overrides[name] ?? target[name];
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function watchedDriver(bucket: string, maxConcurrency: number) {
  const options = parseS3Options('cloud', s3Section(requireServer(), bucket));
  const watch = { inFlight: 0, peak: 0, corruptNextPut: false };
  const driver = new ObjectDriver('cloud', watchedStore(new AwsStore(options), watch), {
    prefix: '', description: 'test', location: objectStoreLocation({ endpoint: options.endpoint, bucket: options.bucket, prefix: '' }), maxConcurrency, maxParts: 10_000, listPageSize: 1000,
  });
  return { driver, watch };
}

describe('s3 upload path against Ceph RGW', { skip }, () => {
  after(removeFreshBuckets);

  it('maxConcurrency caps the uploads in flight, whatever the caller runs at once', async () => {
    const bucket = await freshBucket(requireServer(), 's3-maxconc');
    const { driver, watch } = await watchedDriver(bucket, 2);
    try {
      assert.equal(driver.capabilities.maxConcurrency, 2);
      const part = 5 * MiB;
      const data = seededBytes(part * 5 + 3, 3);
      const session = await driver.openWrite('big', { size: data.length, partBytes: part });
      const small = await Promise.all([0, 1, 2].map((i) => driver.openWrite(`small-${i}`, { size: 1000, partBytes: part })));
      await Promise.all(small.map((s, i) => s.write(0, seededBytes(1000, 10 + i))));
      await Promise.all([
        ...[0, 1, 2, 3, 4, 5].map((i) => session.write(i, partOf(data, i, part))),
        ...small.map(async (s, i) => s.commit({ hash: await hashOf(seededBytes(1000, 10 + i)) })),
      ]);
      assert.equal(watch.peak, 2, 'uploads in flight at most');
      assert.equal(driver.uploadsInFlight, 0);
      await session.commit({ hash: await hashOf(data) });
      assert.ok((await readKey(driver, 'big')).equals(data));
      assert.ok((await readKey(driver, 'small-2')).equals(seededBytes(1000, 12)));
    } finally {
      await driver.close();
    }
  });

  it('a single part survives a failed commit (the retry sends the same bytes) and its buffer is reused afterwards', async () => {
    const bucket = await freshBucket(requireServer(), 's3-single');
    const { driver, watch } = await watchedDriver(bucket, 4);
    try {
      const data = seededBytes(300_000, 4);
      const caller = Buffer.from(data);
      const session = await driver.openWrite('one', { size: data.length, partBytes: 5 * MiB });
      await session.write(0, caller);
      caller.fill(0); // the engine reuses its buffer once write resolved
      watch.corruptNextPut = true;
      await rejectsWithKind(() => hashOf(data).then((hash) => session.commit({ hash })), 'integrity', 'PutObject with damaged bytes');
      assert.equal(await driver.stat('one'), undefined, 'nothing stored by the refused PutObject');
      assert.equal(driver.stash.idleBytes, 0, 'the bytes are still held for the retry');
      await session.commit({ hash: await hashOf(data) });
      assert.ok((await readKey(driver, 'one')).equals(data));
      assert.equal(driver.stash.idleBytes, 512 * 1024, 'the buffer went back to the stash');

      const next = await driver.openWrite('two', { size: 400_000, partBytes: 5 * MiB });
      await next.write(0, seededBytes(400_000, 5)); // the same 512 KiB class
      assert.equal(driver.stash.idleBytes, 0, 'the next session took it');
      await next.abort();
      assert.equal(driver.stash.idleBytes, 512 * 1024, 'abort gives it back');
      assert.equal(await driver.stat('two'), undefined);
    } finally {
      await driver.close();
    }
  });

  it('a single part the caller lets it hold is sent from the caller\'s buffer, without a copy, and given back once, when stored or aborted', async () => {
    const bucket = await freshBucket(requireServer(), 's3-hold');
    const { driver, watch } = await watchedDriver(bucket, 4);
    try {
      const data = seededBytes(300_000, 6);
      // Shared memory, as the engine's pooled chunks are: its MD5 is taken in place.
      const caller = Buffer.from(new SharedArrayBuffer(data.length));
      data.copy(caller);
      let holds = 0;
      let givenBack = 0;
      const hold = (): (() => void) => { holds++; return () => { givenBack++; }; };
      const session = await driver.openWrite('held', { size: data.length, partBytes: 5 * MiB });
      await session.write(0, caller, { hold });
      assert.equal(holds, 1);
      assert.equal(driver.stash.idleBytes, 0, 'no stash buffer used');
      watch.corruptNextPut = true;
      await rejectsWithKind(() => hashOf(data).then((hash) => session.commit({ hash })), 'integrity', 'PutObject with damaged bytes');
      assert.equal(givenBack, 0, 'still held for the retry');
      await session.commit({ hash: await hashOf(data) });
      assert.equal(givenBack, 1, 'given back once the object is stored');
      assert.ok((await readKey(driver, 'held')).equals(data));
      assert.equal(driver.stash.idleBytes, 0, 'nothing went through the stash');

      // Written twice (a retried write): the first hold is given back at once; abort gives back the second.
      const again = await driver.openWrite('again', { size: 1000, partBytes: 5 * MiB });
      await again.write(0, seededBytes(1000, 7), { hold });
      await again.write(0, seededBytes(1000, 7), { hold });
      assert.deepEqual([holds, givenBack], [3, 2]);
      await again.abort();
      await again.abort();
      assert.deepEqual([holds, givenBack], [3, 3], 'each hold given back exactly once');
      assert.equal(await driver.stat('again'), undefined);
    } finally {
      await driver.close();
    }
  });
});
