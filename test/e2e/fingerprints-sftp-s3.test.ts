/**
 * Fingerprints at both ends against the real servers (issue 11 finding 4): an object overwritten
 * behind offsite's back at S3 (Ceph RGW; same size, other bytes, our stored hash kept in its
 * metadata) and the same file rewritten in place at the SFTP host (same size, a later second) are each
 * found by quick verify (exit 3, naming the file) and by the quick pass of audit, and replicate
 * sends them again.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NAME = 'backup_2025_11_01_01_00_00';

interface VerifyJson { results: { destination: string; status: string; damage: { path: string; problem: string }[] }[] }
interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; damage: { path: string; problem: string }[] }[] }
interface ReplicateJson { destinations: { name: string; status: string; filesCopied: number; bytesWritten: number }[] }
interface ManifestJson { files: { path: string; size: number; destinationFingerprint?: string }[] }

function flipped(bytes: Buffer): Buffer {
  const other = Buffer.from(bytes);
  other[0] = (other[0] as number) ^ 0xff;
  return other;
}

describe('fingerprints at an sftp and an s3 destination (CLI, real servers)', () => {
  let dir: string;
  let config: string;
  let bucket: string;
  let sftpRoot: string;
  let largest: string;

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    dir = tempDir('fp-remote');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 12 * 1024 * 1024, files: 24, seed: 73 }); // few files: each costs requests at both servers in every run
    sftpRoot = join(sftp.root, `fp-${Date.now()}`);
    bucket = await freshBucket(s3, 'fp');
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: join(dir, 'backups') },
      destinations: { nas: sectionFor(sftp, sftpRoot), cloud: s3Section(s3, bucket, { prefix: 'copies/' }) },
      options: { quietPeriod: '0s', chunkSize: '1MiB' },
    }));
    const run = await runCli(['--config', config, '--quiet', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const binlogs = filesUnder(join(dir, 'backups', NAME)).filter((p) => p.startsWith('binlogs/'));
    const bySize = binlogs.sort((a, b) => statSync(join(dir, 'backups', NAME, b)).size - statSync(join(dir, 'backups', NAME, a)).size || (a < b ? -1 : 1));
    largest = bySize[0] as string;
  });
  after(async () => { await removeFreshBuckets(); });

  it('every record carries the destination fingerprint from after commit', async () => {
    const verify = await runCli(['--config', config, 'verify', NAME]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const head = await adminClient(requireS3()).send(new HeadObjectCommand({ Bucket: bucket, Key: `copies/${NAME}/${largest}` }));
    assert.match((head.ETag ?? '').replace(/"/g, ''), /^[0-9a-f]{32}(-\d+)?$/, 'RGW gives the object an ETag to fingerprint');
    const nas = JSON.parse(readFileSync(join(sftpRoot, NAME, '.offsite', 'manifest.json'), 'utf8')) as ManifestJson;
    const record = nas.files.find((f) => f.path === largest);
    assert.equal(record?.destinationFingerprint, `sftp:${record?.size}:${Math.floor(statSync(join(sftpRoot, NAME, largest)).mtimeMs / 1000)}`);
  });

  it('finding 4: same-size replacements found by quick verify (exit 3, naming the file) and audit\'s quick pass; replicate sends them again', async () => {
    // S3: overwritten behind offsite's back, same size, our stored hash kept in the metadata.
    const s3Key = `copies/${NAME}/${largest}`;
    const admin = adminClient(requireS3());
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: s3Key }));
    const original = readFileSync(join(dir, 'backups', NAME, largest));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: s3Key, Body: flipped(original), Metadata: head.Metadata }));
    // SFTP: rewritten in place in a later second than its commit (SFTP times are whole seconds).
    await sleep(1100);
    const nasFile = join(sftpRoot, NAME, largest);
    writeFileSync(nasFile, flipped(readFileSync(nasFile)));

    const verify = await runCli(['--config', config, '--json', 'verify', NAME]);
    assert.equal(verify.code, 3, verify.stdout + verify.stderr);
    const results = jsonOf<VerifyJson>(verify).results;
    const damage = (d: string) => results.find((r) => r.destination === d)?.damage.map((x) => x.path);
    assert.deepEqual(damage('cloud'), [largest]);
    assert.deepEqual(damage('nas'), [largest]);
    const human = await runCli(['--config', config, 'verify', NAME, '--at', 'cloud']);
    assert.equal(human.code, 3);
    assert.ok(human.stdout.includes(largest), human.stdout);

    // Slice 2 of 2 does not hold the largest file: the quick pass, not the read-back, finds it.
    const audit = await runCli(['--config', config, '--json', 'audit', '--slice', '2/2']);
    assert.equal(audit.code, 3, audit.stdout + audit.stderr);
    const copies = jsonOf<AuditJson>(audit).copies.filter((c) => c.backup === NAME);
    assert.deepEqual(copies.find((c) => c.destination === 'cloud')?.damage.map((d) => d.path), [largest]);
    assert.deepEqual(copies.find((c) => c.destination === 'nas')?.damage.map((d) => d.path), [largest]);

    const run = await runCli(['--config', config, '--json', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    for (const d of jsonOf<ReplicateJson>(run).destinations) assert.deepEqual([d.name, d.status, d.filesCopied], [d.name, 'complete', 1]);
    assert.deepEqual(treeDigest(join(sftpRoot, NAME), ['.offsite/']), treeDigest(join(dir, 'backups', NAME)));
    const deep = await runCli(['--config', config, 'verify', NAME, '--deep']);
    assert.equal(deep.code, 0, deep.stdout + deep.stderr);
  });
});
