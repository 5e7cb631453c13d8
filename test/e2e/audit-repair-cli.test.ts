/**
 * `offsite audit --repair` between two destinations that repair each other, through the built CLI
 * on local folders, with the backup gone from the source: every copy is checked before any is
 * repaired, each repair's reference manifest is read before any repair writes, and a file is taken
 * from whichever other copy reads back to that reference, whether that copy has a manifest at the
 * time or is being repaired itself. So two copies that each lack what the other holds are both
 * repaired, and a file bad everywhere is never taken.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'backup_2025_10_01_01_00_00';

interface CopyJson { backup: string; destination: string; state: string; damage: { path: string; problem: string }[]; repaired: string[]; repairedFrom?: string; message?: string }
interface AuditJson { exitCode: number; copies: CopyJson[] }

interface Setup {
  readonly dir: string;
  readonly config: string;
  /** The backup's files, as the source had them (moved away from the source). */
  readonly original: string;
  /** Two binlogs of the backup, sorted: what the tests damage. */
  readonly x: string;
  readonly y: string;
}

/** A backup copied to `nas` and `cloud` (local folders), then moved away from the source. */
async function setup(label: string): Promise<Setup> {
  const dir = tempDir(label);
  await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 512 * 1024, seed: 71 });
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    '  nas: { type: local, root: ./nas }',
    '  cloud: { type: local, root: ./cloud }',
    'options: { quietPeriod: 0s, chunkSize: 64KiB }',
  ].join('\n'));
  const run = await runCli(['--config', config, '--quiet', 'replicate', NAME]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  const original = join(dir, 'away');
  renameSync(join(dir, 'backups', NAME), original);
  const [x, y] = filesUnder(original).filter((p) => p.startsWith('binlogs/'));
  assert.ok(x !== undefined && y !== undefined, 'two binlogs to damage');
  return { dir, config, original, x, y };
}

/** Changes the first byte of a file: same size, other bytes. */
function changeByte(path: string): void {
  const bytes = readFileSync(path);
  bytes[0] = (bytes[0] as number) ^ 0xff;
  writeFileSync(path, bytes);
}

async function auditRepair(s: Setup): Promise<{ code: number | null; json: AuditJson; stderr: string }> {
  const run = await runCli(['--config', s.config, '--json', 'audit', '--sample', '100%', '--repair']);
  return { code: run.code, json: jsonOf<AuditJson>(run), stderr: run.stderr };
}

function copyAt(json: AuditJson, destination: string): CopyJson {
  const found = json.copies.find((c) => c.destination === destination && c.backup === NAME);
  assert.ok(found, `a result at ${destination}`);
  return found;
}

/** Both copies hold exactly the backup's bytes and deep-verify. */
async function assertBothWhole(s: Setup): Promise<void> {
  const expected = treeDigest(s.original);
  for (const d of ['nas', 'cloud']) assert.deepEqual(treeDigest(join(s.dir, d, NAME), ['.offsite/']), expected, `${d} holds the backup's bytes`);
  const verify = await runCli(['--config', s.config, 'verify', NAME, '--deep']);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
}

describe('audit --repair: two copies repair each other (CLI, local folders, no source)', () => {
  it('each copy lacks a file the other holds: both are repaired, each from the other', async () => {
    const s = await setup('repair-files');
    changeByte(join(s.dir, 'cloud', NAME, s.x));
    rmSync(join(s.dir, 'nas', NAME, s.y));
    const { code, json, stderr } = await auditRepair(s);
    assert.equal(code, 0, JSON.stringify(json.copies) + stderr);
    const nas = copyAt(json, 'nas');
    const cloud = copyAt(json, 'cloud');
    assert.deepEqual([nas.state, nas.damage.map((d) => d.path), nas.repaired, nas.repairedFrom], ['repaired', [s.y], [s.y], 'cloud']);
    assert.deepEqual([cloud.state, cloud.damage.map((d) => d.path), cloud.repaired, cloud.repairedFrom], ['repaired', [s.x], [s.x], 'nas']);
    await assertBothWhole(s);
  });

  it('a copy without its manifest gives the file the other lacks, and keeps its own files against the other\'s manifest', async () => {
    const s = await setup('repair-manifest');
    changeByte(join(s.dir, 'cloud', NAME, s.x));
    rmSync(join(s.dir, 'nas', NAME, '.offsite', 'manifest.json'));
    const { code, json, stderr } = await auditRepair(s);
    assert.equal(code, 0, JSON.stringify(json.copies) + stderr);
    const nas = copyAt(json, 'nas');
    const cloud = copyAt(json, 'cloud');
    // nas: every file found intact in place, checked against cloud's manifest (read before cloud's repair removed it).
    assert.deepEqual([nas.state, nas.repaired, nas.repairedFrom], ['repaired', [], undefined], nas.message);
    // cloud: its changed file taken from nas, which had no manifest: the bytes were checked against cloud's own.
    assert.deepEqual([cloud.state, cloud.repaired, cloud.repairedFrom], ['repaired', [s.x], 'nas'], cloud.message);
    await assertBothWhole(s);
  });

  it('one copy lacks a file and its manifest, the other has a changed file: both are repaired', async () => {
    const s = await setup('repair-both');
    rmSync(join(s.dir, 'cloud', NAME, s.x));
    rmSync(join(s.dir, 'cloud', NAME, '.offsite', 'manifest.json'));
    changeByte(join(s.dir, 'nas', NAME, s.y));
    const { code, json, stderr } = await auditRepair(s);
    assert.equal(code, 0, JSON.stringify(json.copies) + stderr);
    const nas = copyAt(json, 'nas');
    const cloud = copyAt(json, 'cloud');
    assert.deepEqual([cloud.state, cloud.repaired, cloud.repairedFrom], ['repaired', [s.x], 'nas'], cloud.message);
    assert.deepEqual([nas.state, nas.repaired, nas.repairedFrom], ['repaired', [s.y], 'cloud'], nas.message);
    await assertBothWhole(s);
  });

  it('a file bad at every copy is never taken: both repairs fail, saying which file, and its bad bytes stay where they were', async () => {
    const s = await setup('repair-nowhere');
    rmSync(join(s.dir, 'cloud', NAME, s.x));
    changeByte(join(s.dir, 'nas', NAME, s.x));
    rmSync(join(s.dir, 'nas', NAME, '.offsite', 'manifest.json'));
    const { code, json } = await auditRepair(s);
    assert.equal(code, 3);
    const nas = copyAt(json, 'nas');
    const cloud = copyAt(json, 'cloud');
    assert.equal(nas.state, 'incomplete');
    assert.equal(cloud.state, 'damaged');
    for (const c of [nas, cloud]) {
      assert.match(c.message ?? '', /^repair failed: /, c.destination);
      assert.ok(c.message?.includes(s.x), `${c.destination} names the file: ${c.message}`);
    }
    assert.equal(existsSync(join(s.dir, 'cloud', NAME, s.x)), false, 'the changed bytes at nas were not copied to cloud');
    assert.equal(existsSync(join(s.dir, 'cloud', NAME, '.offsite', 'manifest.json')), false, 'no manifest for a copy that is not whole');
    // The other files were repaired or kept: with the file back at the source, one more audit finishes both.
    renameSync(s.original, join(s.dir, 'backups', NAME));
    const again = await auditRepair(s);
    assert.equal(again.code, 0, JSON.stringify(again.json.copies));
    assert.deepEqual(copyAt(again.json, 'cloud').repairedFrom, 'source');
  });
});
