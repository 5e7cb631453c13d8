/**
 * `offsite prune` through the CLI against the real Ceph RGW (an `s3` destination): three dated
 * backups replicated there, `--keep-last 1` removes the two older copies object by object
 * (manifest first) and leaves no object of theirs behind, records them in
 * `.offsite/pruned.json` in the bucket, and leaves the kept copy verifiable. An S3 destination
 * whose bucket and prefix contain the source's is refused before any request, and so is one on
 * the source's own bucket and prefix when the source is the `minio` flavour (issue 10, bug 2).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer, type S3TestServer } from '../s3/server.js';

const NAMES = ['backup_2025_04_01_02_00_00', 'backup_2025_04_02_02_00_00', 'backup_2025_04_03_02_00_00'] as const;
const PREFIX = 'offsite/prod/';

interface PruneJson {
  ok: boolean;
  destinations: { destination: string; status: string; kept: { name: string; reasons: string[] }[]; removed: { name: string }[]; errors: unknown[] }[];
}

describe('prune at an s3 destination on Ceph RGW (CLI)', () => {
  let server: S3TestServer;
  let admin: S3Client;
  let dir: string;
  let config: string;
  let bucket: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    server = requireServer();
    admin = adminClient(server);
    env = { OFFSITE_TEST_KEY: server.accessKeyId, OFFSITE_TEST_SECRET: server.secretAccessKey, TZ: 'UTC' };
    dir = tempDir('prune-s3');
    let seed = 40;
    for (const name of NAMES) await generateBackup({ root: join(dir, 'backups'), name, seed: seed++, totalBytes: 96 * 1024, mtimeMs: Date.now() - 3_600_000 });
    bucket = await freshBucket(server, 'prune');
    config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      `  cloud: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${bucket}, prefix: ${PREFIX}, accessKeyId: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}", connectTimeoutMs: 2000, requestTimeoutMs: 10000 }`,
      'options: { quietPeriod: 1s, chunkSize: 64KiB }',
    ].join('\n'));
    for (const name of NAMES) {
      const run = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'cloud'], { env });
      assert.equal(run.code, 0, `replicate ${name}: ${run.stderr}${run.stdout}`);
    }
  });
  after(async () => { admin?.destroy(); await removeFreshBuckets(); });

  it('a minio source and an s3 destination on the same bucket and prefix are one place: prune refuses before deleting anything (exit 2)', async () => {
    const url = new URL(server.endpoint);
    // The same place spelled two ways: 127.0.0.1 vs localhost, `offsite/prod` vs `offsite/prod/`.
    const aliased = writeConfig(tempDir('prune-s3-alias'), [
      `source: { type: minio, address: 127.0.0.1, port: ${url.port}, useSSL: false, bucketName: ${bucket}, rootPath: offsite/prod, accessKeyID: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}" }`,
      'destinations:',
      `  cloud: { type: s3, endpoint: "http://localhost:${url.port}", region: ${server.region}, bucket: ${bucket}, prefix: ${PREFIX}, accessKeyId: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}" }`,
    ].join('\n'));
    const keys = await keysIn(admin, bucket, PREFIX);
    assert.ok(keys.some((k) => k.startsWith(`${PREFIX}${NAMES[0]}/`)), 'the oldest backup is there to be (wrongly) pruned');
    const run = await runCli(['--config', aliased, 'prune', '--keep-last', '1'], { env });
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.stderr, new RegExp(`destination "cloud" \\(s3://${bucket}/offsite/prod/ @ http://localhost:${url.port}\\) is the same place as the source \\(minio://${bucket}/offsite/prod/ @ http://127\\.0\\.0\\.1:${url.port}\\); a destination must be a place of its own`));
    assert.deepEqual(await keysIn(admin, bucket, PREFIX), keys, 'nothing was deleted');
  });

  it('--keep-last 1 removes every object of the two older copies; the newest stays complete', async () => {
    const [older, old, newest] = NAMES;
    const sourceBefore = treeDigest(join(dir, 'backups'));
    const keptKeys = await keysIn(admin, bucket, `${PREFIX}${newest}/`);
    assert.ok(keptKeys.includes(`${PREFIX}${newest}/.offsite/manifest.json`), 'replicated with a manifest');
    assert.ok((await keysIn(admin, bucket, `${PREFIX}${older}/`)).length > 5, 'the oldest copy has objects before the prune');

    const dry = jsonOf<PruneJson>(await runCli(['--config', config, '--json', 'prune', '--keep-last', '1', '--dry-run'], { env }));
    assert.deepEqual(dry.destinations[0]?.removed.map((r) => r.name), [old, older]);
    assert.equal((await keysIn(admin, bucket, `${PREFIX}${older}/`)).length > 5, true, 'the dry run deleted nothing');

    const run = await runCli(['--config', config, '--json', 'prune', '--keep-last', '1'], { env });
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<PruneJson>(run);
    assert.deepEqual(result.destinations.map((d) => [d.destination, d.status, d.kept.map((k) => k.name), d.removed.map((r) => r.name)]), [['cloud', 'ok', [newest], [old, older]]]);
    assert.deepEqual(result.destinations[0]?.kept[0]?.reasons, ['last snapshot']);
    assert.doesNotMatch(run.stdout + run.stderr, new RegExp(server.secretAccessKey), 'no secret in the output');

    assert.deepEqual(await keysIn(admin, bucket, `${PREFIX}${older}/`), [], 'nothing of the oldest copy is left');
    assert.deepEqual(await keysIn(admin, bucket, `${PREFIX}${old}/`), [], 'nothing of the middle copy is left');
    assert.deepEqual(await keysIn(admin, bucket, `${PREFIX}${newest}/`), keptKeys, 'the kept copy is untouched (and its lock released)');
    const record = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: `${PREFIX}.offsite/pruned.json` }));
    const pruned = JSON.parse(await (record.Body as { transformToString(): Promise<string> }).transformToString()) as { pruned: Record<string, string> };
    assert.deepEqual(Object.keys(pruned.pruned).sort(), [older, old]);
    assert.deepEqual(treeDigest(join(dir, 'backups')), sourceBefore, 'the source is untouched');

    const verify = await runCli(['--config', config, '--json', 'verify', newest, '--at', 'cloud', '--deep'], { env });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('an s3 destination whose root contains the source root is refused before any request (exit 2)', async () => {
    const overlapping = writeConfig(tempDir('prune-s3-overlap'), [
      `source: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${bucket}, prefix: ${PREFIX}, accessKeyId: x, secretAccessKey: y }`,
      'destinations:',
      `  cloud: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${bucket}, prefix: offsite/, accessKeyId: x, secretAccessKey: y }`,
    ].join('\n'));
    const run = await runCli(['--config', overlapping, 'prune', '--keep-last', '1'], { env });
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, new RegExp(`destination "cloud" \\(s3://${bucket}/offsite/ @ .*\\) contains the source \\(s3://${bucket}/offsite/prod/ @ .*\\); a destination must be a place of its own: .*prune would delete backups at the source`));
    assert.ok((await keysIn(admin, bucket, PREFIX)).length > 5, 'nothing was deleted');
  });
});
