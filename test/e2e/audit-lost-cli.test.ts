/**
 * A copy that an audit found intact and that is gone without a prune is LOST (issue 11, finding
 * 10), through the CLI on local folders: a copy moved away, and a destination's whole root
 * removed (its own `.offsite/audit.json` with it: the other destination's record says what it
 * held). Each is damage (exit 3, named, `offsite_audit_destination_ok` 0), the wiped root is not
 * recreated by the audit, `--repair` brings the copies back, and a pruned copy stays `absent`.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';

const OLD = 'backup_2025_09_01_01_00_00';
const NEW = 'backup_2025_09_02_01_00_00';

interface AuditJson {
  exitCode: number;
  destinations: { name: string; status: string; message?: string }[];
  copies: { backup: string; destination: string; state: string; message?: string; repaired: string[] }[];
}

describe('audit: a copy gone without a prune is lost (CLI, local folders)', () => {
  let dir: string;
  let config: string;
  const at = (json: AuditJson, destination: string, backup: string) => json.copies.find((c) => c.destination === destination && c.backup === backup);

  before(async () => {
    dir = tempDir('audit-lost');
    await generateBackup({ root: join(dir, 'backups'), name: OLD, totalBytes: 256 * 1024, seed: 81 });
    await generateBackup({ root: join(dir, 'backups'), name: NEW, totalBytes: 256 * 1024, seed: 82 });
    config = join(dir, 'offsite.yaml');
    writeFileSync(config, stringify({
      source: { type: 'local', root: join(dir, 'backups') },
      destinations: { disk: { type: 'local', root: join(dir, 'disk') }, nas: { type: 'local', root: join(dir, 'nas') } },
      options: { quietPeriod: '0s' },
    }));
    for (const name of [OLD, NEW]) {
      const run = await runCli(['--config', config, '--quiet', 'replicate', name]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
    }
    const first = await runCli(['--config', config, '--json', 'audit']);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });

  it('a copy moved away is LOST: exit 3, named, metric 0; --repair brings it back', async () => {
    renameSync(join(dir, 'nas', OLD), join(dir, 'moved-away'));
    const metrics = join(dir, 'moved.prom');
    const run = await runCli(['--config', config, '--json', 'audit', '--metrics', metrics]);
    const result = jsonOf<AuditJson>(run);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.equal(at(result, 'nas', OLD)?.state, 'lost');
    assert.match(at(result, 'nas', OLD)?.message ?? '', /no prune removed it/);
    assert.equal(at(result, 'nas', NEW)?.state, 'ok');
    assert.equal(result.destinations.find((d) => d.name === 'nas')?.status, 'damaged');
    const prom = readFileSync(metrics, 'utf8');
    assert.match(prom, /offsite_audit_destination_ok\{destination="nas"\} 0/);
    assert.match(prom, /offsite_audit_copies\{destination="nas",state="lost"\} 1/);
    // Reported again by the next audit: the record of what nas held is kept.
    const again = await runCli(['--config', config, 'audit']);
    assert.equal(again.code, 3, again.stdout);
    assert.match(again.stdout, new RegExp(`${OLD}\\s+LOST`));

    const repair = await runCli(['--config', config, '--json', 'audit', '--repair']);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.equal(at(jsonOf<AuditJson>(repair), 'nas', OLD)?.state, 'repaired');
    assert.deepEqual(treeDigest(join(dir, 'nas', OLD), ['.offsite/']), treeDigest(join(dir, 'backups', OLD)));
    const verify = await runCli(['--config', config, 'verify', OLD, '--at', 'nas', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });

  it('a wiped root is LOST at every copy it held, is not recreated by the audit, and --repair restores it', async () => {
    rmSync(join(dir, 'disk'), { recursive: true });
    const run = await runCli(['--config', config, '--json', 'audit']);
    const result = jsonOf<AuditJson>(run);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.deepEqual([at(result, 'disk', OLD)?.state, at(result, 'disk', NEW)?.state], ['lost', 'lost']);
    assert.ok(!existsSync(join(dir, 'disk')), 'the audit did not recreate the wiped root');
    const repair = await runCli(['--config', config, '--json', 'audit', '--repair']);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    for (const name of [OLD, NEW]) {
      assert.deepEqual(treeDigest(join(dir, 'disk', name), ['.offsite/']), treeDigest(join(dir, 'backups', name)), name);
    }
    const after = await runCli(['--config', config, '--json', 'audit']);
    assert.equal(after.code, 0, after.stdout);
  });

  it('a pruned copy stays absent, not lost', async () => {
    const prune = await runCli(['--config', config, 'prune', '--keep-last', '1', '--at', 'nas']);
    assert.equal(prune.code, 0, prune.stdout + prune.stderr);
    assert.ok(!existsSync(join(dir, 'nas', OLD)), 'prune removed the older copy');
    const run = await runCli(['--config', config, '--json', 'audit']);
    const result = jsonOf<AuditJson>(run);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(at(result, 'nas', OLD)?.state, 'absent');
    assert.equal(at(result, 'disk', OLD)?.state, 'ok');
  });
});
