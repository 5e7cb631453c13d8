/**
 * An `s3` destination in a bucket with versioning on, and one where DeleteObject is denied, on
 * the real Ceph RGW, through the CLI (issue 11 findings 12 and 13):
 *
 * - versioned: one warning naming the bucket; after replicate no version of a temp object (or
 *   any noncurrent version, or delete marker) remains; after prune no version or delete marker of
 *   the pruned copies remains and the bytes prune reports are those of what is gone.
 * - DeleteObject denied by a bucket policy: replicate still succeeds (the copies are written),
 *   warns naming the refused action and the permission, and the lock that cannot be released;
 *   prune fails naming the permission; once the permission is back, the next run removes the
 *   leftover temp objects.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { DeleteBucketPolicyCommand, PutBucketPolicyCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, writeConfig } from '../helpers/cli.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer, versionsIn, type S3TestServer } from '../s3/server.js';

const NAMES = ['backup_2025_05_01_02_00_00', 'backup_2025_05_02_02_00_00'] as const;
const PREFIX = 'offsite/prod/';
const PART = 5 * 1024 * 1024;

function configFor(dir: string, server: S3TestServer, bucket: string): string {
  return writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    `  cloud: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${bucket}, prefix: ${PREFIX}, accessKeyId: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}", connectTimeoutMs: 2000, requestTimeoutMs: 20000 }`,
    // 1 MiB chunks: S3 parts are 5 MiB, so the larger files are multipart uploads through a temp object.
    'options: { quietPeriod: 0s, chunkSize: 1MiB }',
  ].join('\n'));
}

async function makeBackups(dir: string): Promise<void> {
  let seed = 70;
  for (const name of NAMES) {
    await generateBackup({ root: join(dir, 'backups'), name, seed: seed++, totalBytes: 16 * 1024 * 1024, files: 6, mtimeMs: Date.now() - 3_600_000 });
    const largest = Math.max(...filesUnder(join(dir, 'backups', name)).map((p) => statSync(join(dir, 'backups', name, p)).size));
    assert.ok(largest > PART, `${name} has a file above one part (${largest} bytes), so a multipart upload through a temp object`);
  }
}

const isTemp = (key: string): boolean => /\/\.[^/]*\.offsite-partial$/.test(key);

describe('s3 destination with versioning on or deletes refused, on Ceph RGW (CLI)', () => {
  let server: S3TestServer;
  let admin: S3Client;
  let env: NodeJS.ProcessEnv;

  before(() => {
    server = requireServer();
    admin = adminClient(server);
    env = { OFFSITE_TEST_KEY: server.accessKeyId, OFFSITE_TEST_SECRET: server.secretAccessKey, TZ: 'UTC' };
  });
  after(async () => {
    admin?.destroy();
    await removeFreshBuckets();
  });

  it('versioned bucket: one warning; no temp versions after replicate; prune leaves no version or delete marker and reports true bytes', async () => {
    const dir = tempDir('versioned-s3');
    await makeBackups(dir);
    const bucket = await freshBucket(server, 'versioned', { versioned: true });
    const config = configFor(dir, server, bucket);

    for (const name of NAMES) {
      const run = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'cloud'], { env });
      assert.equal(run.code, 0, `replicate ${name}: ${run.stderr}${run.stdout}`);
      const warnings = run.stderr.split('\n').filter((l) => l.includes(`bucket ${bucket} has versioning enabled`));
      assert.equal(warnings.length, 1, `one versioning warning naming the bucket:\n${run.stderr}`);
      assert.match(warnings[0] as string, /noncurrent versions/);
    }
    const after = await versionsIn(admin, bucket, PREFIX);
    assert.ok(after.some((v) => v.size > PART), 'multipart files were written');
    assert.deepEqual(after.filter((v) => isTemp(v.key)).map((v) => v.key), [], 'no version of a temp object remains');
    assert.deepEqual(after.filter((v) => !v.latest || v.marker).map((v) => `${v.key}${v.marker ? ' (delete marker)' : ''}`), [], 'no noncurrent version or delete marker remains');

    const [older, newest] = NAMES;
    const olderVersions = await versionsIn(admin, bucket, `${PREFIX}${older}/`);
    const run = await runCli(['--config', config, '--json', 'prune', '--keep-last', '1'], { env });
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<{ destinations: { removed: { name: string; bytes: number }[] }[] }>(run);
    assert.deepEqual(result.destinations[0]?.removed.map((r) => r.name), [older]);
    const dataBytes = olderVersions.filter((v) => !v.key.includes('/.offsite/')).reduce((sum, v) => sum + v.size, 0);
    assert.equal(result.destinations[0]?.removed[0]?.bytes, dataBytes, 'the bytes reported are those of every version of its files that was stored');
    assert.deepEqual(await versionsIn(admin, bucket, `${PREFIX}${older}/`), [], 'no version or delete marker of the pruned copy remains');
    assert.ok((await keysIn(admin, bucket, `${PREFIX}${newest}/`)).length > 5, 'the kept copy stays');
  });

  it('DeleteObject denied: replicate succeeds with warnings naming the permission; prune names it; the next allowed run removes the leftovers', async () => {
    const dir = tempDir('nodelete-s3');
    await makeBackups(dir);
    const bucket = await freshBucket(server, 'nodelete');
    await admin.send(new PutBucketPolicyCommand({
      Bucket: bucket,
      Policy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Principal: { AWS: ['arn:aws:iam:::user/offsite-test'] }, Action: ['s3:DeleteObject'], Resource: [`arn:aws:s3:::${bucket}/*`] }],
      }),
    }));
    const config = configFor(dir, server, bucket);
    const [first, name] = NAMES;
    const one = await runCli(['--config', config, '--json', 'replicate', first, '--to', 'cloud'], { env });
    assert.equal(one.code, 0, `the copy is written, so replicate succeeds:\n${one.stderr}${one.stdout}`);
    const run = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'cloud'], { env });
    assert.equal(run.code, 0, `the copy is written, so replicate succeeds:\n${run.stderr}${run.stdout}`);
    const needs = new RegExp(`s3:DeleteObject is denied[^;]*; offsite needs s3:DeleteObject on ${bucket}/${PREFIX}\\*`);
    assert.match(run.stderr, new RegExp(`cloud: cannot delete temp object s3://${bucket}/${PREFIX}${name}/.*${needs.source}`), 'names the temp object and the permission');
    assert.match(run.stderr, new RegExp(`could not release the lock ${name}/\\.offsite/lock\\.json: .*s3:DeleteObject is denied.*; remove ${name}/\\.offsite/lock\\.json by hand`));
    const leftTemps = (await keysIn(admin, bucket, PREFIX)).filter(isTemp);
    assert.ok(leftTemps.length > 0, 'temp objects stayed (their removal was refused)');

    const verify = await runCli(['--config', config, 'verify', name, '--at', 'cloud', '--deep'], { env });
    assert.equal(verify.code, 0, `the copy is complete:\n${verify.stdout}${verify.stderr}`);

    const prune = await runCli(['--config', config, '--json', 'prune', '--keep-last', '1'], { env });
    assert.notEqual(prune.code, 0, prune.stdout);
    assert.match(prune.stdout + prune.stderr, needs, 'prune names the refused permission');

    await admin.send(new DeleteBucketPolicyCommand({ Bucket: bucket }));
    const again = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'cloud'], { env });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    const keys = await keysIn(admin, bucket, `${PREFIX}${name}/`);
    assert.deepEqual(keys.filter(isTemp), [], 'the leftover temp objects are removed by the next run');
    // The lock the first run could not release stays until removed by hand (the warning said so)
    // or taken over; it did not stop this run (a lock of a process gone on this host is taken over).
    assert.ok(keys.includes(`${PREFIX}${name}/.offsite/manifest.json`), 'the copy is complete');
  });
});
