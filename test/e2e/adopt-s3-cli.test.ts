/**
 * "Checked in place" means read and hashed, also on S3 (issue 11, finding 9), against the real
 * Ceph RGW through the CLI. An object whose bytes are replaced while its `offsite-hash` metadata
 * is kept, with the copy's manifest gone, must not be adopted on the strength of that metadata:
 * `replicate` sends it again and `audit --repair` copies it again and reports the files it read,
 * and `verify --deep` passes afterwards.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer, s3Section } from '../s3/server.js';

const NAME = 'backup_2025_11_02_01_00_00';

interface ReplicateJson { destinations: { name: string; status: string; filesCopied: number; filesAdopted: number }[] }
interface AuditJson { exitCode: number; copies: { destination: string; state: string; repaired: string[]; filesRead: number; bytesRead: number; message?: string }[] }

async function body(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
}

describe('adopting a file on S3 reads its bytes (CLI, Ceph RGW)', () => {
  let admin: S3Client;
  let dir: string;
  let config: string;
  let bucket: string;
  let path: string;

  /** Replaces the object's bytes (same size) keeping its metadata, and removes the copy's manifest. */
  async function tamper(): Promise<Buffer> {
    const key = `copies/${NAME}/${path}`;
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    assert.match(head.Metadata?.['offsite-hash'] ?? '', /^xxh64:/, 'the object carries our stored hash');
    const original = await body(admin, bucket, key);
    const other = Buffer.from(original);
    other[other.length >> 1] = (other[other.length >> 1] as number) ^ 0x5a;
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: other, Metadata: head.Metadata }));
    const kept = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(kept.Metadata?.['offsite-hash'], head.Metadata?.['offsite-hash'], 'the stored hash was kept');
    await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: `copies/${NAME}/.offsite/manifest.json` }));
    return original;
  }

  before(async () => {
    const server = requireServer();
    admin = adminClient(server);
    dir = tempDir('adopt-s3');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 2 * 1024 * 1024, files: 24, seed: 93 }); // few files: each costs requests in every run
    bucket = await freshBucket(server, 'adopt');
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: join(dir, 'backups') },
      destinations: { cloud: s3Section(server, bucket, { prefix: 'copies/' }) },
      options: { quietPeriod: '0s', chunkSize: '128KiB' },
    }));
    const run = await runCli(['--config', config, '--quiet', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    path = filesUnder(join(dir, 'backups', NAME)).find((p) => p.startsWith('binlogs/') && readFileSync(join(dir, 'backups', NAME, p)).length > 1000) as string;
    assert.ok(path, 'a binlog of some size');
  });
  after(async () => { admin?.destroy(); await removeFreshBuckets(); });

  it('replicate sends the replaced object again instead of trusting its metadata', async () => {
    await tamper();
    const run = await runCli(['--config', config, '--json', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const d = jsonOf<ReplicateJson>(run).destinations[0];
    assert.equal(d?.status, 'complete');
    assert.equal(d?.filesCopied, 1, 'exactly the replaced object was sent again');
    assert.ok((d?.filesAdopted ?? 0) > 0, 'the intact objects were adopted');
    assert.ok((await body(admin, bucket, `copies/${NAME}/${path}`)).equals(readFileSync(join(dir, 'backups', NAME, path))), 'the object holds the source bytes again');
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--deep']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('audit --repair copies the replaced object again and reports the files it read', async () => {
    await tamper();
    const run = await runCli(['--config', config, '--json', 'audit', '--repair']);
    const result = jsonOf<AuditJson>(run);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const copy = result.copies[0];
    assert.equal(copy?.state, 'repaired', JSON.stringify(copy));
    assert.deepEqual(copy?.repaired, [path]);
    const total = filesUnder(join(dir, 'backups', NAME)).length;
    assert.equal(copy?.filesRead, total, 'every file was read: the adopted ones when hashed in place, the copied one after the copy');
    assert.ok((copy?.bytesRead ?? 0) > 0);
    const text = await runCli(['--config', config, 'audit']);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--deep']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
