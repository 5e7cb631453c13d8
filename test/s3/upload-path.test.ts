/**
 * The upload path of the `s3` driver, beyond the conformance suite: the request shape, against
 * a local fake endpoint that records what arrives (no server needed): uploads are signed with
 * UNSIGNED-PAYLOAD next to a signed Content-MD5, other bodies keep their SHA-256, there is no
 * `Expect: 100-continue`, and the reused middleware chains honour each call's own abort signal.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AwsStore } from '../../src/drivers/s3/client.js';
import { parseS3Options } from '../../src/drivers/s3/options.js';
import { seededBytes } from '../conformance/suite.js';

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
      if (req.method === 'PUT') {
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

function fakeStore(endpoint: string): AwsStore {
  return new AwsStore(parseS3Options('fake', {
    type: 's3', endpoint, region: 'us-east-1', bucket: 'bucket', accessKeyId: 'AKIDFAKE', secretAccessKey: 'fake-secret', requestTimeoutMs: 5000,
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

  it('PutObject and UploadPart are signed with UNSIGNED-PAYLOAD next to a signed Content-MD5, without Expect: 100-continue', async () => {
    fake.requests.length = 0;
    const body = seededBytes(3 * MiB, 1); // above the SDK's 2 MiB threshold for Expect: 100-continue
    const md5 = createHash('md5').update(body).digest('base64');
    await store.put('k', body, md5, { 'offsite-hash': 'xxh64:0123456789abcdef' });
    await store.uploadPart('k', 'upload-1', 1, body, md5);
    assert.equal(fake.requests.length, 2);
    for (const request of fake.requests) {
      assert.equal(request.headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD', `${request.url}: x-amz-content-sha256`);
      assert.equal(request.headers['content-md5'], md5, `${request.url}: Content-MD5`);
      assert.equal(request.headers['expect'], undefined, `${request.url}: Expect`);
      assert.ok(signedHeaders(request).includes('content-md5'), `${request.url}: Content-MD5 is signed: ${signedHeaders(request).join(';')}`);
      assert.ok(signedHeaders(request).includes('x-amz-content-sha256'), `${request.url}: the payload mode is signed`);
      assert.ok(request.body.equals(body), `${request.url}: body arrives unchanged`);
    }
    assert.equal(fake.requests[0]?.headers['x-amz-meta-offsite-hash'], 'xxh64:0123456789abcdef');
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
