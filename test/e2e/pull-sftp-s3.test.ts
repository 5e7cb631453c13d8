/**
 * `offsite pull` end to end through the CLI against real servers: a backup replicated to an SFTP
 * destination (sshd) and an S3 destination (Ceph RGW) is pulled back from each into a `minio`
 * target (the bucket milvus-backup reads, here on RGW). The result must pass milvus-backup's
 * completion rule at the target and be byte-identical to the original; a damaged copy is never
 * pulled from; an existing backup is never overwritten.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { minioSection } from '../s3/minio-section.js';
import { freshBucket, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NAME = 'backup_2025_09_14_03_00_00';

interface PullJson { ok: boolean; files: number; bytesWritten: number; verify: { status: string; filesRead: number }; completion: string; keptManifest: boolean; restoreCommand: string; restoreHint: string }
interface ListJson { backups: { name: string; state: string; reason?: string; files: number }[] }

describe('pull back from sftp and s3 into a minio target (CLI)', () => {
  let dir: string;
  let original: Map<string, string>;
  let destinations: Record<string, Record<string, unknown>>;
  let sftpRoot: string;

  /** A config whose source is a fresh minio bucket (where milvus-backup would restore from). */
  async function minioConfig(label: string): Promise<{ config: string; bucket: string }> {
    const s3 = requireS3();
    const bucket = await freshBucket(s3, label);
    const config = join(dir, `${label}.yaml`);
    writeFileSync(config, stringify({
      source: minioSection(s3, { backupBucketName: bucket, backupRootPath: 'backup' }),
      destinations: { ...destinations, check: { type: 'local', root: join(dir, `${label}-check`) } },
      options: { quietPeriod: '0s', chunkSize: '256KiB' },
    }));
    return { config, bucket };
  }

  /** The backup as the minio target holds it, fetched back with a plain replicate to a folder. */
  async function contentAtTarget(config: string, label: string): Promise<Map<string, string>> {
    const run = await runCli(['--config', config, '--quiet', 'replicate', NAME, '--to', 'check']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    return treeDigest(join(dir, `${label}-check`, NAME), ['.offsite/']);
  }

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    dir = tempDir('pull');
    const backup = await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 3 * 1024 * 1024, files: 24, seed: 61 }); // few files: each costs requests in every run
    original = treeDigest(join(dir, 'backups', backup.name));
    sftpRoot = join(sftp.root, `pull-${Date.now()}`);
    destinations = {
      nas: sectionFor(sftp, sftpRoot),
      cloud: s3Section(s3, await freshBucket(s3, 'pull-dest'), { prefix: 'offsite/' }),
    };
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({ source: { type: 'local', root: join(dir, 'backups') }, destinations, options: { quietPeriod: '0s', chunkSize: '256KiB' } }));
    const run = await runCli(['--config', config, '--quiet', 'replicate', NAME, '--to', 'nas,cloud']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });
  after(async () => { await removeFreshBuckets(); });

  for (const from of ['cloud', 'nas']) {
    it(`from ${from}: the minio target passes the completion rule and holds the backup byte for byte`, async () => {
      const label = `pull-from-${from}`;
      const { config, bucket } = await minioConfig(label);
      const run = await runCli(['--config', config, '--json', 'pull', NAME, '--from', from, '--to', 'source']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const result = jsonOf<PullJson>(run);
      assert.equal(result.verify.status, 'ok');
      assert.equal(result.verify.filesRead, original.size, 'every file was read back at the target');
      assert.equal(result.completion, 'complete');
      assert.equal(result.keptManifest, false);
      assert.equal(result.restoreCommand, `milvus-backup restore -n ${NAME}`);
      assert.match(result.restoreHint, new RegExp(bucket));
      // milvus-backup's view of the target: the completion rule, from a fresh look.
      const list = jsonOf<ListJson>(await runCli(['--config', config, '--json', 'list']));
      assert.deepEqual(list.backups.map((b) => [b.name, b.state]), [[NAME, 'complete']]);
      assert.deepEqual(await contentAtTarget(config, label), original);
      // Nothing of offsite's own is left in the layout.
      // A second pull of the same copy finds it already there: nothing is sent, every file is hashed in place.
      const human = await runCli(['--config', config, 'pull', NAME, '--from', from, '--to', 'source']);
      assert.equal(human.code, 0, human.stdout + human.stderr);
      assert.match(human.stdout, /backup_2025_09_14_03_00_00 was already at .*nothing sent, every file hashed in place/);
      assert.deepEqual(await contentAtTarget(config, label), original);
    });
  }

  it('the human output ends with the milvus-backup restore command', async () => {
    const target = join(dir, 'restore-folder');
    const config = join(dir, 'offsite.yaml');
    const run = await runCli(['--config', config, 'pull', NAME, '--from', 'cloud', '--to', target]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /pulled backup_2025_09_14_03_00_00 from cloud/);
    assert.match(run.stdout, /next:\n {2}milvus-backup restore -n backup_2025_09_14_03_00_00\n/);
    assert.deepEqual(treeDigest(join(target, NAME)), original, 'exactly the original files, no .offsite folder');
  });

  it('a damaged copy is never pulled from; another destination completes the same pull', async () => {
    const victim = filesUnder(join(sftpRoot, NAME)).find((p) => p.startsWith('binlogs/') && readFileSync(join(sftpRoot, NAME, p)).length > 100_000) as string;
    assert.ok(victim);
    const path = join(sftpRoot, NAME, victim);
    const bytes = readFileSync(path);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0x10;
    writeFileSync(path, bytes);
    const target = join(dir, 'restore-damaged');
    const config = join(dir, 'offsite.yaml');
    const bad = await runCli(['--config', config, 'pull', NAME, '--from', 'nas', '--to', target]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stderr, new RegExp(`${victim.replace(/[.]/g, '\\.')}.*manifest says`));
    assert.match(bad.stderr, /pull from another destination/);
    const good = await runCli(['--config', config, 'pull', NAME, '--from', 'cloud', '--to', target]);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.deepEqual(treeDigest(join(target, NAME)), original);
  });

  it('no copy at the destination: a clear error, nothing written', async () => {
    const config = join(dir, 'offsite.yaml');
    const run = await runCli(['--config', config, 'pull', 'backup_2001_01_01_00_00_00', '--from', 'cloud', '--to', join(dir, 'nothing')]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cloud has no complete copy of backup_2001_01_01_00_00_00/);
    const usage = await runCli(['--config', config, 'pull', NAME, '--from', 'cloud', '--to', 'nowhere']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown target "nowhere"/);
  });
});
