/**
 * One backup replicated by several `offsite replicate NAME --shard i/n` processes at once (issue
 * 15), to a local folder, an SFTP host (sshd) and an S3 bucket (Ceph RGW) together: the union of
 * the shards is the backup, the manifest appears once per destination and only when every shard
 * is recorded; a killed shard leaves no manifest and its rerun alone completes the copy; two
 * workers of one index do not corrupt each other; a shard of another split is refused; `--finish`
 * names the missing shards.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { shardOfPath } from '../../src/core/shard.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { binPath, jsonOf, runCli, tempDir, treeDigest, type CliRun } from '../helpers/cli.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { freshRoot, removeFreshRoots, requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NAME = 'backup_2026_01_15_02_00_00';
const DESTINATIONS = ['disk', 'nas', 'cloud'] as const;

interface ShardJson {
  files: number;
  shard?: { index: number; count: number };
  destinations: { name: string; status: string; filesCopied: number; bytesWritten: number; shardSet?: { status: string; manifestWritten: boolean; missing: number[] } }[];
}
interface FinishJson { destinations: { destination: string; status: string; count: number; missing?: number[]; manifestWritten?: boolean }[] }

describe('sharded replicate: n processes, local + sftp + s3 (CLI)', () => {
  let sourceRoot: string;
  let original: Map<string, string>;

  /** Fresh destinations and a config for one test. */
  async function setup(label: string): Promise<{ config: string; disk: string; nas: string; bucket: string }> {
    const dir = tempDir(`shard-${label}`);
    const sftp = requireSftp();
    const s3 = requireS3();
    const disk = join(dir, 'disk');
    const nas = await freshRoot(sftp, `shard-${label}`);
    const bucket = await freshBucket(s3, `shard-${label}`);
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: sourceRoot },
      destinations: { disk: { type: 'local', root: disk }, nas: sectionFor(sftp, nas), cloud: s3Section(s3, bucket, { prefix: 'offsite/' }) },
      options: { quietPeriod: '0s', chunkSize: '256KiB', retries: 0 },
    }));
    return { config, disk, nas, bucket };
  }

  /** The destinations holding a manifest for the backup, by looking behind offsite's back. */
  async function manifestsAt(s: { disk: string; nas: string; bucket: string }): Promise<string[]> {
    const found: string[] = [];
    if (existsSync(join(s.disk, NAME, '.offsite', 'manifest.json'))) found.push('disk');
    if (existsSync(join(s.nas, NAME, '.offsite', 'manifest.json'))) found.push('nas');
    const client = adminClient(requireS3());
    try {
      if ((await keysIn(client, s.bucket, `offsite/${NAME}/.offsite/`)).includes(`offsite/${NAME}/.offsite/manifest.json`)) found.push('cloud');
    } finally {
      client.destroy();
    }
    return found;
  }

  /** Every destination deep-verifies and holds exactly the source's files. */
  async function assertWhole(s: { config: string; disk: string; nas: string }): Promise<void> {
    const verify = await runCli(['--config', s.config, 'verify', NAME, '--at', DESTINATIONS.join(','), '--deep']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.deepEqual(treeDigest(join(s.disk, NAME), ['.offsite/']), original);
    assert.deepEqual(treeDigest(join(s.nas, NAME), ['.offsite/']), original);
  }

  const shard = (config: string, spec: string, extra: string[] = []): Promise<CliRun> =>
    runCli(['--config', config, '--json', 'replicate', NAME, '--shard', spec, ...extra], { timeoutMs: 180_000 });

  before(async () => {
    sourceRoot = tempDir('shard-source');
    await generateBackup({ root: sourceRoot, name: NAME, totalBytes: 3 * 1024 * 1024, seed: 1515 });
    original = treeDigest(join(sourceRoot, NAME));
    // The split must give every shard of 3 (and 2) some files, or the tests below would prove little.
    const hasher = await getHasher();
    for (const n of [2, 3]) {
      const sizes = new Array<number>(n).fill(0);
      for (const path of original.keys()) { const i = shardOfPath(hasher, path, n); sizes[i] = (sizes[i] ?? 0) + 1; }
      assert.ok(sizes.every((c) => c >= 2), `every shard of ${n} has files: ${sizes.join(', ')}`);
    }
  });
  after(async () => {
    await removeFreshBuckets();
    await removeFreshRoots();
  });

  it('3 shards at once: the union is the backup, and the manifest is written once per destination', async () => {
    const s = await setup('union');
    const runs = await Promise.all([0, 1, 2].map((i) => shard(s.config, `${i}/3`)));
    for (const run of runs) assert.equal(run.code, 0, run.stdout + run.stderr);
    const results = runs.map((r) => jsonOf<ShardJson>(r));
    assert.equal(results.reduce((sum, r) => sum + r.files, 0), original.size, 'the shards split the files between them');
    for (const name of DESTINATIONS) {
      const writers = results.filter((r) => r.destinations.find((d) => d.name === name)?.shardSet?.manifestWritten === true);
      assert.equal(writers.length, 1, `${name}: exactly one shard wrote the manifest`);
      const copied = results.reduce((sum, r) => sum + (r.destinations.find((d) => d.name === name)?.filesCopied ?? 0), 0);
      assert.equal(copied, original.size, `${name}: each file was sent once`);
    }
    assert.deepEqual(await manifestsAt(s), [...DESTINATIONS]);
    await assertWhole(s);
    // The shards' records went with the finish (their locks with each shard).
    assert.ok(!existsSync(join(s.disk, NAME, '.offsite', 'shards')) || filesIn(join(s.disk, NAME, '.offsite', 'shards')).length === 0, filesIn(join(s.disk, NAME, '.offsite')).join(', '));
    const client = adminClient(requireS3());
    try {
      assert.deepEqual(await keysIn(client, s.bucket, `offsite/${NAME}/.offsite/shards/`), []);
    } finally {
      client.destroy();
    }
    // A worker run again after the set is complete changes nothing.
    const again = await shard(s.config, '1/3');
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual(jsonOf<ShardJson>(again).destinations.map((d) => d.status), ['up-to-date', 'up-to-date', 'up-to-date']);
  });

  it('a killed shard leaves no manifest; another split is refused; --finish names it; its rerun alone completes the copy', async () => {
    const s = await setup('kill');
    for (const i of [0, 2]) {
      const run = await shard(s.config, `${i}/3`);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const result = jsonOf<ShardJson>(run);
      assert.deepEqual(result.destinations.map((d) => d.status), ['shard-done', 'shard-done', 'shard-done']);
    }
    assert.deepEqual(await manifestsAt(s), [], 'two shards of three make no manifest');

    // Shard 1, slowed down, killed once it has started writing.
    const child = spawn(process.execPath, [binPath, '--config', s.config, '--quiet', 'replicate', NAME, '--shard', '1/3', '--bwlimit', '64KiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const exited = new Promise((resolve) => child.on('close', resolve));
    const lock = join(s.disk, NAME, '.offsite', 'shards', '1-of-3', 'lock.json');
    for (let i = 0; i < 2400 && !existsSync(lock) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(child.exitCode, null, `shard 1 is still copying when it is killed: ${output}`);
    child.kill('SIGKILL');
    await exited;
    assert.deepEqual(await manifestsAt(s), [], 'no manifest after the kill');

    const other = await runCli(['--config', s.config, 'replicate', NAME, '--shard', '0/2']);
    assert.equal(other.code, 1, other.stdout + other.stderr);
    assert.match(other.stderr, /already being copied in 3 shards .*--shard i\/3/);
    assert.ok(!existsSync(join(s.disk, NAME, '.offsite', 'shards', '0-of-2')), 'the refused shard wrote nothing');

    const finish = await runCli(['--config', s.config, 'replicate', NAME, '--finish']);
    assert.equal(finish.code, 5, finish.stdout + finish.stderr);
    assert.match(finish.stdout, /disk +incomplete: shard 1 of 3 not finished/);
    assert.match(finish.stderr, /cloud: backup_2026_01_15_02_00_00 is not complete yet: shard 1 of 3 not finished/);
    const finishJson = jsonOf<FinishJson>(await runCli(['--config', s.config, '--json', 'replicate', NAME, '--finish']));
    assert.deepEqual(finishJson.destinations.map((d) => [d.destination, d.status, d.missing]), DESTINATIONS.map((d) => [d, 'incomplete', [1]]));
    assert.deepEqual(await manifestsAt(s), []);

    const rerun = await shard(s.config, '1/3');
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    assert.deepEqual(jsonOf<ShardJson>(rerun).destinations.map((d) => [d.status, d.shardSet?.manifestWritten]), DESTINATIONS.map(() => ['complete', true]));
    assert.deepEqual(await manifestsAt(s), [...DESTINATIONS]);
    await assertWhole(s);
    const done = await runCli(['--config', s.config, 'replicate', NAME, '--finish']);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout, /nas +complete: the manifest was already there/);
  });

  it('two workers with the same index at once do not corrupt each other', async () => {
    const s = await setup('twins');
    const [a, b, c] = await Promise.all([
      shard(s.config, '0/2', ['--bwlimit', '1MiB']),
      shard(s.config, '0/2', ['--bwlimit', '1MiB']),
      shard(s.config, '1/2'),
    ]);
    assert.equal(c?.code, 0, c?.stdout + c?.stderr);
    // Each destination's shard-0 lock (advisory, src/core/lock.ts) keeps the twins apart: the
    // second fails at that destination, saying so (exit 1, or 4 when it won the lock at another
    // destination), unless it came after the first was done (then it finds its files recorded).
    // Started at the very same moment, both may pass the lock, or both lose it: then one's commit
    // takes the other's temp file and that one fails with not-found; nothing is corrupted, and at
    // worst shard 0 is not recorded there: no manifest appears, and shard 0 run once more
    // completes the copy. Deep verification below is the proof that nothing was corrupted.
    for (const r of [a, b] as CliRun[]) {
      if (r.code === 0) continue;
      assert.ok(r.code === 1 || r.code === 4, r.stdout + r.stderr);
      for (const line of r.stderr.trim().split('\n')) assert.match(line, /being written by another offsite run|not found/);
    }
    const complete = await manifestsAt(s);
    if (complete.length < DESTINATIONS.length) {
      const finish = jsonOf<FinishJson>(await runCli(['--config', s.config, '--json', 'replicate', NAME, '--finish']));
      for (const d of finish.destinations) {
        if (complete.includes(d.destination)) assert.equal(d.status, 'complete');
        else assert.deepEqual([d.status, d.missing], ['incomplete', [0]], JSON.stringify(d));
      }
      const again = await shard(s.config, '0/2');
      assert.equal(again.code, 0, again.stdout + again.stderr);
    }
    assert.deepEqual(await manifestsAt(s), [...DESTINATIONS]);
    await assertWhole(s);
  });
});

function filesIn(dir: string): string[] {
  const found: string[] = [];
  const walk = (folder: string): void => {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (statSync(path).isDirectory()) walk(path); else found.push(path.slice(dir.length + 1));
    }
  };
  if (existsSync(dir)) walk(dir);
  return found;
}
