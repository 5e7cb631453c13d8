/**
 * Reuse (issue 12) and adoption at encrypted destinations (issue 14), through the built CLI, on a
 * local folder, sshd (through a byte-counting proxy) and Ceph RGW (likewise), each with
 * `encryption: { key }`. Night 2 shares every file but two with night 1: the shared files are
 * created server-side from night 1's sealed files (found by their keyed plaintext MAC, taken from
 * the one source read), so only about the changed bytes cross the wire; the new manifest records
 * night 1's stored hashes and MAC for them. Pull with the key gives night 2 back byte for byte; an
 * auditor without the key still finds a flipped byte in a reused file. Files committed but not
 * recorded (the state a SIGKILL between a commit and the next checkpoint leaves: here the
 * manifest is removed after a whole run, so every file is in it) are read back, opened and
 * adopted, not sent again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { storedSize } from '../../src/crypto/format.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { makeNights, type Nights } from '../helpers/nights.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { freshRoot, makeFolder, removeFreshRoots, requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NIGHT1 = 'backup_2025_12_01_01_00_00';
const NIGHT2 = 'backup_2025_12_02_01_00_00';
const OTHER = 'backup_2025_12_03_01_00_00';
const DESTINATIONS = ['disk', 'nas', 'cloud'] as const;
const CHUNK_BYTES = 256 * 1024;
const UTC = { TZ: 'UTC' };

interface DestinationJson { name: string; status: string; filesCopied: number; filesReused: number; filesAdopted: number; bytesWritten: number }
interface ReplicateJson { destinations: DestinationJson[] }
interface VerifyJson { results: { destination: string; status: string; damage: { path: string; message: string }[] }[] }
interface ManifestJson { files: { path: string; size: number; hash: string; chunks: string[]; storedSize?: number; mac?: string; reusedFrom?: string }[] }

/** Reads, writes and deletes the stored objects of one destination (keys relative to its root). */
interface Stored {
  read(key: string): Promise<Buffer>;
  write(key: string, bytes: Buffer): Promise<void>;
  remove(key: string): Promise<void>;
}

function folderStored(root: string): Stored {
  return {
    read: async (key) => readFileSync(join(root, key)),
    write: async (key, bytes) => writeFileSync(join(root, key), bytes),
    remove: async (key) => rmSync(join(root, key), { force: true }),
  };
}

function bucketStored(client: S3Client, bucket: string, prefix: string): Stored {
  return {
    read: async (key) => Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }))).Body?.transformToByteArray() ?? new Uint8Array()),
    write: async (key, bytes) => { await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${key}`, Body: bytes })); },
    remove: async (key) => { await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` })); },
  };
}

describe('reuse and adoption at encrypted destinations (local folder, sshd, Ceph RGW; CLI)', () => {
  let dir: string;
  let nights: Nights;
  let admin: S3Client;
  const stored: Partial<Record<(typeof DESTINATIONS)[number], Stored>> = {};
  const proxies: Record<string, FaultProxy> = {};
  const configs = { keyed: '', bare: '' };
  const env = { ...UTC, OFFSITE_KEY: randomBytes(32).toString('hex') };
  const source = (...rest: string[]): string => join(dir, 'backups', ...rest);
  const run = (config: keyof typeof configs, ...args: string[]) => runCli(['--config', configs[config], ...args], { env, timeoutMs: 300_000 });
  const sent = (): Record<string, number> => Object.fromEntries(Object.entries(proxies).map(([name, p]) => [name, p.stats().bytesClientToServer]));
  const manifestOf = async (destination: (typeof DESTINATIONS)[number], backup: string): Promise<ManifestJson> =>
    JSON.parse((await (stored[destination] as Stored).read(`${backup}/.offsite/manifest.json`)).toString()) as ManifestJson;

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    admin = adminClient(s3);
    dir = tempDir('enc-reuse');
    nights = await makeNights(source(), NIGHT1, NIGHT2, { seed: 1403, totalBytes: 3 * 1024 * 1024, largestFileBytes: 2 * 1024 * 1024, files: 16 });
    assert.ok(statSync(source(NIGHT1, nights.changed[0] as string)).size > 2 * CHUNK_BYTES, 'the largest changed file spans several chunks');
    const disk = join(dir, 'disk');
    mkdirSync(disk);
    const nasRoot = await freshRoot(sftp, 'enc-reuse');
    await makeFolder(nasRoot);
    const bucket = await freshBucket(s3, 'enc-reuse');
    stored.disk = folderStored(disk);
    stored.nas = folderStored(nasRoot);
    stored.cloud = bucketStored(admin, bucket, 'copies/');
    const rgw = new URL(s3.endpoint);
    proxies['nas'] = await startFaultProxy({ target: { host: sftp.host, port: sftp.port } });
    proxies['cloud'] = await startFaultProxy({ target: { host: rgw.hostname, port: Number(rgw.port) } });
    const write = (name: keyof typeof configs, encryption: Record<string, unknown> | undefined): void => {
      const enc = encryption ? { encryption } : {};
      configs[name] = join(dir, `${name}.yaml`);
      writeFileSync(configs[name], stringify({
        source: { type: 'local', root: source() },
        destinations: {
          disk: { type: 'local', root: disk, ...enc },
          nas: { ...sectionFor(sftp, nasRoot, { host: '127.0.0.1', port: (proxies['nas'] as FaultProxy).port }), ...enc },
          cloud: { ...s3Section(s3, bucket, { endpoint: `http://127.0.0.1:${(proxies['cloud'] as FaultProxy).port}`, prefix: 'copies/' }), ...enc },
        },
        options: { quietPeriod: '0s', chunkSize: `${CHUNK_BYTES / 1024}KiB` },
      }));
    };
    write('keyed', { key: '${OFFSITE_KEY}' });
    write('bare', undefined);
    const first = await run('keyed', '--quiet', 'replicate', NIGHT1);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });
  after(async () => {
    await Promise.all(Object.values(proxies).map((p) => p.close()));
    await removeFreshBuckets();
    await removeFreshRoots();
    admin?.destroy();
  });

  it('night 2: unchanged files are copied server-side from night 1\'s sealed files, only about the changed bytes cross the wire', async () => {
    const before = sent();
    const replicated = await run('keyed', '--json', 'replicate', NIGHT2);
    assert.equal(replicated.code, 0, replicated.stdout + replicated.stderr);
    const after = sent();
    const shared = nights.files.filter((p) => !nights.changed.includes(p));
    const changedStored = nights.changed.reduce((sum, p) => sum + storedSize(statSync(source(NIGHT2, p)).size, CHUNK_BYTES), 0);
    for (const d of jsonOf<ReplicateJson>(replicated).destinations) {
      assert.equal(d.status, 'complete', d.name);
      assert.equal(d.filesReused, shared.length, `${d.name}: every unchanged file reused`);
      assert.equal(d.filesCopied, nights.changed.length, `${d.name}: the changed files sent`);
      assert.equal(d.bytesWritten, nights.changedBytes, `${d.name}: only the changed files written`);
      if (d.name in proxies) {
        const wire = (after[d.name] as number) - (before[d.name] as number);
        assert.ok(wire >= changedStored && wire < changedStored + 512 * 1024, `${d.name}: ${wire} bytes sent for ${changedStored} changed bytes stored (backup: ${nights.bytes})`);
      }
    }
    for (const destination of DESTINATIONS) {
      const first = new Map((await manifestOf(destination, NIGHT1)).files.map((f) => [f.path, f]));
      const second = await manifestOf(destination, NIGHT2);
      for (const f of second.files) {
        const earlier = first.get(f.path);
        if (shared.includes(f.path)) {
          // Night 1's record of the stored bytes, and the same stored bytes.
          assert.equal(f.reusedFrom, `${NIGHT1}/${f.path}`, `${destination}: ${f.path}`);
          assert.deepEqual([f.hash, f.chunks, f.storedSize, f.mac], [earlier?.hash, earlier?.chunks, earlier?.storedSize, earlier?.mac], `${destination}: ${f.path}: night 1's stored record`);
        } else {
          assert.equal(f.reusedFrom, undefined);
          assert.notEqual(f.mac, earlier?.mac, `${destination}: ${f.path} changed: another MAC`);
        }
      }
      const probe = shared.find((p) => p.startsWith('binlogs/')) as string;
      assert.deepEqual(await (stored[destination] as Stored).read(`${NIGHT2}/${probe}`), await (stored[destination] as Stored).read(`${NIGHT1}/${probe}`), `${destination}: a reused file holds night 1's sealed bytes`);
    }
  });

  it('pull with the key gives night 2 back byte for byte from each destination', async () => {
    const expected = treeDigest(source(NIGHT2));
    for (const from of DESTINATIONS) {
      const target = join(dir, `restore-${from}`);
      mkdirSync(target);
      const pull = await run('keyed', '--json', 'pull', NIGHT2, '--from', from, '--to', target);
      assert.equal(pull.code, 0, `${from}: ${pull.stdout}${pull.stderr}`);
      assert.deepEqual(treeDigest(join(target, NIGHT2)), expected, `${from}: byte for byte`);
    }
  });

  it('an auditor without the key finds a flipped byte in a reused file (exit 3), naming it; the copy it came from is intact', async () => {
    const victim = nights.files.filter((p) => !nights.changed.includes(p) && p.startsWith('binlogs/') && statSync(source(NIGHT2, p)).size > 1000)[0] as string;
    for (const destination of DESTINATIONS) {
      const bytes = stored[destination] as Stored;
      const key = `${NIGHT2}/${victim}`;
      const good = await bytes.read(key);
      const bad = Buffer.from(good);
      bad[700] = (bad[700] as number) ^ 0x04;
      await bytes.write(key, bad);
      try {
        const verify = await run('bare', '--json', 'verify', NIGHT2, '--at', destination, '--deep');
        assert.equal(verify.code, 3, `${destination}: ${verify.stdout}${verify.stderr}`);
        assert.deepEqual(jsonOf<VerifyJson>(verify).results[0]?.damage.map((d) => d.path), [victim], destination);
        const earlier = await run('bare', '--json', 'verify', NIGHT1, '--at', destination, '--deep');
        assert.equal(earlier.code, 0, `${destination}: night 1 has sealed bytes of its own: ${earlier.stdout}${earlier.stderr}`);
      } finally {
        await bytes.write(key, good);
      }
    }
  });

  it('files committed but not recorded are read back, opened and adopted, not sent again', async () => {
    await generateBackup({ root: source(), name: OTHER, totalBytes: 2 * 1024 * 1024, files: 10, seed: 1404 });
    const files = filesUnder(source(OTHER));
    const first = await run('keyed', '--quiet', 'replicate', OTHER);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    // What a kill between commits and the next checkpoint leaves: every file there, none recorded.
    for (const destination of DESTINATIONS) await (stored[destination] as Stored).remove(`${OTHER}/.offsite/manifest.json`);
    const before = sent();
    const rerun = await run('keyed', '--json', 'replicate', OTHER);
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    const after = sent();
    for (const d of jsonOf<ReplicateJson>(rerun).destinations) {
      assert.equal(d.status, 'complete', d.name);
      assert.deepEqual([d.filesAdopted, d.filesCopied, d.filesReused, d.bytesWritten], [files.length, 0, 0, 0], `${d.name}: every file adopted, none sent`);
      if (d.name in proxies) {
        const wire = (after[d.name] as number) - (before[d.name] as number);
        assert.ok(wire < 128 * 1024, `${d.name}: ${wire} bytes sent (the manifest and requests), the backup is ${2 * 1024 * 1024}`);
      }
    }
    const verify = await run('bare', '--json', 'verify', OTHER, '--at', DESTINATIONS.join(','), '--deep');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const target = join(dir, 'restore-other');
    mkdirSync(target);
    const pull = await run('keyed', 'pull', OTHER, '--from', 'cloud', '--to', target);
    assert.equal(pull.code, 0, pull.stdout + pull.stderr);
    assert.deepEqual(treeDigest(join(target, OTHER)), treeDigest(source(OTHER)));
  });
});
