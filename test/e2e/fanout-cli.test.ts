/**
 * A slow destination through the CLI (issue 16): next to a destination limited to 4 MiB/s
 * (`bwlimit` in its config), the unlimited one gets its manifest while the slow one is still
 * writing; the backup (24 MiB) is much larger than the slow one's share of the 4 MiB chunk budget
 * (`options.memoryBudget`), so it falls behind and is detached; the run reports bytes read from the source and
 * detachments; a SIGKILL while only the detached slow one is still writing, then a rerun,
 * completes both and both deep-verify.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'nightly_2025_06_02';
const MiB = 1024 * 1024;

interface ReplicateJson {
  bytes: number;
  bytesRead: number;
  detachments: number;
  destinationsReadAlone: number;
  peakBufferBytes: number;
  destinations: { name: string; status: string; detachments: number; bytesReadAlone: number; filesCopied: number; filesSkipped: number; filesAdopted: number; bytesResumed: number }[];
}

const sourceDir = tempDir('fanout-source');
before(async () => {
  await generateBackup({ root: sourceDir, name: NAME, totalBytes: 24 * MiB, seed: 16 });
});

function setup(label: string): { dir: string; config: string } {
  const dir = tempDir(label);
  const config = writeConfig(dir, [
    `source: { type: local, root: "${sourceDir}" }`,
    'destinations:',
    `  fast: { type: local, root: "${join(dir, 'fast')}" }`,
    `  slow: { type: local, root: "${join(dir, 'slow')}", bwlimit: 4MiB }`,
    'options: { quietPeriod: 1s, chunkSize: 256KiB, retries: 0, memoryBudget: 4MiB }',
  ].join('\n'));
  return { dir, config };
}

const manifestAt = (dir: string, name: string): string => join(dir, name, NAME, '.offsite', 'manifest.json');

describe('a slow destination through the CLI', () => {
  it('the fast copy completes first; bytes read and detachments are reported', async () => {
    const s = setup('fanout-json');
    const run = await runCli(['--config', s.config, '--json', 'replicate', NAME], { timeoutMs: 120_000 });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const result = jsonOf<ReplicateJson>(run);
    const [fast, slow] = result.destinations;
    assert.deepEqual([fast?.status, slow?.status], ['complete', 'complete']);
    assert.ok((slow?.detachments ?? 0) >= 1, JSON.stringify(slow));
    assert.ok(result.bytesRead <= (1 + result.destinationsReadAlone) * result.bytes, `read ${result.bytesRead} of ${result.bytes}`);
    assert.ok(result.peakBufferBytes <= 4 * MiB, `peak ${result.peakBufferBytes}`);
    assert.deepEqual(treeDigest(join(s.dir, 'slow', NAME), ['.offsite/']), treeDigest(join(sourceDir, NAME)));
  });

  it('a kill while only the slow one is still writing, then a rerun: both complete and deep-verify', async () => {
    const s = setup('fanout-kill');
    const child = spawn(process.execPath, [binPath, '--config', s.config, '--json', 'replicate', NAME], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    for (let i = 0; i < 1200 && !existsSync(manifestAt(s.dir, 'fast')) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(existsSync(manifestAt(s.dir, 'fast')), `the fast manifest appears while the run goes on: ${output}`);
    assert.ok(!existsSync(manifestAt(s.dir, 'slow')), 'the slow one is still writing');
    assert.equal(child.exitCode, null, 'the run is still going');
    child.kill('SIGKILL');
    await exited;
    assert.ok(!existsSync(manifestAt(s.dir, 'slow')));

    const rerun = await runCli(['--config', s.config, '--json', 'replicate', NAME], { timeoutMs: 120_000 });
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    const [fast, slow] = jsonOf<ReplicateJson>(rerun).destinations;
    assert.equal(fast?.status, 'up-to-date');
    assert.equal(slow?.status, 'complete');
    const verify = await runCli(['--config', s.config, 'verify', NAME, '--at', 'fast,slow', '--deep'], { timeoutMs: 120_000 });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
