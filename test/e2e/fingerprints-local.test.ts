/**
 * Fingerprints at both ends, through the built CLI on local folders (issue 11 item 2):
 * - finding 2: a source file rewritten in place (same size) after a run had copied it, that run
 *   then failing on another file: the next run must copy it again, not trust its progress record;
 * - finding 4: a destination file rewritten in place (same size, other bytes) is found by quick
 *   verify (exit 3, naming it), by the quick pass of audit, and replicate sends it again;
 * - a destination file only touched (same bytes, new mtime) is no damage, and replicate records
 *   its new fingerprint.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'nightly_2025_07_01';

interface Setup { dir: string; config: string; source: string }
interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; filesCopied: number; filesAdopted: number; errors: { message: string; path?: string }[] }[] }
interface VerifyJson { results: { destination: string; status: string; damage: { path: string; problem: string; message: string }[] }[] }
interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; damage: { path: string; problem: string }[] }[] }
interface ManifestJson { files: { path: string; size: number; sourceFingerprint?: string; destinationFingerprint?: string }[] }

async function setup(label: string): Promise<Setup> {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  await generateBackup({ root: source, name: NAME, totalBytes: 1024 * 1024, seed: 41 });
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    '  disk: { type: local, root: ./disk }',
    'options: { quietPeriod: 1s, chunkSize: 64KiB }',
  ].join('\n'));
  return { dir, config, source };
}

/** The largest binlog of the backup (audit deals it into slice 1 of any rotation). */
function largestBinlog(root: string): string {
  const files = filesUnder(join(root, NAME)).filter((p) => p.startsWith('binlogs/'));
  return files.sort((a, b) => statSync(join(root, NAME, b)).size - statSync(join(root, NAME, a)).size || (a < b ? -1 : 1))[0] as string;
}

/** Rewrites a file in place with other bytes of the same size. */
function rewriteSameSize(full: string): void {
  const bytes = readFileSync(full);
  for (let i = 0; i < bytes.length; i += 997) bytes[i] = (bytes[i] as number) ^ 0x5a;
  writeFileSync(full, bytes);
}

function fingerprintOf(full: string): string {
  const info = statSync(full, { bigint: true });
  return `local:${info.size}:${info.mtimeNs}:${info.ino}`;
}

function manifestOf(s: Setup): ManifestJson {
  return JSON.parse(readFileSync(join(s.dir, 'disk', NAME, '.offsite', 'manifest.json'), 'utf8')) as ManifestJson;
}

describe('fingerprints at both ends (CLI, local folders)', () => {
  it('finding 2: a source file rewritten in place after a failed run is copied again, not trusted on its progress record', async () => {
    const s = await setup('fp-source');
    // The run fails on meta/ (a file stands where its folder must go) after every binlog is committed.
    mkdirSync(join(s.dir, 'disk', NAME), { recursive: true });
    writeFileSync(join(s.dir, 'disk', NAME, 'meta'), 'in the way');
    const first = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--concurrency', '1']);
    assert.notEqual(first.code, 0, 'the first run fails');
    assert.equal(jsonOf<ReplicateJson>(first).destinations[0]?.status, 'failed');
    const victim = largestBinlog(s.source);
    const progress = readFileSync(join(s.dir, 'disk', NAME, '.offsite', 'progress.json'), 'utf8');
    assert.ok(progress.includes(JSON.stringify(victim)), 'the progress checkpoint records the binlog');

    rewriteSameSize(join(s.source, NAME, victim));
    await sleep(1200); // the quiet period
    rmSync(join(s.dir, 'disk', NAME, 'meta'));
    const second = await runCli(['--config', s.config, '--json', 'replicate', NAME]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.equal(jsonOf<ReplicateJson>(second).destinations[0]?.status, 'complete');
    assert.deepEqual(treeDigest(join(s.dir, 'disk', NAME), ['.offsite/']), treeDigest(join(s.source, NAME)), 'the copy is the source as it is now');
    const record = manifestOf(s).files.find((f) => f.path === victim);
    assert.equal(record?.sourceFingerprint, fingerprintOf(join(s.source, NAME, victim)));
    assert.equal(record?.destinationFingerprint, fingerprintOf(join(s.dir, 'disk', NAME, victim)));
  });

  describe('finding 4: a file replaced at the destination with the same size', () => {
    let s: Setup;
    let victim: string;
    before(async () => {
      s = await setup('fp-dest');
      const run = await runCli(['--config', s.config, '--quiet', 'replicate', NAME]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      victim = largestBinlog(join(s.dir, 'disk'));
      rewriteSameSize(join(s.dir, 'disk', NAME, victim));
    });

    it('quick verify exits 3 naming the file', async () => {
      const run = await runCli(['--config', s.config, '--json', 'verify', NAME]);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      const result = jsonOf<VerifyJson>(run).results[0];
      assert.equal(result?.status, 'damaged');
      assert.deepEqual(result?.damage.map((d) => d.path), [victim]);
      const human = await runCli(['--config', s.config, 'verify', NAME]);
      assert.equal(human.code, 3);
      assert.ok(human.stdout.includes(victim), human.stdout);
    });

    it('the quick pass of audit reports it damaged (the slice read back does not hold it)', async () => {
      const run = await runCli(['--config', s.config, '--json', 'audit', '--slice', '2/2']);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      const copy = jsonOf<AuditJson>(run).copies.find((c) => c.backup === NAME && c.destination === 'disk');
      assert.equal(copy?.state, 'damaged');
      assert.deepEqual(copy?.damage.map((d) => d.path), [victim]);
    });

    it('replicate sends it again; the copy is whole and quick verify passes', async () => {
      const run = await runCli(['--config', s.config, '--json', 'replicate', NAME]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const result = jsonOf<ReplicateJson>(run).destinations[0];
      assert.equal(result?.status, 'complete');
      assert.equal(result?.filesCopied, 1);
      assert.deepEqual(treeDigest(join(s.dir, 'disk', NAME), ['.offsite/']), treeDigest(join(s.source, NAME)));
      const verify = await runCli(['--config', s.config, 'verify', NAME]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });
  });

  it('a file only touched at the destination (same bytes): no damage, and replicate records its new fingerprint without sending it', async () => {
    const s = await setup('fp-touch');
    const run = await runCli(['--config', s.config, '--quiet', 'replicate', NAME]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const victim = largestBinlog(join(s.dir, 'disk'));
    const full = join(s.dir, 'disk', NAME, victim);
    const before = fingerprintOf(full);
    assert.equal(manifestOf(s).files.find((f) => f.path === victim)?.destinationFingerprint, before, 'the commit recorded the fingerprint');
    utimesSync(full, new Date('2030-01-01T00:00:00Z'), new Date('2030-01-01T00:00:00Z'));
    const after = fingerprintOf(full);
    assert.notEqual(after, before);

    const verify = await runCli(['--config', s.config, '--json', 'verify', NAME]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal(jsonOf<VerifyJson>(verify).results[0]?.status, 'ok');
    const audit = await runCli(['--config', s.config, '--json', 'audit', '--slice', '2/2']);
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);

    const again = await runCli(['--config', s.config, '--json', 'replicate', NAME]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const result = jsonOf<ReplicateJson>(again).destinations[0];
    assert.equal(result?.bytesWritten, 0, 'nothing was sent');
    assert.equal(result?.filesAdopted, 1, 'the touched file was read back and kept');
    assert.equal(manifestOf(s).files.find((f) => f.path === victim)?.destinationFingerprint, after, 'the new fingerprint is recorded');
    const third = await runCli(['--config', s.config, '--json', 'replicate', NAME]);
    assert.equal(jsonOf<ReplicateJson>(third).destinations[0]?.status, 'up-to-date', 'and trusted from then on');
  });
});
