/**
 * The memory guard (issue 13 item 5): replicate and deep-verify a backup of ~20,000 tiny files
 * with the built CLI under a small V8 heap (`node --max-old-space-size=N bin/offsite.js ...`).
 * A functional test, not a timed one: it fails when memory grows with the number of files far
 * beyond the manifest itself (a leak, a listing or plan held several times over), because the
 * run then dies with "JavaScript heap out of memory" instead of exiting 0.
 * Before src/backup/json.ts flattened the strings of parsed meta, replicate of these files died
 * at 96 and 128 MB (it needed 160).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, projectRoot, tempDir, treeDigest, writeConfig, type CliRun } from '../helpers/cli.js';
import { readSideGuards } from './memory-guard-read.js';

const NAME = 'backup_2026_01_01_00_00_00_000';
/** The V8 old-space limit the CLI runs under (issue 13 item 5). */
const GUARD_HEAP_MB = 96;
const FILES = 20_000;

/** Runs bin/offsite.js under `--max-old-space-size=heapMb`. */
function runCliWithHeap(heapMb: number, args: readonly string[], timeoutMs = 600_000): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${heapMb}`, binPath, ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`offsite ${args.join(' ')} timed out\n${stderr}`)); }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolvePromise({ code, stdout, stderr: stderr.slice(-4000) }); });
  });
}

describe(`memory guard: ~${FILES} tiny files under --max-old-space-size=${GUARD_HEAP_MB}`, () => {
  let dir: string;
  let config: string;
  let made: { files: number };

  before(async () => {
    dir = tempDir('memory-guard');
    made = await generateBackup({ root: join(dir, 'backups'), name: NAME, files: FILES, totalBytes: FILES * 1024, largestFileBytes: 4096, seed: 13 });
    config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      '  disk: { type: local, root: ./disk }',
      'options: { quietPeriod: 0s }',
    ].join('\n'));
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('the generated backup has the intended number of files', () => {
    assert.ok(made.files >= FILES * 0.9, `generated ${made.files} files`);
  });

  it('replicate completes and the copy is identical to the source', async () => {
    const run = await runCliWithHeap(GUARD_HEAP_MB, ['--config', config, '--quiet', '--json', 'replicate', NAME, '--to', 'disk']);
    assert.equal(run.code, 0, `replicate under a ${GUARD_HEAP_MB} MB heap exited ${String(run.code)}:\n${run.stderr}`);
    const result = JSON.parse(run.stdout) as { destinations: { status: string }[] };
    assert.deepEqual(result.destinations.map((d) => d.status), ['complete']);
    assert.ok(existsSync(join(dir, 'disk', NAME, '.offsite', 'manifest.json')), 'the copy has a manifest');
    const source = treeDigest(join(dir, 'backups', NAME));
    assert.ok(source.size >= FILES * 0.9);
    assert.deepEqual(treeDigest(join(dir, 'disk', NAME), ['.offsite/']), source, 'every file arrived byte for byte');
  });

  it('deep verify reads every file back and finds the copy whole', async () => {
    const run = await runCliWithHeap(GUARD_HEAP_MB, ['--config', config, '--quiet', '--json', 'verify', NAME, '--at', 'disk', '--deep']);
    assert.equal(run.code, 0, `deep verify under a ${GUARD_HEAP_MB} MB heap exited ${String(run.code)}:\n${run.stderr}`);
    const result = JSON.parse(run.stdout) as { ok: boolean; results: { status: string }[] };
    assert.equal(result.ok, true);
    assert.deepEqual(result.results.map((r) => r.status), ['ok']);
  });

  // list, verify, audit and prune of the same copy under a smaller heap (./memory-guard-read.ts).
  readSideGuards(() => ({ config, name: NAME }), runCliWithHeap);
});
