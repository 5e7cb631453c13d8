/**
 * The systemd units in scripts/examples/ are valid: `systemd-analyze verify` accepts them (with
 * ExecStart pointed at this checkout's bin/offsite.js, since /usr/local/bin/offsite does not
 * exist here), and they run the commands the README documents.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { binPath, projectRoot, tempDir } from '../helpers/cli.js';

const run = promisify(execFile);
const UNITS = ['offsite-watch.service', 'offsite-audit.service', 'offsite-audit.timer'];
const ANALYZE = '/usr/bin/systemd-analyze';

describe('scripts/examples systemd units', () => {
  it('systemd-analyze verify accepts them', async (t) => {
    if (!existsSync(ANALYZE)) {
      if (process.env['CI']) assert.fail(`${ANALYZE} is missing (Debian package systemd)`);
      t.skip(`SKIPPING: ${ANALYZE} is missing`);
      return;
    }
    const dir = tempDir('units');
    for (const unit of UNITS) {
      const target = join(dir, unit);
      copyFileSync(join(projectRoot, 'scripts', 'examples', unit), target);
      writeFileSync(target, readFileSync(target, 'utf8').replaceAll('/usr/local/bin/offsite', binPath));
    }
    const { stdout, stderr } = await run(ANALYZE, ['verify', ...UNITS.map((u) => join(dir, u))]);
    assert.equal(`${stdout}${stderr}`.trim(), '', 'no warnings');
  });

  it('run the documented commands', () => {
    const unit = (name: string) => readFileSync(join(projectRoot, 'scripts', 'examples', name), 'utf8');
    assert.match(unit('offsite-watch.service'), /^ExecStart=\/usr\/local\/bin\/offsite watch /m);
    assert.match(unit('offsite-watch.service'), /^RestartPreventExitStatus=2$/m);
    assert.match(unit('offsite-audit.service'), /^ExecStart=\/usr\/local\/bin\/offsite audit .*--metrics /m);
    assert.match(unit('offsite-audit.timer'), /^OnCalendar=/m);
  });
});
