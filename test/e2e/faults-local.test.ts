/**
 * Partial failure on local destinations, through the CLI: one broken destination does not stop
 * the others (exit 4, per-destination JSON), the next run heals only it; a full disk; two runs
 * at once (the destination lock); a source file that changes while it is read.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver, ReadOptions } from '../../src/drivers/types.js';
import { replicate } from '../../src/core/replicate.js';
import { binPath, filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'nightly_2025_06_02';

interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; filesCopied: number; errors: { message: string; kind: string; code: string }[] }[] }

async function setup(label: string, destinations: Record<string, string>, totalBytes = 2 * 1024 * 1024): Promise<{ dir: string; config: string; source: string }> {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  await generateBackup({ root: source, name: NAME, totalBytes, seed: 21 });
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    ...Object.entries(destinations).map(([name, root]) => `  ${name}: { type: local, root: "${root}" }`),
    'options: { quietPeriod: 1s, chunkSize: 256KiB, retries: 0 }',
  ].join('\n'));
  return { dir, config, source };
}

describe('one failing destination does not stop the others (CLI)', () => {
  it('exit 4 with per-destination results; the next run copies only what the failed one lacks', async () => {
    const dir = tempDir('isolation');
    writeFileSync(join(dir, 'not-a-folder'), 'a file where the destination root should be');
    const s = await setup('isolation', { good: join(dir, 'good'), bad: join(dir, 'not-a-folder', 'copies') });
    const first = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'good,bad']);
    assert.equal(first.code, 4, first.stdout + first.stderr);
    const [good, bad] = jsonOf<ReplicateJson>(first).destinations;
    assert.equal(good?.status, 'complete');
    assert.equal(bad?.status, 'failed');
    assert.ok((bad?.errors.length ?? 0) > 0);
    assert.doesNotMatch(bad?.errors[0]?.message ?? '', /\n/);
    assert.ok(existsSync(join(dir, 'good', NAME, '.offsite', 'manifest.json')));

    rmSync(join(dir, 'not-a-folder'));
    mkdirSync(join(dir, 'not-a-folder'));
    const second = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'good,bad']);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const [good2, bad2] = jsonOf<ReplicateJson>(second).destinations;
    assert.deepEqual([good2?.status, good2?.bytesWritten], ['up-to-date', 0], 'nothing touched at the healthy destination');
    assert.equal(bad2?.status, 'complete');
    assert.ok((bad2?.bytesWritten ?? 0) > 0);
    const verify = await runCli(['--config', s.config, 'verify', NAME, '--at', 'good,bad', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });
});

describe('a full disk at one destination (CLI)', () => {
  const mountPoint = tempDir('tmpfs');
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mountPoint]).status === 0;
  after(() => { if (mounted) spawnSync('umount', [mountPoint]); });
  it('is a clear "disk full" error for that destination only', { skip: mounted ? false : 'cannot mount a small tmpfs here (needs root); SKIPPED LOUDLY: the full-disk case is untested on this machine' }, async () => {
    const s = await setup('diskfull', { roomy: 'roomy', tiny: mountPoint });
    writeFileSync(s.config, readFileSync(s.config, 'utf8').replace('root: "roomy"', `root: "${join(s.dir, 'roomy')}"`));
    const run = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'roomy,tiny']);
    assert.equal(run.code, 4, run.stdout + run.stderr);
    const [roomy, tiny] = jsonOf<ReplicateJson>(run).destinations;
    assert.equal(roomy?.status, 'complete');
    assert.equal(tiny?.status, 'failed');
    assert.match(tiny?.errors[0]?.message ?? '', /disk full/i);
    assert.ok(!existsSync(join(mountPoint, NAME, '.offsite', 'manifest.json')));
  });
});

describe('two runs at once on the same destination (CLI)', () => {
  it('the second is refused by the lock, the first completes intact; a stale lock is taken over', async () => {
    const s = await setup('lock', { disk: 'disk' }, 4 * 1024 * 1024);
    writeFileSync(s.config, readFileSync(s.config, 'utf8').replace('root: "disk"', `root: "${join(s.dir, 'disk')}"`));
    // The first run is slowed down (8 s) so that it is still writing when the second CLI has started, even on a loaded machine.
    const first = spawn(process.execPath, [binPath, '--config', s.config, '--json', 'replicate', NAME, '--bwlimit', '512KiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstOut = '';
    first.stdout.on('data', (d: Buffer) => { firstOut += d.toString(); });
    const lock = join(s.dir, 'disk', NAME, '.offsite', 'lock.json');
    for (let i = 0; i < 200 && !existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(lock), 'the first run holds the lock');
    const second = await runCli(['--config', s.config, '--json', 'replicate', NAME]);
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(jsonOf<ReplicateJson>(second).destinations[0]?.errors[0]?.message ?? '', /being written by another offsite run \(.*pid \d+/);
    const code = await new Promise<number | null>((r) => first.on('close', r));
    assert.equal(code, 0, firstOut);
    assert.ok(!existsSync(lock), 'released');
    assert.deepEqual(treeDigest(join(s.dir, 'disk', NAME), ['.offsite/']), treeDigest(join(s.source, NAME)));

    // A lock left by a crashed run (not refreshed for longer than the stale time) is taken over.
    rmSync(join(s.dir, 'disk', NAME, '.offsite', 'manifest.json'));
    mkdirSync(join(s.dir, 'disk', NAME, '.offsite'), { recursive: true });
    writeFileSync(lock, JSON.stringify({ token: 'dead', owner: 'x', host: 'gone', pid: 1, time: new Date(Date.now() - 3_600_000).toISOString() }));
    const third = await runCli(['--config', s.config, 'replicate', NAME]);
    assert.equal(third.code, 0, third.stdout + third.stderr);
  });
});

describe('a source file that changes while it is copied', () => {
  it('fails that file with a clear error and no manifest lists it', async () => {
    const s = await setup('changing', {}, 1024 * 1024);
    const victim = filesUnder(join(s.source, NAME)).find((p) => p.includes('insert_log')) as string;
    const inner = await createLocalDriver('source', { type: 'local', root: s.source });
    // A source whose file grows right after it was opened for reading (as a running backup would).
    const source: Driver = {
      name: inner.name, description: inner.description, location: inner.location, capabilities: inner.capabilities,
      list: (prefix, options) => inner.list(prefix, options),
      stat: (key, options) => inner.stat(key, options),
      openWrite: (key, options) => inner.openWrite(key, options),
      delete: (key, options) => inner.delete(key, options),
      sync: (options) => inner.sync(options),
      close: () => inner.close(),
      openRead: async (key: string, options?: ReadOptions) => {
        const stream = await inner.openRead(key, options);
        if (key.endsWith(victim)) appendFileSync(join(s.source, NAME, victim), 'more bytes');
        return stream;
      },
    };
    const a = await createLocalDriver('a', { type: 'local', root: join(s.dir, 'a') });
    const b = await createLocalDriver('b', { type: 'local', root: join(s.dir, 'b') });
    const result = await replicate({ source, backup: NAME, destinations: [a, b], quietPeriodMs: 0, chunkBytes: 64 * 1024 });
    for (const d of result.destinations) {
      assert.equal(d.status, 'failed');
      assert.ok(d.errors.some((e) => e.code === 'E_SOURCE_CHANGED' && e.message.includes(victim)), JSON.stringify(d.errors));
    }
    for (const root of ['a', 'b']) {
      assert.ok(!existsSync(join(s.dir, root, NAME, '.offsite', 'manifest.json')), `no manifest at ${root}`);
      assert.ok(!existsSync(join(s.dir, root, NAME, victim)), `the changed file is not committed at ${root}`);
    }
  });
});
