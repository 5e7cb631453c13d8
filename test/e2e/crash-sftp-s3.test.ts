/**
 * Crash safety in CI: 20 SIGKILLs at seeded random moments during a replicate to local + SFTP +
 * S3 (see test/crash/trial.ts). `node dist/scripts/crash-test.js` runs many more with random seeds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCrashTrial } from '../crash/trial.js';
import { requireServer as requireSftp } from '../sftp/server.js';
import { requireServer as requireS3 } from '../s3/server.js';

describe('crash safety: SIGKILL at random moments (local + sftp + s3)', () => {
  it('20 kills with seed 20261125: no false manifest after any kill, every copy whole at the end, bounded re-sends', { timeout: 600_000 }, async () => {
    const report = await runCrashTrial({ seed: 20261125, kills: 20, sftp: requireSftp(), s3: requireS3(), log: (line) => console.log(`# ${line}`) });
    console.log(`# crash trial: ${JSON.stringify(report)}`);
    assert.deepEqual(report.problems, []);
    assert.ok(report.killsMidRun >= 10, `at least half the kills landed mid-run (${report.killsMidRun})`);
  });
});
