/**
 * A copy gone without a prune is LOST (issue 11, finding 10) against the real sshd and Ceph RGW,
 * through the CLI: a copy moved away at the SFTP host, and the S3 destination's whole prefix
 * purged (its `.offsite/audit.json` with it). Exit 3 naming both, `--repair` brings them back,
 * and a pruned copy is `absent`, not lost.
 */
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, tempDir } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const OLD = 'backup_2025_10_01_01_00_00';
const NEW = 'backup_2025_10_02_01_00_00';

interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; message?: string }[] }

describe('audit: lost copies at sftp and s3 (CLI)', () => {
  let dir: string;
  let config: string;
  let bucket: string;
  let sftpRoot: string;
  const at = (json: AuditJson, destination: string, backup: string) => json.copies.find((c) => c.destination === destination && c.backup === backup)?.state;

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    dir = tempDir('audit-lost-remote');
    await generateBackup({ root: join(dir, 'backups'), name: OLD, totalBytes: 512 * 1024, seed: 83 });
    await generateBackup({ root: join(dir, 'backups'), name: NEW, totalBytes: 512 * 1024, seed: 84 });
    sftpRoot = join(sftp.root, `audit-lost-${Date.now()}`);
    bucket = await freshBucket(s3, 'lost');
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: join(dir, 'backups') },
      destinations: { nas: sectionFor(sftp, sftpRoot), cloud: s3Section(s3, bucket, { prefix: 'copies/' }) },
      options: { quietPeriod: '0s', chunkSize: '128KiB' },
    }));
    for (const name of [OLD, NEW]) {
      const run = await runCli(['--config', config, '--quiet', 'replicate', name]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
    }
    const first = await runCli(['--config', config, '--json', 'audit']);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });
  after(async () => { await removeFreshBuckets(); });

  it('a copy moved away at the SFTP host and a purged S3 prefix are LOST; --repair brings them back', async () => {
    renameSync(join(sftpRoot, OLD), join(dir, 'moved-away'));
    const admin = adminClient(requireS3());
    try {
      const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'copies/' }));
      assert.ok((listed.Contents ?? []).some((o) => o.Key === 'copies/.offsite/audit.json'), 'the audit record is in the prefix too');
      for (const object of listed.Contents ?? []) await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
      assert.equal(listed.IsTruncated, false);
    } finally {
      admin.destroy();
    }
    const run = await runCli(['--config', config, '--json', 'audit']);
    const found = jsonOf<AuditJson>(run);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.deepEqual([at(found, 'nas', OLD), at(found, 'nas', NEW), at(found, 'cloud', OLD), at(found, 'cloud', NEW)], ['lost', 'ok', 'lost', 'lost']);

    const repair = await runCli(['--config', config, '--json', 'audit', '--repair']);
    const fixed = jsonOf<AuditJson>(repair);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.deepEqual([at(fixed, 'nas', OLD), at(fixed, 'cloud', OLD), at(fixed, 'cloud', NEW)], ['repaired', 'repaired', 'repaired']);
    const verify = await runCli(['--config', config, 'verify', OLD, '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });

  it('a pruned copy is absent, not lost', async () => {
    const prune = await runCli(['--config', config, 'prune', '--keep-last', '1', '--at', 'cloud']);
    assert.equal(prune.code, 0, prune.stdout + prune.stderr);
    const run = await runCli(['--config', config, '--json', 'audit']);
    const result = jsonOf<AuditJson>(run);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual([at(result, 'cloud', OLD), at(result, 'nas', OLD)], ['absent', 'ok']);
  });
});
