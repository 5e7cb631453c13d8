/**
 * Issue 11, finding 6: under a small `--bwlimit`, SIGTERM must be obeyed promptly (the lock file's
 * own writes used to wait behind the limit, and its refresh and release ignored the abort), and
 * the stop is reported as one interruption, not as a FAILED line per file ("bandwidth limit wait
 * aborted"). The next run resumes and completes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** The exit code of an interrupted run (128 + SIGINT, as shells report Ctrl-C). */
const INTERRUPTED = 130;

describe('SIGTERM under a small bandwidth limit (CLI)', () => {
  it('stops within seconds with the interrupted exit code and one clear message; the next run completes', async () => {
    const dir = tempDir('signals');
    dirs.push(dir);
    await generateBackup({ root: join(dir, 'source'), name: 'b1', totalBytes: 3 * 1024 * 1024, seed: 5 });
    const config = writeConfig(dir, `source:
  type: local
  root: ${join(dir, 'source')}
destinations:
  d1:
    type: local
    root: ${join(dir, 'd1')}
  d2:
    type: local
    root: ${join(dir, 'd2')}
options:
  quietPeriod: 0s
  chunkSize: 256KiB
`);
    // 3 MiB at 32 KiB/s: about a minute and a half, so the run is surely mid-way when stopped.
    const child = spawn(process.execPath, [binPath, '--config', config, 'replicate', 'b1', '--bwlimit', '32KiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    const lock = join(dir, 'd1', 'b1', '.offsite', 'lock.json');
    for (let i = 0; i < 400 && !existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(lock), `the run started writing (lock taken)\n${stderr}`);
    await new Promise((r) => setTimeout(r, 1500)); // let parts queue up behind the limit

    const sent = Date.now();
    child.kill('SIGTERM');
    const code = await closed;
    const tookMs = Date.now() - sent;
    assert.ok(tookMs < 5000, `exited ${tookMs} ms after SIGTERM\n${stdout}\n${stderr}`);
    assert.equal(code, INTERRUPTED, `${stdout}\n${stderr}`);
    assert.match(stderr, /interrupted/);
    assert.match(stdout + stderr, /run the same command again to resume/);
    assert.doesNotMatch(stdout + stderr, /FAILED|aborted/, 'no per-file failure for the interruption');
    assert.ok(!existsSync(lock), 'the lock was released');

    const next = await runCli(['--config', config, '--quiet', 'replicate', 'b1']);
    assert.equal(next.code, 0, next.stdout + next.stderr);
    for (const d of ['d1', 'd2']) {
      assert.ok(existsSync(join(dir, d, 'b1', '.offsite', 'manifest.json')), `${d} complete`);
      assert.deepEqual(treeDigest(join(dir, d, 'b1'), ['.offsite/']), treeDigest(join(dir, 'source', 'b1')));
    }
  });
});
