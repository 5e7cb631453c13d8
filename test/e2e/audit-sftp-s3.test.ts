/**
 * `offsite audit --repair` against real servers: an SFTP destination (sshd) and an S3 destination
 * (Ceph RGW). With the backup gone from the source, an object overwritten behind offsite's back
 * at S3 (same size, other bytes, no stored hash) and a file deleted at the SFTP host are each
 * repaired from the other destination, and both copies deep-verify afterwards. The backup is small
 * (~30 files) on purpose: both repairs then start almost together, each while the other copy's
 * manifest is being rewritten, which is when a repair that judged its donor by that manifest failed.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NAME = 'backup_2025_10_01_01_00_00';

interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; damage: { path: string; problem: string }[]; repaired: string[]; repairedFrom?: string; message?: string }[] }

describe('audit --repair between sftp and s3 (CLI)', () => {
  let dir: string;
  let config: string;
  let bucket: string;
  let sftpRoot: string;

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    dir = tempDir('audit-remote');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 256 * 1024, seed: 71 });
    sftpRoot = join(sftp.root, `audit-${Date.now()}`);
    bucket = await freshBucket(s3, 'audit');
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: join(dir, 'backups') },
      destinations: { nas: sectionFor(sftp, sftpRoot), cloud: s3Section(s3, bucket, { prefix: 'copies/' }) },
      options: { quietPeriod: '0s', chunkSize: '128KiB' },
    }));
    const run = await runCli(['--config', config, '--quiet', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });
  after(async () => { await removeFreshBuckets(); });

  it('finds an overwritten object and a deleted file, and repairs each from the other destination', async () => {
    const files = filesUnder(join(dir, 'backups', NAME)).filter((p) => p.startsWith('binlogs/'));
    const [overwritten, deleted] = files as [string, string];
    const original = readFileSync(join(dir, 'backups', NAME, overwritten));
    const other = Buffer.from(original);
    other[0] = (other[0] as number) ^ 0xff;
    await adminClient(requireS3()).send(new PutObjectCommand({ Bucket: bucket, Key: `copies/${NAME}/${overwritten}`, Body: other }));
    rmSync(join(sftpRoot, NAME, deleted));
    renameSync(join(dir, 'backups', NAME), join(dir, 'away'));

    const found = jsonOf<AuditJson>(await runCli(['--config', config, '--json', 'audit', '--sample', '100%']));
    assert.equal(found.exitCode, 3);
    const at = (json: AuditJson, d: string) => json.copies.find((c) => c.destination === d && c.backup === NAME);
    assert.deepEqual(at(found, 'cloud')?.damage.map((d) => [d.path, d.problem]), [[overwritten, 'chunk']]);
    assert.deepEqual(at(found, 'nas')?.damage.map((d) => [d.path, d.problem]), [[deleted, 'missing']]);

    const run = await runCli(['--config', config, '--json', 'audit', '--sample', '100%', '--repair']);
    const fixed = jsonOf<AuditJson>(run);
    assert.equal(run.code, 0, JSON.stringify(fixed.copies));
    assert.deepEqual([at(fixed, 'cloud')?.state, at(fixed, 'cloud')?.repaired, at(fixed, 'cloud')?.repairedFrom], ['repaired', [overwritten], 'nas']);
    assert.deepEqual([at(fixed, 'nas')?.state, at(fixed, 'nas')?.repaired, at(fixed, 'nas')?.repairedFrom], ['repaired', [deleted], 'cloud']);
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });
});
