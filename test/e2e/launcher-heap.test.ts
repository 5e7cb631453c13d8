/**
 * The launcher (bin/offsite.js) keeps V8's young generation at its start size unless the user set
 * its size themselves (issues 12, 13: left to V8 it grows to 32 MB of RSS on Node 20 and 22 and
 * 128 MB on Node 24, whatever the work). A preload (test/helpers/young-gen.ts) makes every process
 * allocate the same way at exit and reports the size it ends with; the same preload in a bare
 * process shows that this allocation does grow a young generation left alone, so a probe that
 * grows nothing cannot pass.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { binPath, projectRoot, tempDir } from '../helpers/cli.js';

const PRELOAD = new URL('../helpers/young-gen.js', import.meta.url).href;
const dir = tempDir('launcher-heap');
let runs = 0;

/** The young generation's size (MiB) at the end of `node [nodeArgs] --import PRELOAD [args]`. */
function youngGenerationMiB(nodeArgs: readonly string[], args: readonly string[], env: NodeJS.ProcessEnv = {}): number {
  const log = join(dir, `young-${++runs}.txt`);
  const run = spawnSync(process.execPath, [...nodeArgs, '--import', PRELOAD, ...args], {
    cwd: projectRoot, env: { ...process.env, ...env, OFFSITE_TEST_YOUNG_GEN_LOG: log }, encoding: 'utf8', timeout: 60_000,
  });
  assert.equal(run.status, 0, `exit ${String(run.status)}: ${run.stderr}`);
  return Number(readFileSync(log, 'utf8'));
}

describe('launcher: V8 young generation', () => {
  it('a bare process grows it under the probe\'s allocation (the probe works)', () => {
    const mib = youngGenerationMiB([], ['-e', '']);
    assert.ok(mib >= 8, `young generation ${mib} MiB`);
  });

  it('offsite keeps it at its start size', () => {
    const mib = youngGenerationMiB([], [binPath, '--version']);
    assert.ok(mib <= 4, `young generation ${mib} MiB`);
  });

  it('a size the user gives wins, on the command line or in NODE_OPTIONS', () => {
    const flag = youngGenerationMiB(['--max-semi-space-size=8'], [binPath, '--version']);
    assert.ok(flag > 4 && flag <= 16, `with node --max-semi-space-size=8: ${flag} MiB`);
    const env = youngGenerationMiB([], [binPath, '--version'], { NODE_OPTIONS: '--max-semi-space-size=8' });
    assert.ok(env > 4 && env <= 16, `with NODE_OPTIONS=--max-semi-space-size=8: ${env} MiB`);
  });
});
