/**
 * `offsite replicate --shard` and `--finish` on local folders (issue 15): the options and their
 * errors, `--shard auto` from a Kubernetes Indexed Job's environment, and the checks the finisher
 * makes before it writes a manifest from the shards' records (a record whose file changed at the
 * destination since is not trusted; a complete copy that no longer matches is never unmade by a
 * shard). The multi-process runs over sftp and s3 are in ./shard-sftp-s3.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { shardOfPath } from '../../src/core/shard.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'backup_2026_02_01_00_00_00';
const noJobEnv = { JOB_COMPLETION_INDEX: undefined, JOB_COMPLETIONS: undefined };

interface ShardJson {
  destinations: { name: string; status: string; filesCopied: number; filesAdopted: number; shardSet?: { status: string; manifestWritten: boolean; missing: number[]; inconsistent: { index: number; reason: string }[] } }[];
}

describe('replicate --shard and --finish (local)', () => {
  let sourceRoot: string;
  let original: Map<string, string>;

  function setup(label: string): { config: string; disk: string } {
    const dir = tempDir(`shard-${label}`);
    const disk = join(dir, 'disk');
    const config = writeConfig(dir, [
      `source: { type: local, root: "${sourceRoot}" }`,
      'destinations:',
      `  disk: { type: local, root: "${disk}" }`,
      'options: { quietPeriod: 0s, chunkSize: 64KiB, retries: 0 }',
    ].join('\n'));
    return { config, disk };
  }
  const manifest = (disk: string): string => join(disk, NAME, '.offsite', 'manifest.json');

  before(async () => {
    sourceRoot = tempDir('shard-cli-source');
    await generateBackup({ root: sourceRoot, name: NAME, totalBytes: 1024 * 1024, seed: 1516 });
    original = treeDigest(join(sourceRoot, NAME));
  });

  it('bad --shard values and combinations are usage errors that say what to give', async () => {
    const { config, disk } = setup('usage');
    const cases: [string[], RegExp][] = [
      [['--shard', '3/3'], /shard index 3 is out of range for 3 shards: indexes run from 0 to 2/],
      [['--shard', '1'], /--shard expects i\/n .* or auto, got "1"/],
      [['--shard', '0/0'], /number of shards must be a whole number from 1/],
      [['--shard', 'auto'], /--shard auto needs JOB_COMPLETION_INDEX and JOB_COMPLETIONS .*JOB_COMPLETION_INDEX and JOB_COMPLETIONS are not set/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(['--config', config, 'replicate', NAME, ...args], { env: noJobEnv });
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, message);
    }
    const half = await runCli(['--config', config, 'replicate', NAME, '--shard', 'auto'], { env: { JOB_COMPLETION_INDEX: '2', JOB_COMPLETIONS: undefined } });
    assert.equal(half.code, 2);
    assert.match(half.stderr, /JOB_COMPLETIONS is not set: .*set JOB_COMPLETIONS in the pod template/);
    const latest = await runCli(['--config', config, 'replicate', '--latest', '--shard', '0/2']);
    assert.equal(latest.code, 2);
    assert.match(latest.stderr, /--shard needs the backup NAME/);
    const finishLatest = await runCli(['--config', config, 'replicate', '--latest', '--finish']);
    assert.equal(finishLatest.code, 2);
    assert.match(finishLatest.stderr, /--finish needs the backup NAME/);
    assert.ok(!existsSync(join(disk, NAME)), 'nothing was written');
  });

  it('--shard auto takes the index and count from the Job environment; one shard of one is the whole copy', async () => {
    const { config, disk } = setup('auto');
    const nothing = await runCli(['--config', config, 'replicate', NAME, '--finish']);
    assert.equal(nothing.code, 5, nothing.stdout + nothing.stderr);
    assert.match(nothing.stdout, /disk +incomplete: no shard has recorded anything for backup_2026_02_01_00_00_00 there/);
    const run = await runCli(['--config', config, '--json', 'replicate', NAME, '--shard', 'auto'], { env: { JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '1' } });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const [d] = jsonOf<ShardJson & { shard: unknown }>(run).destinations;
    assert.equal(d?.status, 'complete');
    assert.equal(d?.shardSet?.manifestWritten, true);
    assert.ok(existsSync(manifest(disk)));
    assert.deepEqual(treeDigest(join(disk, NAME), ['.offsite/']), original);
    const verify = await runCli(['--config', config, 'verify', NAME, '--at', 'disk', '--deep']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('a file changed at the destination after its shard recorded it keeps the manifest away until that shard runs again', async () => {
    const { config, disk } = setup('changed');
    const first = await runCli(['--config', config, '--json', 'replicate', NAME, '--shard', '0/2']);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(jsonOf<ShardJson>(first).destinations[0]?.status, 'shard-done');
    assert.match((await runCli(['--config', config, 'replicate', NAME, '--shard', '0/2'])).stdout, /done with shard 0\/2: 0 copied, 0 checked in place, \d+ already there; .*shard 1 of 2 not finished/);
    // A file of shard 0 is rewritten with the same bytes: its destination fingerprint changes.
    const hasher = await getHasher();
    const victim = [...original.keys()].find((p) => p.startsWith('binlogs/') && shardOfPath(hasher, p, 2) === 0) as string;
    assert.ok(victim);
    const path = join(disk, NAME, victim);
    const bytes = readFileSync(path);
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(`${path}.tmp`, bytes);
    renameSync(`${path}.tmp`, path);

    const second = await runCli(['--config', config, '--json', 'replicate', NAME, '--shard', '1/2']);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const set = jsonOf<ShardJson>(second).destinations[0]?.shardSet;
    assert.equal(set?.status, 'incomplete');
    assert.deepEqual(set?.missing, []);
    assert.equal(set?.inconsistent[0]?.index, 0);
    assert.match(set?.inconsistent[0]?.reason ?? '', new RegExp(`${victim.replace(/[.]/g, '\\.')} changed at the destination since the shard recorded it`));
    assert.ok(!existsSync(manifest(disk)), 'no manifest from a record that no longer holds');
    const finish = await runCli(['--config', config, 'replicate', NAME, '--finish']);
    assert.equal(finish.code, 5);
    assert.match(finish.stdout, /shard 0 must run again: .* changed at the destination/);

    // Shard 0 again: the changed file is hashed in place (same bytes), recorded anew, and the set completes.
    const again = await runCli(['--config', config, '--json', 'replicate', NAME, '--shard', '0/2']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const [d] = jsonOf<ShardJson>(again).destinations;
    assert.deepEqual([d?.status, d?.filesAdopted, d?.filesCopied, d?.shardSet?.manifestWritten], ['complete', 1, 0, true]);
    const verify = await runCli(['--config', config, 'verify', NAME, '--at', 'disk', '--deep']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);

    // Now damage the complete copy: a shard never removes its manifest, and says how to repair it.
    writeFileSync(path, Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from([(bytes[bytes.length - 1] as number) ^ 1])]));
    const refused = await runCli(['--config', config, 'replicate', NAME, '--shard', '0/2']);
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /has a complete manifest that does not match the backup now .*a shard never removes a complete copy's manifest: repair it with one unsharded run \(offsite replicate backup_2026_02_01_00_00_00 --to disk\)/);
    assert.ok(existsSync(manifest(disk)));
    const repair = await runCli(['--config', config, 'replicate', NAME]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.deepEqual(treeDigest(join(disk, NAME), ['.offsite/']), original);
  });
});
