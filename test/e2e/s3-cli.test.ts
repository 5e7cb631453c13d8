/**
 * End to end through the CLI against the real Ceph RGW: a backup in a bucket, read through the
 * `minio` driver (configured like milvus-backup's minio: section), replicated to a `local` and
 * an `s3` destination; damage caught by deep and quick verify; a run killed during a multipart
 * upload resumed without sending its parts again; wrong credentials, a missing bucket and an
 * unreachable endpoint as clear one-line errors within the configured timeouts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateBackup } from '../../scripts/gen-backup.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { binPath, filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer, type S3TestServer } from '../s3/server.js';

const NAME = 'nightly_2025_07_01';

interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; bytesResumed: number; errors: { message: string; kind: string }[] }[] }
interface VerifyJson { results: { destination: string; status: string; damage: { path: string; problem: string; chunk?: number; message: string }[] }[] }

/** Uploads a locally generated backup into `bucket` under `backup/NAME/`, as milvus-backup lays it out. */
async function uploadBackup(client: S3Client, bucket: string, localRoot: string, name: string): Promise<void> {
  for (const path of filesUnder(join(localRoot, name))) {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `backup/${name}/${path}`, Body: readFileSync(join(localRoot, name, path)) }));
  }
}

async function body(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
}

function yamlFor(server: S3TestServer, sourceBucket: string, destBucket: string, extra = ''): string {
  const url = new URL(server.endpoint);
  return [
    'source:',
    '  type: minio',
    `  address: ${url.hostname}`,
    `  port: ${url.port}`,
    '  accessKeyID: ${OFFSITE_TEST_KEY}',
    '  secretAccessKey: ${OFFSITE_TEST_SECRET}',
    '  useSSL: false',
    `  bucketName: ${sourceBucket}`,
    '  rootPath: backup',
    'destinations:',
    '  disk: { type: local, root: ./disk }',
    `  cloud: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${destBucket}, prefix: offsite/prod/, accessKeyId: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}", connectTimeoutMs: 2000, requestTimeoutMs: 5000 }`,
    extra,
    // 1 MiB chunks: S3 parts are then 5 chunks (its minimum part size), the engine's multi-chunk part path.
    'options: { quietPeriod: 0s, chunkSize: 1MiB }',
  ].join('\n');
}

describe('minio source -> local + s3 destinations on Ceph RGW (CLI)', () => {
  let server: S3TestServer;
  let admin: S3Client;
  let dir: string;
  let config: string;
  let env: NodeJS.ProcessEnv;
  let sourceBucket: string;
  let destBucket: string;

  before(async () => {
    server = requireServer();
    admin = adminClient(server);
    env = { OFFSITE_TEST_KEY: server.accessKeyId, OFFSITE_TEST_SECRET: server.secretAccessKey };
    dir = tempDir('s3e2e');
    await generateBackup({ root: join(dir, 'generated'), name: NAME, totalBytes: 12 * 1024 * 1024, files: 16, seed: 31 });
    sourceBucket = await freshBucket(server, 'src');
    destBucket = await freshBucket(server, 'dst');
    await uploadBackup(admin, sourceBucket, join(dir, 'generated'), NAME);
    config = writeConfig(dir, yamlFor(server, sourceBucket, destBucket));
  });
  after(async () => { admin?.destroy(); await removeFreshBuckets(); });

  it('replicates identically to both, and deep verify passes', async () => {
    const run = await runCli(['--config', config, '--json', 'replicate', NAME, '--to', 'disk,cloud'], { env });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(jsonOf<ReplicateJson>(run).destinations.map((d) => d.status), ['complete', 'complete']);
    const sourceTree = treeDigest(join(dir, 'generated', NAME));
    assert.deepEqual(treeDigest(join(dir, 'disk', NAME), ['.offsite/']), sourceTree);
    for (const path of [...sourceTree.keys()].slice(0, 40)) {
      assert.ok((await body(admin, destBucket, `offsite/prod/${NAME}/${path}`)).equals(readFileSync(join(dir, 'generated', NAME, path))), path);
    }
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'disk,cloud', '--deep'], { env });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.deepEqual(jsonOf<VerifyJson>(verify).results.map((r) => r.status), ['ok', 'ok']);
    assert.doesNotMatch(run.stdout + verify.stdout, new RegExp(server.secretAccessKey), 'no secret in --json output');
  });

  it('an object replaced by one with a single changed byte: deep verify exits 3 naming the file and chunk', async () => {
    const path = filesUnder(join(dir, 'generated', NAME)).find((p) => readFileSync(join(dir, 'generated', NAME, p)).length > 2 * 1024 * 1024) as string;
    assert.ok(path, 'a file of more than two 1 MiB chunks');
    const key = `offsite/prod/${NAME}/${path}`;
    const original = await body(admin, destBucket, key);
    const damaged = Buffer.from(original);
    damaged[1024 * 1024 + 100] = (damaged[1024 * 1024 + 100] as number) ^ 0x40;
    await admin.send(new PutObjectCommand({ Bucket: destBucket, Key: key, Body: damaged }));
    // Same size and no stored hash, but a new ETag: the quick check sees the changed fingerprint,
    // reads the object back and finds other bytes.
    const quick = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'cloud'], { env });
    assert.equal(quick.code, 3, quick.stdout + quick.stderr);
    assert.ok(jsonOf<VerifyJson>(quick).results[0]?.damage?.some((d) => d.path === path), 'quick verify names the replaced file');
    const deep = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'cloud', '--deep'], { env });
    assert.equal(deep.code, 3, deep.stdout + deep.stderr);
    const damage = jsonOf<VerifyJson>(deep).results[0]?.damage;
    assert.equal(damage?.length, 1);
    assert.equal(damage?.[0]?.path, path);
    assert.equal(damage?.[0]?.chunk, 1);
    await admin.send(new PutObjectCommand({ Bucket: destBucket, Key: key, Body: original }));
  });

  it('a deleted or shortened object is caught by the quick verify', async () => {
    const paths = filesUnder(join(dir, 'generated', NAME)).filter((p) => p.startsWith('binlogs/'));
    const [shortened, deleted] = paths as [string, string];
    const shortKey = `offsite/prod/${NAME}/${shortened}`;
    const original = await body(admin, destBucket, shortKey);
    await admin.send(new PutObjectCommand({ Bucket: destBucket, Key: shortKey, Body: original.subarray(0, original.length - 1) }));
    await admin.send(new DeleteObjectCommand({ Bucket: destBucket, Key: `offsite/prod/${NAME}/${deleted}` }));
    const quick = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'cloud'], { env });
    assert.equal(quick.code, 3, quick.stdout);
    const problems = jsonOf<VerifyJson>(quick).results[0]?.damage.map((d) => [d.path, d.problem]).sort();
    assert.deepEqual(problems, [[shortened, 'size'], [deleted, 'missing']].sort());
    // the next run heals exactly those two
    const heal = await runCli(['--config', config, '--json', 'replicate', NAME, '--to', 'cloud'], { env });
    assert.equal(heal.code, 0, heal.stderr);
    const again = await runCli(['--config', config, 'verify', NAME, '--at', 'cloud', '--deep'], { env });
    assert.equal(again.code, 0, again.stdout);
  });

  it('a run killed during a multipart upload resumes it without uploading its parts again', async () => {
    const big = join(dir, 'big');
    // Few, large files: the vector binlogs are tens of MB, several 5 MiB parts each.
    await generateBackup({ root: big, name: 'big_backup', totalBytes: 48 * 1024 * 1024, files: 8, seed: 32 });
    const bucket = await freshBucket(server, 'bigsrc');
    const dest = await freshBucket(server, 'bigdst');
    await uploadBackup(admin, bucket, big, 'big_backup');
    const cfg = writeConfig(tempDir('s3kill'), yamlFor(server, bucket, dest));
    const child = spawn(process.execPath, [binPath, '--config', cfg, '--quiet', 'replicate', 'big_backup', '--to', 'cloud', '--bwlimit', '8MiB', '--concurrency', '1'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    let partsThere = 0;
    let uploadKey = '';
    for (let i = 0; i < 400 && partsThere < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const uploads = await admin.send(new ListMultipartUploadsCommand({ Bucket: dest }));
      for (const u of uploads.Uploads ?? []) {
        const parts = await admin.send(new ListPartsCommand({ Bucket: dest, Key: u.Key, UploadId: u.UploadId }));
        if ((parts.Parts?.length ?? 0) > partsThere) { partsThere = parts.Parts?.length ?? 0; uploadKey = u.Key ?? ''; }
      }
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    assert.ok(partsThere >= 2, 'the killed run had uploaded at least two parts of a multipart upload');
    const resumed = await runCli(['--config', cfg, '--json', 'replicate', 'big_backup', '--to', 'cloud'], { env });
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    const d = jsonOf<ReplicateJson>(resumed).destinations[0];
    assert.ok((d?.bytesResumed ?? 0) >= partsThere * 5 * 1024 * 1024, `parts found and not sent again: ${d?.bytesResumed} bytes (${partsThere} parts of ${uploadKey} were there)`);
    const total = filesUnder(join(big, 'big_backup')).reduce((s, p) => s + readFileSync(join(big, 'big_backup', p)).length, 0);
    assert.ok((d?.bytesWritten ?? 0) <= total - partsThere * 5 * 1024 * 1024, 'the resumed parts were not uploaded again');
    const verify = await runCli(['--config', cfg, 'verify', 'big_backup', '--at', 'cloud', '--deep'], { env });
    assert.equal(verify.code, 0, verify.stdout);
    const leftovers = await admin.send(new ListMultipartUploadsCommand({ Bucket: dest }));
    assert.equal(leftovers.Uploads?.length ?? 0, 0, 'no multipart upload left open');
  });

  it('wrong credentials, a missing bucket and an unreachable endpoint: one clear line each, within the timeouts', async () => {
    const check = async (label: string, yaml: string, expected: RegExp, extraEnv: NodeJS.ProcessEnv = env): Promise<void> => {
      const cfg = writeConfig(tempDir(`s3bad-${label}`), yaml);
      const started = Date.now();
      const run = await runCli(['--config', cfg, '--json', 'replicate', NAME, '--to', 'cloud', '--retries', '0'], { env: extraEnv });
      const seconds = (Date.now() - started) / 1000;
      assert.equal(run.code, 1, `${label}: ${run.stdout}${run.stderr}`);
      const message = jsonOf<ReplicateJson>(run).destinations[0]?.errors[0]?.message ?? '';
      assert.match(message, expected, label);
      assert.doesNotMatch(message, /\n/, `${label}: one line`);
      assert.ok(!message.includes(server.secretAccessKey) && !run.stderr.includes(server.secretAccessKey), `${label}: no secret`);
      assert.ok(seconds < 30, `${label}: answered in ${seconds} s`);
    };
    const good = yamlFor(server, sourceBucket, destBucket);
    await check('credentials', good.replace(/accessKeyId: "\$\{OFFSITE_TEST_KEY\}", secretAccessKey: "\$\{OFFSITE_TEST_SECRET\}"/, 'accessKeyId: "WRONGKEY", secretAccessKey: "wrong-secret-value"'), /access key|credentials|signature|denied|auth/i);
    await check('bucket', good.replace(`bucket: ${destBucket},`, 'bucket: no-such-bucket-offsite,'), /no-such-bucket-offsite.*(does not exist|not exist|missing)|bucket/i);
    const blackhole = await startFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(server.endpoint).port) }, faults: { blackhole: true } });
    try {
      await check('unreachable', good.replace(`endpoint: "${server.endpoint}"`, `endpoint: "http://127.0.0.1:${blackhole.port}"`), /timed out|timeout|reach|connect/i);
    } finally {
      await blackhole.close();
    }
  });
});
