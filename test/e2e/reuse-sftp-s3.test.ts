/**
 * Reuse (issue 12) against the real servers, through the built CLI: sshd (OpenSSH `copy-data`, and
 * `hardlink@openssh.com` with `reuse: link`), Ceph RGW through the `s3` driver and through the
 * `minio` driver (CopyObject). Night 2 shares every file but two with night 1: the shared files
 * are created server-side (the bytes sent to each server, counted by a proxy in front of it, stay
 * near the changed bytes), every copy is byte for byte the source's, a reused file damaged at the
 * destination is found by the audit and repaired (with `link`, in both copies sharing it, and the
 * repair breaks the link), prune of night 1 leaves night 2 intact, and SIGKILLs during a run that
 * reuses leave no copy that a check takes for complete before the rerun completes it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { deriveNight, flipByte, makeNights, type Nights } from '../helpers/nights.js';
import { binPath, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { minioSection } from '../s3/minio-section.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NIGHT1 = 'backup_2025_11_01_01_00_00';
const NIGHT2 = 'backup_2025_11_02_01_00_00';
const NIGHT3 = 'backup_2025_11_03_01_00_00';
const DESTINATIONS = ['nas', 'nasl', 'cloud', 'bucket'] as const;
const UTC = { TZ: 'UTC' };
/** Small chunks: the nights are small (few files keep every run short), and the largest changed file still spans several chunks. */
const CHUNK_BYTES = 256 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface DestinationJson { name: string; status: string; filesCopied: number; filesReused: number; bytesWritten: number }
interface ReplicateJson { destinations: DestinationJson[] }
interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; damage: { path: string; reusedFrom?: string }[]; repaired: string[] }[] }
interface VerifyJson { results: { destination: string; status: string; message?: string; damage: { message: string }[] }[] }
interface ManifestJson { files: { path: string; reusedFrom?: string }[] }

/** Path (relative to `prefix`) -> sha256 of every object under it, `.offsite/` left out (the GETs at once). */
async function bucketDigest(client: S3Client, bucket: string, prefix: string): Promise<Map<string, string>> {
  const keys = (await keysIn(client, bucket, prefix)).filter((key) => !key.slice(prefix.length).startsWith('.offsite/'));
  const digests = await Promise.all(keys.map(async (key) => {
    const body = await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToByteArray();
    return [key.slice(prefix.length), createHash('sha256').update(body ?? new Uint8Array()).digest('hex')] as const;
  }));
  return new Map(digests);
}

describe('reuse of earlier copies at sftp, s3 and minio destinations (CLI, real servers)', () => {
  let dir: string;
  let config: string;
  let nights: Nights;
  let admin: S3Client;
  let cloudBucket: string;
  let minioBucket: string;
  let nasRoot: string;
  let naslRoot: string;
  const proxies: Record<string, FaultProxy> = {};
  const source = (...rest: string[]): string => join(dir, 'backups', ...rest);
  const run = (...args: string[]) => runCli(['--config', config, ...args], { env: UTC, timeoutMs: 300_000 });
  const sent = (): Record<string, number> => Object.fromEntries(Object.entries(proxies).map(([name, p]) => [name, p.stats().bytesClientToServer]));
  const sentInAll = (): number => Object.values(sent()).reduce((a, b) => a + b, 0);
  const sameTrees = async (backup: string): Promise<void> => {
    const expected = treeDigest(source(backup));
    assert.deepEqual(treeDigest(join(nasRoot, backup), ['.offsite']), expected, `nas/${backup}`);
    assert.deepEqual(treeDigest(join(naslRoot, backup), ['.offsite']), expected, `nasl/${backup}`);
    const [cloud, bucket] = await Promise.all([bucketDigest(admin, cloudBucket, `copies/${backup}/`), bucketDigest(admin, minioBucket, `backup/${backup}/`)]);
    assert.deepEqual(cloud, expected, `cloud/${backup}`);
    assert.deepEqual(bucket, expected, `bucket/${backup}`);
  };

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    admin = adminClient(s3);
    dir = tempDir('reuse-remote');
    nights = await makeNights(source(), NIGHT1, NIGHT2, { seed: 1202, totalBytes: 3 * 1024 * 1024, largestFileBytes: 2 * 1024 * 1024, files: 24 });
    const largestChanged = statSync(source(NIGHT1, nights.changed[0] as string)).size;
    assert.ok(largestChanged > 2 * CHUNK_BYTES, `the largest changed file spans several chunks (${largestChanged} bytes)`);
    assert.ok(nights.files.filter((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')).length >= 2, 'unchanged binlogs to damage');
    const stamp = Date.now();
    nasRoot = join(sftp.root, `reuse-${stamp}`);
    naslRoot = join(sftp.root, `reuse-link-${stamp}`);
    cloudBucket = await freshBucket(s3, 'reuse');
    minioBucket = await freshBucket(s3, 'reuse-minio');
    const rgw = new URL(s3.endpoint);
    for (const name of DESTINATIONS) {
      proxies[name] = await startFaultProxy({ target: name.startsWith('nas') ? { host: sftp.host, port: sftp.port } : { host: rgw.hostname, port: Number(rgw.port) } });
    }
    const port = (name: string): number => (proxies[name] as FaultProxy).port;
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: source() },
      destinations: {
        nas: sectionFor(sftp, nasRoot, { host: '127.0.0.1', port: port('nas') }),
        nasl: sectionFor(sftp, naslRoot, { host: '127.0.0.1', port: port('nasl'), reuse: 'link' }),
        cloud: s3Section(s3, cloudBucket, { endpoint: `http://127.0.0.1:${port('cloud')}`, prefix: 'copies/' }),
        bucket: minioSection(s3, { address: '127.0.0.1', port: port('bucket'), bucketName: minioBucket, rootPath: 'backup' }),
      },
      options: { quietPeriod: '0s', chunkSize: `${CHUNK_BYTES / 1024}KiB`, retries: 2 },
    }));
    const first = await run('--quiet', 'replicate', NIGHT1);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });
  after(async () => {
    await Promise.all(Object.values(proxies).map((p) => p.close()));
    await removeFreshBuckets();
    admin?.destroy();
  });

  it('night 2: the shared files are created server-side, only about the changed bytes cross the wire, every copy equals the source', async () => {
    const before = sent();
    const replicated = await run('--json', 'replicate', NIGHT2);
    assert.equal(replicated.code, 0, replicated.stdout + replicated.stderr);
    const after = sent();
    const shared = nights.files.length - nights.changed.length;
    for (const d of jsonOf<ReplicateJson>(replicated).destinations) {
      assert.equal(d.status, 'complete', d.name);
      assert.equal(d.filesReused, shared, `${d.name}: every unchanged file reused`);
      assert.equal(d.filesCopied, nights.changed.length, `${d.name}: the changed files sent`);
      const wire = (after[d.name] as number) - (before[d.name] as number);
      // The changed files, the manifest and progress records, the requests themselves: far below the backup.
      assert.ok(wire >= nights.changedBytes, `${d.name}: ${wire} bytes sent, the changed files alone are ${nights.changedBytes}`);
      assert.ok(wire < nights.changedBytes + 1024 * 1024, `${d.name}: ${wire} bytes sent for ${nights.changedBytes} changed bytes (backup: ${nights.bytes})`);
    }
    await sameTrees(NIGHT2);
    const probe = nights.files.find((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')) as string;
    assert.notEqual(statSync(join(nasRoot, NIGHT2, probe)).ino, statSync(join(nasRoot, NIGHT1, probe)).ino, 'copy-data: a file of its own');
    assert.equal(statSync(join(naslRoot, NIGHT2, probe)).ino, statSync(join(naslRoot, NIGHT1, probe)).ino, 'reuse: link: a hard link');
    const manifest = JSON.parse(readFileSync(join(nasRoot, NIGHT2, '.offsite', 'manifest.json'), 'utf8')) as ManifestJson;
    assert.equal(manifest.files.filter((f) => f.reusedFrom === `${NIGHT1}/${f.path}`).length, shared);
  });

  it('a reused object damaged at S3 is found by the audit and repaired', async () => {
    const victim = nights.files.find((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')) as string;
    const key = `copies/${NIGHT2}/${victim}`;
    const head = await admin.send(new HeadObjectCommand({ Bucket: cloudBucket, Key: key }));
    const bytes = Buffer.from(readFileSync(source(NIGHT2, victim)));
    bytes[0] = (bytes[0] as number) ^ 0xff;
    await admin.send(new PutObjectCommand({ Bucket: cloudBucket, Key: key, Body: bytes, Metadata: head.Metadata }));
    const audit = await run('--json', 'audit', '--at', 'cloud', '--sample', '100%', '--repair');
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    const copies = jsonOf<AuditJson>(audit).copies;
    const night2 = copies.find((c) => c.backup === NIGHT2);
    assert.equal(night2?.state, 'repaired');
    assert.deepEqual(night2?.damage.map((d) => [d.path, d.reusedFrom]), [[victim, `${NIGHT1}/${victim}`]]);
    assert.deepEqual(night2?.repaired, [victim]);
    assert.equal(copies.find((c) => c.backup === NIGHT1)?.state, 'ok', 'night 1 has bytes of its own');
    assert.deepEqual(await bucketDigest(admin, cloudBucket, `copies/${NIGHT2}/`), treeDigest(source(NIGHT2)));
  });

  it('reuse: link over sftp: damage shows in both copies sharing the file; the repair breaks the link', async () => {
    const victim = nights.files.filter((p) => !nights.changed.includes(p) && p.startsWith('binlogs/'))[1] as string;
    flipByte(join(naslRoot, NIGHT2, victim));
    const audit = await run('--json', 'audit', '--at', 'nasl', '--sample', '100%', '--repair');
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    assert.deepEqual(jsonOf<AuditJson>(audit).copies.map((c) => [c.backup, c.state, c.damage.map((d) => d.path), c.repaired]), [
      [NIGHT1, 'repaired', [victim], [victim]], [NIGHT2, 'repaired', [victim], [victim]],
    ], 'the damage of the shared blocks shows in both copies');
    assert.notEqual(statSync(join(naslRoot, NIGHT2, victim)).ino, statSync(join(naslRoot, NIGHT1, victim)).ino);
    assert.deepEqual(treeDigest(join(naslRoot, NIGHT1), ['.offsite']), treeDigest(source(NIGHT1)));
  });

  it('prune of night 1 leaves night 2 intact everywhere (link included)', async () => {
    const prune = await run('--json', 'prune', '--keep-last', '1');
    assert.equal(prune.code, 0, prune.stdout + prune.stderr);
    for (const root of [nasRoot, naslRoot]) assert.equal(existsSync(join(root, NIGHT1)) ? treeDigest(join(root, NIGHT1)).size : 0, 0, 'night 1 is gone');
    assert.deepEqual(await keysIn(admin, cloudBucket, `copies/${NIGHT1}/`), []);
    await sameTrees(NIGHT2);
    const verify = await run('--json', 'verify', NIGHT2, '--deep');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('SIGKILL during a run that reuses: no copy is taken for complete before the rerun completes it', { timeout: 300_000 }, async () => {
    deriveNight(source(), NIGHT2, NIGHT3, [nights.changed[0] as string]);
    for (const p of Object.values(proxies)) p.setFault({ latencyMs: 15 }); // every request slower: the run lasts seconds
    const args = ['--config', config, '--quiet', 'replicate', NIGHT3, '--concurrency', '2'];
    let midRun = 0;
    // Each delay counts from the run's first bytes to a server (its start-up, seconds on a loaded
    // machine, is not the part under test): one kill early in the transfers, one later.
    for (const delayMs of [250, 1500]) {
      const mark = sentInAll();
      const child = spawn(process.execPath, [binPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...UTC } });
      let done = false;
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => { done = true; resolve(code); }));
      while (!done && sentInAll() === mark) await sleep(10);
      const finished = done || await Promise.race([exited.then(() => true), sleep(delayMs).then(() => false)]);
      if (!finished) { child.kill('SIGKILL'); midRun++; }
      await exited;
      const verify = await run('--json', 'verify', NIGHT3, '--deep');
      for (const r of jsonOf<VerifyJson>(verify).results) {
        assert.ok(r.status === 'incomplete' || r.status === 'ok', `after a kill at ${delayMs} ms: ${r.destination} ${r.status}: ${r.message ?? r.damage.map((d) => d.message).join('; ')}`);
      }
      if (finished) break;
    }
    for (const p of Object.values(proxies)) p.clearFaults();
    assert.ok(midRun > 0, 'at least one kill landed mid-run');
    const final = await run('--json', 'replicate', NIGHT3);
    assert.equal(final.code, 0, final.stdout + final.stderr);
    const verify = await run('--json', 'verify', NIGHT3, '--deep');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    await sameTrees(NIGHT3);
    const manifest = JSON.parse(readFileSync(join(nasRoot, NIGHT3, '.offsite', 'manifest.json'), 'utf8')) as ManifestJson;
    const reused = manifest.files.filter((f) => f.reusedFrom !== undefined).length;
    assert.ok(reused > 0 && reused < manifest.files.length, `the copy mixes reused (${reused}) and sent files`);
  });
});
