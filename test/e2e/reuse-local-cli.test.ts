/**
 * Reuse (issue 12) end to end through the built CLI, on local folders: night 2 shares every file
 * but two with night 1. At a destination with `reuse: copy` and one with `reuse: link` the shared
 * files are created from night 1's copy (a copy of its own, or a hard link) and only the two
 * changed files are written; `reuse: off` and `--no-reuse` send everything; every tree is byte
 * for byte the source's. A reused file damaged at the destination is found by the audit (naming
 * where it was copied from) and repaired; with `link` the damage shows in both copies sharing the
 * file, and the repair breaks the link. Prune of night 1 leaves night 2 intact. A SIGKILL while
 * files are being reused leaves no copy that a deep verify takes for complete, and the rerun
 * completes it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { flipByte, deriveNight, makeNights, type Nights } from '../helpers/nights.js';
import { binPath, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NIGHT1 = 'backup_2025_11_01_01_00_00';
const NIGHT2 = 'backup_2025_11_02_01_00_00';
const NIGHT3 = 'backup_2025_11_03_01_00_00';
const NIGHT4 = 'backup_2025_11_04_01_00_00';
const UTC = { TZ: 'UTC' };

interface Action { path: string; action: string; reuseFrom?: string }
interface DestinationJson {
  name: string; status: string; filesCopied: number; filesReused: number; bytesReused: number; bytesWritten: number;
  reused?: { path: string; from: string }[]; plan?: { actions: Action[]; reuseFiles: number };
}
interface ReplicateJson { destinations: DestinationJson[] }
interface ManifestJson { files: { path: string; hash: string; reusedFrom?: string }[] }
interface AuditJson { exitCode: number; copies: { backup: string; destination: string; state: string; damage: { path: string; message: string; reusedFrom?: string }[]; repaired: string[] }[] }
interface VerifyJson { results: { destination: string; backup?: string; status: string }[] }

describe('reuse of earlier copies at local destinations (CLI)', () => {
  let dir: string;
  let config: string;
  let nights: Nights;
  const at = (destination: string, ...rest: string[]): string => join(dir, destination, ...rest);
  const source = (...rest: string[]): string => join(dir, 'backups', ...rest);
  const manifest = (destination: string, backup: string): ManifestJson => JSON.parse(readFileSync(at(destination, backup, '.offsite', 'manifest.json'), 'utf8')) as ManifestJson;
  const sameTree = (destination: string, backup: string): void => {
    assert.deepEqual(treeDigest(at(destination, backup), ['.offsite']), treeDigest(source(backup)), `${destination}/${backup} is byte for byte the source`);
  };
  const run = (...args: string[]) => runCli(['--config', config, ...args], { env: UTC });

  before(async () => {
    dir = tempDir('reuse-local');
    nights = await makeNights(source(), NIGHT1, NIGHT2, { seed: 1201, totalBytes: 6 * 1024 * 1024, largestFileBytes: 3 * 1024 * 1024 });
    config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      '  disk: { type: local, root: ./disk }',
      '  linked: { type: local, root: ./linked, reuse: link }',
      '  plain: { type: local, root: ./plain, reuse: "off" }',
      '  spare: { type: local, root: ./spare }',
      'options: { quietPeriod: 0s, chunkSize: 1MiB }',
    ].join('\n'));
    const first = await run('--quiet', 'replicate', NIGHT1);
    assert.equal(first.code, 0, first.stdout + first.stderr);
  });

  it('--dry-run plans reuse per file, from the same path in night 1', async () => {
    const plan = await run('--json', 'replicate', NIGHT2, '--dry-run');
    assert.equal(plan.code, 0, plan.stderr);
    const result = jsonOf<ReplicateJson>(plan);
    const disk = result.destinations.find((d) => d.name === 'disk');
    const unchanged = nights.files.find((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')) as string;
    assert.deepEqual(disk?.plan?.actions.find((a) => a.path === unchanged), {
      path: unchanged, size: statSync(source(NIGHT2, unchanged)).size, action: 'reuse', reuseFrom: `${NIGHT1}/${unchanged}`,
      reason: 'missing at destination; the newest earlier copy there has it with the same size: reuse it if the bytes are the same, else send',
    });
    const plain = result.destinations.find((d) => d.name === 'plain');
    assert.ok(plain?.plan?.actions.every((a) => a.action === 'copy'), 'reuse: off plans no reuse');
    const text = await run('replicate', NIGHT2, '--dry-run', '--to', 'disk');
    assert.match(text.stdout, new RegExp(`reuse ${unchanged.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d+ bytes\\): missing at destination; .* \\(${NIGHT1}/`));
  });

  it('identical files are created server-side, changed ones (same path) are sent; every tree equals the source', async () => {
    const replicated = await run('--json', 'replicate', NIGHT2, '--to', 'disk,plain');
    assert.equal(replicated.code, 0, replicated.stdout + replicated.stderr);
    const result = jsonOf<ReplicateJson>(replicated);
    const disk = result.destinations.find((d) => d.name === 'disk') as DestinationJson;
    const shared = nights.files.filter((p) => !nights.changed.includes(p));
    assert.equal(disk.filesReused, shared.length, 'every unchanged file was reused');
    assert.equal(disk.filesCopied, nights.changed.length, 'the changed files were sent');
    assert.equal(disk.bytesWritten, nights.changedBytes, 'only the changed bytes were written');
    assert.equal(disk.bytesReused, nights.bytes - nights.changedBytes);
    assert.deepEqual(disk.reused?.map((r) => r.path), [...shared].sort());
    assert.ok(disk.reused?.every((r) => r.from === `${NIGHT1}/${r.path}`));
    const plain = result.destinations.find((d) => d.name === 'plain') as DestinationJson;
    assert.equal(plain.filesReused, 0);
    assert.equal(plain.bytesWritten, nights.bytes, 'reuse: off sends every byte');

    const text = await run('replicate', NIGHT2, '--to', 'linked');
    assert.equal(text.code, 0, text.stdout + text.stderr);
    assert.match(text.stdout, new RegExp(`linked\\s+complete: ${nights.changed.length} sent, ${shared.length} reused server-side \\([0-9.]+ [KMG]?i?B not sent\\)`));

    for (const d of ['disk', 'linked', 'plain']) sameTree(d, NIGHT2);
    const records = manifest('disk', NIGHT2).files;
    const before = new Map(manifest('disk', NIGHT1).files.map((f) => [f.path, f.hash]));
    for (const f of records) {
      if (nights.changed.includes(f.path)) {
        assert.equal(f.reusedFrom, undefined, `${f.path} was sent`);
        assert.notEqual(f.hash, before.get(f.path), `${f.path} is recorded with its new hash`);
      } else {
        assert.equal(f.reusedFrom, `${NIGHT1}/${f.path}`);
        assert.equal(f.hash, before.get(f.path));
      }
    }
    const probe = shared.find((p) => p.startsWith('binlogs/')) as string;
    assert.notEqual(statSync(at('disk', NIGHT2, probe)).ino, statSync(at('disk', NIGHT1, probe)).ino, 'reuse: copy makes a file of its own');
    assert.equal(statSync(at('linked', NIGHT2, probe)).ino, statSync(at('linked', NIGHT1, probe)).ino, 'reuse: link makes a hard link');
    assert.notEqual(statSync(at('linked', NIGHT2, nights.changed[0] as string)).ino, statSync(at('linked', NIGHT1, nights.changed[0] as string)).ino);
    const verify = await run('--json', 'verify', NIGHT2, '--deep', '--at', 'disk,linked,plain');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('files there but unrecorded (reused after the last checkpoint of a killed run) are copied again server-side, not read back', async () => {
    // What a kill before the next checkpoint leaves (checkpoints do not wait for reused files): every file there, none recorded.
    rmSync(at('disk', NIGHT2, '.offsite', 'manifest.json'));
    const rerun = await run('--json', 'replicate', NIGHT2, '--to', 'disk');
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    const disk = jsonOf<ReplicateJson>(rerun).destinations[0] as DestinationJson & { filesAdopted: number };
    const shared = nights.files.filter((p) => !nights.changed.includes(p));
    assert.equal(disk.filesReused, shared.length, 'the files night 1 holds under their path are copied there again');
    assert.equal(disk.filesAdopted, nights.changed.length, 'the changed ones are compared in place');
    assert.deepEqual([disk.filesCopied, disk.bytesWritten], [0, 0], 'nothing is sent');
    sameTree('disk', NIGHT2);
    assert.ok(manifest('disk', NIGHT2).files.every((f) => f.reusedFrom === (nights.changed.includes(f.path) ? undefined : `${NIGHT1}/${f.path}`)));
  });

  it('a file of night 1 changed at the destination since its manifest was written is not copied from: it is sent', async () => {
    const touched = nights.files.find((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')) as string;
    flipByte(at('spare', NIGHT1, touched));
    const replicated = await run('--json', 'replicate', NIGHT2, '--to', 'spare');
    assert.equal(replicated.code, 0, replicated.stdout + replicated.stderr);
    const spare = jsonOf<ReplicateJson>(replicated).destinations[0] as DestinationJson;
    assert.equal(spare.filesReused, nights.files.length - nights.changed.length - 1);
    assert.equal(spare.filesCopied, nights.changed.length + 1);
    assert.ok(!spare.reused?.some((r) => r.path === touched), 'the touched file was not reused');
    sameTree('spare', NIGHT2);
  });

  it('a reused file damaged at the destination is found by the audit (naming its origin) and repaired; night 1 stays intact', async () => {
    const victim = nights.files.find((p) => !nights.changed.includes(p) && p.startsWith('binlogs/')) as string;
    flipByte(at('disk', NIGHT2, victim));
    const audit = await run('--json', 'audit', '--at', 'disk', '--sample', '100%', '--repair');
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    const found = jsonOf<AuditJson>(audit).copies.find((c) => c.backup === NIGHT2 && c.destination === 'disk');
    assert.equal(found?.state, 'repaired');
    assert.deepEqual(found?.damage.map((d) => [d.path, d.reusedFrom]), [[victim, `${NIGHT1}/${victim}`]]);
    assert.match(found?.damage[0]?.message ?? '', new RegExp(`created by a server-side copy of ${NIGHT1}/`));
    assert.deepEqual(found?.repaired, [victim]);
    assert.equal(jsonOf<AuditJson>(audit).copies.find((c) => c.backup === NIGHT1 && c.destination === 'disk')?.state, 'ok', 'a copy of its own: night 1 is not damaged');
    sameTree('disk', NIGHT2);
  });

  it('reuse: link: damage shows in every copy sharing the file; the repair breaks the link', async () => {
    const victim = nights.files.filter((p) => !nights.changed.includes(p) && p.startsWith('binlogs/'))[1] as string;
    flipByte(at('linked', NIGHT2, victim));
    const audit = await run('--json', 'audit', '--at', 'linked', '--sample', '100%', '--repair');
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    const copies = jsonOf<AuditJson>(audit).copies.filter((c) => c.destination === 'linked');
    assert.deepEqual(copies.map((c) => [c.backup, c.state, c.damage.map((d) => d.path), c.repaired]), [
      [NIGHT1, 'repaired', [victim], [victim]], [NIGHT2, 'repaired', [victim], [victim]],
    ], 'the damage of the shared blocks shows in both copies');
    assert.notEqual(statSync(at('linked', NIGHT2, victim)).ino, statSync(at('linked', NIGHT1, victim)).ino, 'the repair replaced the linked file');
    sameTree('linked', NIGHT1);
    sameTree('linked', NIGHT2);
  });

  it('--no-reuse sends every file (and is in --help)', async () => {
    deriveNight(source(), NIGHT2, NIGHT3, [nights.changed[1] as string]);
    const replicated = await run('--json', 'replicate', NIGHT3, '--to', 'disk', '--no-reuse');
    assert.equal(replicated.code, 0, replicated.stdout + replicated.stderr);
    const disk = jsonOf<ReplicateJson>(replicated).destinations[0] as DestinationJson;
    assert.equal(disk.filesReused, 0);
    assert.equal(disk.bytesWritten, nights.bytes);
    sameTree('disk', NIGHT3);
    const help = await run('replicate', '--help');
    assert.match(help.stdout, /--no-reuse/);
  });

  it('prune of night 1 leaves night 2 intact (copy and link)', async () => {
    const prune = await run('--json', 'prune', '--keep-last', '1', '--at', 'linked,plain');
    assert.equal(prune.code, 0, prune.stdout + prune.stderr);
    const pruneDisk = await run('--json', 'prune', '--keep-last', '2', '--at', 'disk');
    assert.equal(pruneDisk.code, 0, pruneDisk.stdout + pruneDisk.stderr);
    for (const d of ['disk', 'linked', 'plain']) {
      assert.throws(() => statSync(at(d, NIGHT1)), `${d}: night 1 is gone`);
      sameTree(d, NIGHT2);
    }
    const verify = await run('--json', 'verify', NIGHT2, '--deep');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.ok(jsonOf<VerifyJson>(verify).results.every((r) => r.status === 'ok'));
  });

  it('SIGKILL while files are reused: no copy is taken for complete before the rerun completes it', async () => {
    deriveNight(source(), NIGHT2, NIGHT4, [nights.changed[0] as string]);
    const args = ['--config', config, '--quiet', 'replicate', NIGHT4, '--to', 'spare', '--concurrency', '2'];
    let midRun = 0;
    // Killed as soon as the first file's folder appears (the run is past its lock and copying); a
    // run that finished first ends the attempts.
    for (let attempt = 0; attempt < 3; attempt++) {
      const child = spawn(process.execPath, [binPath, ...args], { stdio: 'ignore', env: { ...process.env, ...UTC } });
      let done = false;
      const exited = new Promise<void>((resolve) => child.on('close', () => { done = true; resolve(); }));
      while (!done && !existsSync(at('spare', NIGHT4, 'binlogs'))) await new Promise((resolve) => setTimeout(resolve, 2));
      if (!done) { child.kill('SIGKILL'); midRun++; }
      await exited;
      const verify = await run('--json', 'verify', NIGHT4, '--deep', '--at', 'spare');
      for (const r of jsonOf<VerifyJson>(verify).results) assert.ok(r.status === 'incomplete' || r.status === 'ok', `after a kill: ${r.destination} ${r.status}`);
      if (existsSync(at('spare', NIGHT4, '.offsite', 'manifest.json'))) break;
    }
    assert.ok(midRun > 0, 'at least one kill landed mid-run');
    const final = await run('--json', 'replicate', NIGHT4, '--to', 'spare');
    assert.equal(final.code, 0, final.stdout + final.stderr);
    const verify = await run('--json', 'verify', NIGHT4, '--deep', '--at', 'spare');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    sameTree('spare', NIGHT4);
    const files = manifest('spare', NIGHT4).files;
    const reused = files.filter((f) => f.reusedFrom !== undefined).length;
    assert.ok(reused > 0 && reused < files.length, `the copy mixes reused (${reused}) and sent files`);
  });
});
