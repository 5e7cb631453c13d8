/**
 * Faults seen from the `s3` and `minio` drivers: wrong credentials, a missing bucket, an
 * endpoint nobody listens on, an endpoint that accepts connections and never answers. Each must
 * give a one-line message of the right kind, naming the destination and the bucket, without the
 * secret, within the configured timeout. Also the classification table itself.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { createMinioDriver } from '../../src/drivers/minio/index.js';
import { describeMinioError } from '../../src/drivers/minio/errors.js';
import { createS3Driver } from '../../src/drivers/s3/index.js';
import { classifyS3Error } from '../../src/drivers/object-store/errors.js';
import { describeAwsError } from '../../src/drivers/s3/errors.js';
import type { Driver } from '../../src/drivers/types.js';
import { ConfigError, DriverError } from '../../src/errors.js';
import { putObject, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { minioSection } from './minio-section.js';
import { freshBucket, removeFreshBuckets, requireServer, s3Section, testServer, type S3TestServer } from './server.js';
import { closedPort } from '../servers/net.js';

const found = testServer();
const skip = 'skip' in found && found.skip ? found.error : undefined;

type Make = (server: S3TestServer, bucket: string, overrides?: Record<string, unknown>) => Promise<Driver>;

const flavours: Array<{ label: string; make: Make; wrongKey: Record<string, unknown>; wrongSecret: Record<string, unknown>; endpoint: (port: number) => Record<string, unknown> }> = [
  {
    label: 's3',
    make: (server, bucket, overrides = {}) => createS3Driver('cloud', s3Section(server, bucket, overrides)),
    wrongKey: { accessKeyId: 'NOSUCHACCESSKEY' },
    wrongSecret: { secretAccessKey: 'wrong-secret-value-123' },
    endpoint: (port) => ({ endpoint: `http://127.0.0.1:${port}` }),
  },
  {
    label: 'minio',
    make: (server, bucket, overrides = {}) => createMinioDriver('cloud', minioSection(server, { bucketName: bucket, rootPath: 'backup', ...overrides })),
    wrongKey: { accessKeyID: 'NOSUCHACCESSKEY' },
    wrongSecret: { secretAccessKey: 'wrong-secret-value-123' },
    endpoint: (port) => ({ address: '127.0.0.1', port }),
  },
];

/** A server that accepts connections and never answers (a blackhole). */
async function silentServer(): Promise<{ port: number; server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { port: typeof address === 'object' && address ? address.port : 1, server, sockets };
}

function oneLine(message: string, secret: string): void {
  assert.ok(!message.includes('\n'), `one line: ${message}`);
  assert.ok(!message.includes(secret), `the secret leaked: ${message}`);
}

describe('s3/minio faults against Ceph RGW', { skip }, () => {
  after(removeFreshBuckets);

  for (const flavour of flavours) {
    describe(flavour.label, () => {
      it('wrong access key or secret: kind auth, one line, no secret', async () => {
        const server = requireServer();
        const bucket = await freshBucket(server, `err-auth-${flavour.label}`);
        for (const overrides of [flavour.wrongKey, flavour.wrongSecret]) {
          const driver = await flavour.make(server, bucket, overrides);
          try {
            const calls: Array<[string, () => Promise<unknown>]> = [
              ['stat', () => driver.stat('x')],
              ['list', async () => { for await (const _ of driver.list('')) { /* drain */ } }],
              ['read', () => driver.openRead('x')],
              ['write', () => putObject(driver, 'x', seededBytes(10, 1))],
            ];
            for (const [what, call] of calls) {
              const err = await rejectsWithKind(call, 'auth', `${flavour.label} ${what} with ${Object.keys(overrides).join()}`);
              oneLine(err.message, server.secretAccessKey);
              oneLine(err.message, 'wrong-secret-value-123');
              assert.match(err.message, new RegExp(`^cloud: s3://${bucket}`), err.message);
            }
          } finally {
            await driver.close();
          }
        }
      });

      it('missing bucket: kind permanent, "bucket X does not exist", for list, stat, read and write', async () => {
        const server = requireServer();
        const bucket = `missing-${flavour.label}-${Date.now()}`;
        const driver = await flavour.make(server, bucket);
        try {
          const calls: Array<[string, () => Promise<unknown>]> = [
            ['list', async () => { for await (const _ of driver.list('')) { /* drain */ } }],
            ['stat', () => driver.stat('x')],
            ['read', () => driver.openRead('x')],
            ['write', () => putObject(driver, 'x', seededBytes(10, 1))],
          ];
          for (const [what, call] of calls) {
            const err = await rejectsWithKind(call, 'permanent', `${flavour.label} ${what} in a missing bucket`, 'E_NO_BUCKET');
            assert.match(err.message, new RegExp(`bucket ${bucket} does not exist at http://127\\.0\\.0\\.1:\\d+$`), err.message);
            oneLine(err.message, server.secretAccessKey);
          }
        } finally {
          await driver.close();
        }
      });

      it('unreachable endpoint (closed port): kind retryable, "cannot reach endpoint", promptly', async () => {
        const server = requireServer();
        const port = await closedPort();
        const driver = await flavour.make(server, 'any-bucket', { ...flavour.endpoint(port), connectTimeoutMs: 2000, requestTimeoutMs: 3000 });
        try {
          const started = Date.now();
          const err = await rejectsWithKind(() => driver.stat('x'), 'retryable', `${flavour.label} stat against a closed port`, 'E_UNREACHABLE');
          assert.match(err.message, new RegExp(`^cloud: s3://any-bucket/.*: stat: cannot reach endpoint http://127\\.0\\.0\\.1:${port}$`), err.message);
          assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
          oneLine(err.message, server.secretAccessKey);
        } finally {
          await driver.close();
        }
      });

      it('an endpoint that never answers: kind retryable, within the configured timeout', async () => {
        const server = requireServer();
        const silent = await silentServer();
        const driver = await flavour.make(server, 'any-bucket', { ...flavour.endpoint(silent.port), connectTimeoutMs: 1000, requestTimeoutMs: 1500 });
        try {
          const started = Date.now();
          const err = await rejectsWithKind(() => driver.stat('x'), 'retryable', `${flavour.label} stat against a blackhole`, 'E_TIMEOUT');
          const elapsed = Date.now() - started;
          assert.ok(elapsed >= 1000 && elapsed < 4000, `timed out after ${elapsed} ms (configured 1500 ms)`);
          assert.match(err.message, /timed out talking to http:\/\/127\.0\.0\.1:\d+$/);
        } finally {
          await driver.close();
          for (const socket of silent.sockets) socket.destroy();
          silent.server.close();
        }
      });
    });
  }
});

describe('s3 credentials from the SDK default chain', { skip }, () => {
  after(removeFreshBuckets);

  it('without accessKeyId/secretAccessKey in the section, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are used', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 'env-creds');
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'], profile: process.env['AWS_PROFILE'] };
    process.env['AWS_ACCESS_KEY_ID'] = server.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = server.secretAccessKey;
    delete process.env['AWS_PROFILE'];
    const driver = await createS3Driver('cloud', s3Section(server, bucket, { accessKeyId: undefined, secretAccessKey: undefined }));
    try {
      await putObject(driver, 'from-env', seededBytes(10, 3));
      assert.equal((await driver.stat('from-env'))?.size, 10);
      process.env['AWS_SECRET_ACCESS_KEY'] = 'wrong-secret-value-123';
      const other = await createS3Driver('cloud', s3Section(server, bucket, { accessKeyId: undefined, secretAccessKey: undefined }));
      const err = await rejectsWithKind(async () => { for await (const _ of other.list('')) { /* drain */ } }, 'auth', 'wrong secret from the environment');
      oneLine(err.message, 'wrong-secret-value-123');
      await other.close();
    } finally {
      await driver.close();
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret], ['AWS_PROFILE', saved.profile]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe('s3 error classification table', () => {
  const context = { driver: 'cloud', action: 'write part 2', bucket: 'bkt', endpoint: 'https://s3.example.com', key: 'pre/a.bin' };
  const aws = (name: string, status?: number, extra: Record<string, unknown> = {}): unknown =>
    Object.assign(new Error(`${name} happened; secret=hunter2`), { name, ...(status !== undefined ? { $metadata: { httpStatusCode: status } } : {}), ...extra });

  it('maps AWS SDK errors to kinds', () => {
    const table: Array<[unknown, string, RegExp]> = [
      [aws('NoSuchKey', 404), 'not-found', /not found$/],
      [aws('NotFound', 404), 'not-found', /not found$/],
      [aws('NoSuchBucket', 404), 'permanent', /bucket bkt does not exist at https:\/\/s3\.example\.com$/],
      [aws('InvalidAccessKeyId', 403), 'auth', /access key refused/],
      [aws('SignatureDoesNotMatch', 403), 'auth', /check secretAccessKey/],
      [aws('403', 403), 'auth', /HTTP 403/],
      [aws('AccessDenied', 403), 'permanent', /lack permission on bucket bkt/],
      [aws('SlowDown', 503), 'retryable', /throttled/],
      [aws('InternalError', 500), 'retryable', /server error/],
      [aws('UnknownServerThing', 502), 'retryable', /HTTP 502/],
      [aws('RequestTimeout', 400), 'retryable', /timed out/],
      [aws('BadDigest', 400), 'integrity', /MD5/],
      [aws('InvalidDigest', 400), 'integrity', /Content-MD5/],
      [aws('EntityTooSmall', 400), 'permanent', /minimum part size/],
      [aws('InvalidPart', 400), 'permanent', /missing or its ETag/],
      [aws('Error', undefined, { code: 'ECONNREFUSED' }), 'retryable', /cannot reach endpoint https:\/\/s3\.example\.com$/],
      [aws('Error', undefined, { code: 'ENOTFOUND' }), 'retryable', /host name not found/],
      [aws('Error', undefined, { code: 'ECONNRESET' }), 'retryable', /reset/],
      [aws('TimeoutError', undefined, { code: 'ECONNRESET' }), 'retryable', /connection to https:\/\/s3\.example\.com reset$/],
      [aws('TimeoutError', undefined, { code: 'ETIMEDOUT' }), 'retryable', /timed out/],
      [aws('CredentialsProviderError'), 'auth', /no credentials/],
      [aws('WeirdClientSide', 418), 'permanent', /WeirdClientSide: /],
      [new TypeError('x is not a function'), 'fatal', /x is not a function/],
    ];
    for (const [err, kind, why] of table) {
      const classified = classifyS3Error(err, describeAwsError(err), context);
      assert.ok(classified instanceof DriverError, String(err));
      assert.equal(classified.kind, kind, `${String(err)} -> ${classified.message}`);
      assert.match(classified.message, /^cloud: s3:\/\/bkt\/pre\/a\.bin: write part 2: /, classified.message);
      assert.match(classified.message, why, classified.message);
      if (kind !== 'fatal' && !/WeirdClientSide/.test(classified.message)) assert.ok(!classified.message.includes('hunter2'), classified.message);
    }
    const aborted = classifyS3Error(aws('AbortError'), describeAwsError(aws('AbortError')), context);
    assert.equal(aborted.code, 'E_ABORTED');
  });

  it('maps minio client errors to the same kinds', () => {
    const minio = (code: string, message = 'text'): unknown => Object.assign(new Error(message), { name: 'S3Error', code });
    const table: Array<[unknown, string]> = [
      [minio('NotFound', 'Not Found'), 'not-found'],
      [minio('NoSuchKey'), 'not-found'],
      [minio('NoSuchBucket'), 'permanent'],
      [minio('AccessDenied', 'Valid and authorized credentials required'), 'auth'],
      [minio('AccessDenied', 'Access Denied'), 'permanent'],
      [minio('InvalidAccessKeyId'), 'auth'],
      [minio('SignatureDoesNotMatch'), 'auth'],
      [minio('BadDigest'), 'integrity'],
      [minio('SlowDown', 'Please reduce your request rate.'), 'retryable'],
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'retryable'],
    ];
    for (const [err, kind] of table) assert.equal(classifyS3Error(err, describeMinioError(err), context).kind, kind, String((err as Error).message));
  });
});

describe('s3 wordings that used to mislead (issue 11, finding 16), against Ceph RGW', { skip }, () => {
  after(removeFreshBuckets);

  it('an endpoint with a path is refused at config load, saying where the bucket goes (not "bucket does not exist")', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 'err-endpoint-path');
    await assert.rejects(() => createS3Driver('cloud', s3Section(server, bucket, { endpoint: `${server.endpoint}/${bucket}` })), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, new RegExp(`^cloud: "endpoint" must be .*, got "${server.endpoint.replaceAll('.', '\\.')}/${bucket}" with a path \\(/${bucket}\\): the endpoint must not contain a path; put the bucket name in "bucket" and a folder inside it in "prefix"$`));
      return true;
    });
    await assert.rejects(() => createMinioDriver('cloud', minioSection(server, { address: `127.0.0.1:${new URL(server.endpoint).port}/${bucket}`, bucketName: bucket })), (err: unknown) =>
      err instanceof ConfigError && /"address" must not contain a path, .*: give the bucket in "bucketName" and a folder inside it in "rootPath"$/.test(err.message));
  });

  it('forcePathStyle: false on localhost: names the host looked up (BUCKET.localhost) and says to set forcePathStyle: true', async () => {
    const server = requireServer();
    const bucket = await freshBucket(server, 'err-vhost');
    const endpoint = server.endpoint.replace('127.0.0.1', 'localhost');
    const driver = await createS3Driver('cloud', s3Section(server, bucket, { endpoint, forcePathStyle: false }));
    try {
      const err = await rejectsWithKind(() => driver.stat('x'), 'permanent', 'stat with virtual-hosted style on localhost', 'E_CONFIG');
      assert.match(err.message, new RegExp(`: cannot reach endpoint ${endpoint.replaceAll('.', '\\.')}: host name ${bucket}\\.localhost not found \\(with forcePathStyle: false the bucket is looked up as part of the host name\\); set forcePathStyle: true for this endpoint$`), err.message);
      oneLine(err.message, server.secretAccessKey);
    } finally {
      await driver.close();
    }
  });
});
