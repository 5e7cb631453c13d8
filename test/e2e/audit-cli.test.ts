/**
 * `offsite audit` end to end through the built CLI on local folders: quick checks, read-back by
 * sample, slice and rotation, repair of a flipped byte, a missing file and a deleted manifest
 * (from the source, and from another destination when the source no longer has the backup),
 * the rotation state kept at the destination, and the exit codes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { assignSlices } from '../../src/ops/audit.js';
import { chromiumOrSkip, renderInChromium } from '../helpers/chromium.js';
import { filesUnder, jsonOf, projectRoot, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const A = 'backup_2025_06_01_02_00_00';
const B = 'backup_2025_06_02_02_00_00';
const DESTS = ['disk', 'nas', 'far'];

interface CopyJson { backup: string; destination: string; state: string; files: number; bytes: number; filesRead: number; bytesRead: number; damage: { path: string; problem: string }[]; repaired: string[]; repairedFrom?: string; lastFullRead?: string; message?: string }
interface AuditJson {
  ok: boolean; exitCode: number; backups: string[]; mode: { kind: string; n?: number; t: number };
  destinations: { name: string; status: string; message?: string; filesChecked: number; filesRead: number; bytesRead: number; slice?: { n: number; t: number }; lastSuccess?: string }[];
  copies: CopyJson[];
}

interface Setup { dir: string; config: string; source: string }

async function setup(label: string): Promise<Setup> {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  await generateBackup({ root: source, name: A, totalBytes: 1536 * 1024, seed: 21 });
  await generateBackup({ root: source, name: B, totalBytes: 1024 * 1024, seed: 22 });
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    ...DESTS.map((d) => `  ${d}: { type: local, root: ./${d} }`),
    'options: { quietPeriod: 1s, chunkSize: 64KiB }',
  ].join('\n'));
  for (const name of [A, B]) {
    const run = await runCli(['--config', config, '--quiet', 'replicate', name]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
  }
  return { dir, config, source };
}

async function audit(s: Setup, ...args: string[]): Promise<{ code: number | null; json: AuditJson; stderr: string }> {
  const run = await runCli(['--config', s.config, '--json', 'audit', ...args]);
  return { code: run.code, json: jsonOf<AuditJson>(run), stderr: run.stderr };
}

function copy(json: AuditJson, destination: string, backup: string): CopyJson {
  const found = json.copies.find((c) => c.destination === destination && c.backup === backup);
  assert.ok(found, `a result for ${backup} at ${destination}`);
  return found;
}

function manifestFiles(s: Setup, dest: string, backup: string): { path: string; size: number }[] {
  return (JSON.parse(readFileSync(join(s.dir, dest, backup, '.offsite', 'manifest.json'), 'utf8')) as { files: { path: string; size: number }[] }).files;
}

/**
 * Flips one byte in the middle of the largest binlog of `backup` at `dest`, as bit rot does: in
 * place, with the modification time (to the nanosecond) and inode kept, so the file's fingerprint
 * does not change and only a read-back can find it. Returns its path in the backup.
 */
function flipByte(s: Setup, dest: string, backup: string): string {
  const files = filesUnder(join(s.dir, dest, backup)).filter((p) => p.startsWith('binlogs/'));
  const path = files.sort((a, b) => readFileSync(join(s.dir, dest, backup, b)).length - readFileSync(join(s.dir, dest, backup, a)).length)[0] as string;
  const full = join(s.dir, dest, backup, path);
  const mtimeNs = statSync(full, { bigint: true }).mtimeNs;
  const bytes = readFileSync(full);
  const offset = Math.floor(bytes.length / 2);
  bytes[offset] = (bytes[offset] as number) ^ 0x01;
  writeFileSync(full, bytes);
  const ns = String(mtimeNs % 1_000_000_000n).padStart(9, '0');
  execFileSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${ns}`, full]);
  assert.equal(statSync(full, { bigint: true }).mtimeNs, mtimeNs, 'the fingerprint is kept');
  return path;
}

describe('offsite audit (CLI, local folders)', () => {
  let s: Setup;
  before(async () => { s = await setup('audit'); });

  it('finds every copy intact; the rotation reads slice 1/7 and remembers where it stopped, at each destination', async () => {
    const { code, json } = await audit(s);
    assert.equal(code, 0);
    assert.equal(json.ok, true);
    assert.deepEqual(json.backups, [A, B]);
    assert.equal(json.copies.length, 6);
    assert.ok(json.copies.every((c) => c.state === 'ok'), JSON.stringify(json.copies.map((c) => c.state)));
    for (const d of json.destinations) {
      assert.deepEqual(d.slice, { n: 1, t: 7 });
      assert.equal(d.status, 'ok');
      assert.ok(d.filesRead > 0 && d.filesRead < d.filesChecked, `${d.name} read back a slice (${d.filesRead} of ${d.filesChecked})`);
      const state = JSON.parse(readFileSync(join(s.dir, d.name, '.offsite', 'audit.json'), 'utf8')) as { next: number; slices: number; lastSuccess?: string };
      assert.equal(state.next, 2);
      assert.equal(state.slices, 7);
      assert.ok(state.lastSuccess);
    }
    const again = await audit(s, '--at', 'disk');
    assert.deepEqual(again.json.destinations[0]?.slice, { n: 2, t: 7 }, 'the next run continues with slice 2');
    // A --sample or --slice run in between leaves the rotation where it was.
    assert.equal((await audit(s, '--at', 'disk', '--sample', '5%')).code, 0);
    assert.equal((await audit(s, '--at', 'disk', '--slice', '1/3')).code, 0);
    const state = JSON.parse(readFileSync(join(s.dir, 'disk', '.offsite', 'audit.json'), 'utf8')) as { next: number; slices: number; copies: Record<string, { slicesRead: Record<string, string> }> };
    assert.equal(state.slices, 7);
    assert.equal(state.next, 3);
    assert.deepEqual(Object.keys(state.copies[A]?.slicesRead ?? {}).sort(), ['1', '2'], 'the slice reads of the rotation are kept');
  });

  it('t slices read every file exactly once; only the slice holding a damaged file sees it', async () => {
    const t = 3;
    const slices = assignSlices(manifestFiles(s, 'far', A), t);
    const victim = flipByte(s, 'far', A);
    const damagedIn = slices.get(victim);
    let read = 0, bytes = 0;
    for (let n = 1; n <= t; n++) {
      const { code, json } = await audit(s, '--at', 'far', '--slice', `${n}/${t}`);
      const c = copy(json, 'far', A);
      read += c.filesRead;
      bytes += c.bytesRead + (c.state === 'damaged' ? readFileSync(join(s.dir, 'far', A, victim)).length : 0);
      if (n === damagedIn) {
        assert.equal(code, 3, `slice ${n} holds ${victim}`);
        assert.deepEqual(c.damage.map((d) => [d.path, d.problem]), [[victim, 'chunk']]);
      } else {
        assert.equal(code, 0, `slice ${n} does not hold ${victim}`);
        assert.equal(c.state, 'ok');
      }
    }
    const files = manifestFiles(s, 'far', A);
    assert.equal(read, files.length, 'the slices together read every file once');
    assert.equal(bytes, files.reduce((sum, f) => sum + f.size, 0), 'and every byte once');
    // The slices are a partition (each file in exactly one), balanced by bytes.
    const perSlice = Array.from({ length: t }, (_, i) => files.filter((f) => slices.get(f.path) === i + 1));
    assert.equal(perSlice.flat().length, files.length);
    assert.equal(new Set(perSlice.flat().map((f) => f.path)).size, files.length);
    const repair = await audit(s, '--at', 'far', '--sample', '100%', '--repair');
    assert.equal(repair.code, 0, JSON.stringify(copy(repair.json, 'far', A)));
  });

  it('a flipped byte: found by --sample 100% (exit 3), repaired from the source, read back, byte-identical', async () => {
    const victim = flipByte(s, 'nas', A);
    const found = await audit(s, '--sample', '100%');
    assert.equal(found.code, 3);
    assert.deepEqual(copy(found.json, 'nas', A).damage.map((d) => [d.path, d.problem]), [[victim, 'chunk']]);
    assert.equal(copy(found.json, 'disk', A).state, 'ok');
    assert.equal(copy(found.json, 'nas', B).state, 'ok');
    const fixed = await audit(s, '--sample', '100%', '--repair');
    assert.equal(fixed.code, 0, fixed.stderr);
    const c = copy(fixed.json, 'nas', A);
    assert.equal(c.state, 'repaired');
    assert.deepEqual(c.repaired, [victim]);
    assert.equal(c.repairedFrom, 'source');
    assert.deepEqual(treeDigest(join(s.dir, 'nas', A), ['.offsite/']), treeDigest(join(s.source, A)));
    const verify = await runCli(['--config', s.config, 'verify', A, '--at', 'nas', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
    const after = await audit(s, '--sample', '100%');
    assert.equal(after.code, 0);
    assert.ok(after.json.copies.every((x) => x.state === 'ok' && x.lastFullRead), 'a 100% sample counts as a full read');
  });

  it('a missing file is found by the quick checks alone and repaired', async () => {
    const path = filesUnder(join(s.dir, 'far', B)).find((p) => p.startsWith('binlogs/')) as string;
    rmSync(join(s.dir, 'far', B, path));
    const found = await audit(s, '--slice', '1/1000');
    assert.equal(found.code, 3);
    assert.deepEqual(copy(found.json, 'far', B).damage.map((d) => [d.path, d.problem]), [[path, 'missing']]);
    const fixed = await audit(s, '--repair', '--slice', '1/1000');
    assert.equal(fixed.code, 0);
    assert.deepEqual(copy(fixed.json, 'far', B).repaired, [path]);
    assert.ok(existsSync(join(s.dir, 'far', B, path)));
  });

  it('a deleted manifest makes the copy incomplete (exit 3); repair checks the files in place and writes it again', async () => {
    rmSync(join(s.dir, 'disk', B, '.offsite', 'manifest.json'));
    const found = await audit(s);
    assert.equal(found.code, 3);
    assert.equal(copy(found.json, 'disk', B).state, 'incomplete');
    const human = await runCli(['--config', s.config, 'audit', '--at', 'disk']);
    assert.equal(human.code, 3);
    assert.match(human.stdout, /INCOMPLETE: \d+ files and no manifest/);
    assert.match(human.stdout, /DAMAGE FOUND/);
    const fixed = await audit(s, '--repair');
    assert.equal(fixed.code, 0, JSON.stringify(copy(fixed.json, 'disk', B)));
    const c = copy(fixed.json, 'disk', B);
    assert.equal(c.state, 'repaired');
    assert.deepEqual(c.repaired, [], 'every file in place was intact: nothing copied');
    assert.ok(existsSync(join(s.dir, 'disk', B, '.offsite', 'manifest.json')));
    const verify = await runCli(['--config', s.config, 'verify', B, '--at', 'disk', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });

  it('without the source, a file damaged at two destinations is repaired from the third', async () => {
    renameSync(join(s.source, A), join(s.dir, 'moved-away'));
    try {
      const victim = flipByte(s, 'nas', A);
      const path = join(s.dir, 'disk', A, victim);
      const bytes = readFileSync(path);
      bytes[10] = (bytes[10] as number) ^ 0x80;
      writeFileSync(path, bytes);
      const fixed = await audit(s, '--sample', '100%', '--repair');
      assert.equal(fixed.code, 0, JSON.stringify(fixed.json.copies.filter((c) => c.backup === A)));
      for (const d of ['nas', 'disk']) {
        const c = copy(fixed.json, d, A);
        assert.equal(c.state, 'repaired', `${d}: ${c.message}`);
        assert.deepEqual(c.repaired, [victim]);
        assert.equal(c.repairedFrom, 'far', `${d} took the file from the only intact copy`);
      }
      const far = treeDigest(join(s.dir, 'far', A), ['.offsite/']);
      assert.deepEqual(treeDigest(join(s.dir, 'nas', A), ['.offsite/']), far);
      assert.deepEqual(treeDigest(join(s.dir, 'disk', A), ['.offsite/']), far);
    } finally {
      renameSync(join(s.dir, 'moved-away'), join(s.source, A));
    }
  });

  it('damage with nowhere intact to repair from stays damage (exit 3), saying why', async () => {
    renameSync(join(s.source, B), join(s.dir, 'moved-away'));
    try {
      const victim = flipByte(s, 'far', B);
      for (const d of ['disk', 'nas']) rmSync(join(s.dir, d, B), { recursive: true });
      const { code, json } = await audit(s, '--sample', '100%', '--repair');
      assert.equal(code, 3);
      const c = copy(json, 'far', B);
      assert.equal(c.state, 'damaged');
      assert.deepEqual(c.damage.map((d) => d.path), [victim]);
      assert.match(c.message ?? '', /repair failed/);
      // Earlier audits found B intact at disk and nas, and no prune removed it: lost (issue 11 finding 10).
      assert.equal(copy(json, 'disk', B).state, 'lost', 'a copy audited intact before and gone without a prune is lost');
      assert.match(copy(json, 'disk', B).message ?? '', /repair failed/);
    } finally {
      renameSync(join(s.dir, 'moved-away'), join(s.source, B));
    }
    const repaired = await audit(s, '--repair');
    assert.equal(repaired.code, 0, 'with the source back, every copy is repaired');
  });

  it('a destination that cannot be listed: exit 4, the others are still audited', async () => {
    const dir = tempDir('audit-broken');
    // An SFTP host nobody listens at (port 9 on 127.0.0.1: connection refused at once).
    const config = writeConfig(dir, [
      `source: { type: local, root: ${s.source} }`,
      'destinations:',
      `  disk: { type: local, root: ${join(s.dir, 'disk')} }`,
      '  broken: { type: sftp, host: 127.0.0.1, port: 9, username: nobody, password: x, hostKey: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", root: /srv }',
      'options: { quietPeriod: 1s, chunkSize: 64KiB }',
    ].join('\n'));
    const run = await runCli(['--config', config, '--json', 'audit', '--at', 'disk,broken', '--slice', '1/7', '--retries', '0']);
    const json = jsonOf<AuditJson>(run);
    assert.equal(run.code, 4, run.stdout);
    assert.equal(json.destinations.find((d) => d.name === 'broken')?.status, 'error');
    assert.equal(copy(json, 'disk', A).state, 'ok', 'the reachable destination is still audited');
    assert.equal(copy(json, 'broken', A).state, 'error');
    assert.match(json.destinations.find((d) => d.name === 'broken')?.message ?? '', /could not list/);
  });

  it('a copy that prune was removing is not damage, and --repair does not bring it back', async () => {
    rmSync(join(s.dir, 'far', A, '.offsite', 'manifest.json'));
    writeFileSync(join(s.dir, 'far', A, '.offsite', 'pruning.json'), JSON.stringify({ pruning: A }));
    const { code, json } = await audit(s, '--at', 'far', '--repair', '--sample', '100%');
    assert.equal(code, 0, JSON.stringify(json.copies));
    const c = copy(json, 'far', A);
    assert.equal(c.state, 'absent');
    assert.match(c.message ?? '', /prune was removing this copy/);
    assert.ok(!existsSync(join(s.dir, 'far', A, '.offsite', 'manifest.json')), 'no manifest was written for it');
  });

  it('bad arguments are usage errors (exit 2) with a clear message', async () => {
    for (const args of [['--sample', '0%'], ['--sample', '150%'], ['--slice', '8/7'], ['--slice', 'x'], ['--sample', '5%', '--slice', '1/2']]) {
      const run = await runCli(['--config', s.config, 'audit', ...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, /sample|slice/);
    }
  });
});

describe('offsite audit --report and --metrics (CLI, real audit output)', () => {
  it('writes an HTML matrix that headless Chromium renders, and Prometheus metrics', async (t) => {
    if (!(await chromiumOrSkip(t))) return;
    const s = await setup('audit-report');
    const victim = flipByte(s, 'nas', B);
    const out = join(projectRoot, '.test-output');
    mkdirSync(out, { recursive: true });
    const report = join(out, 'audit-cli-report.html');
    const metrics = join(s.dir, 'offsite.prom');
    const run = await runCli(['--config', s.config, 'audit', '--sample', '100%', '--report', report, '--metrics', metrics]);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`wrote ${report.replace(/[.]/g, '\\.')}`));
    const { dom } = await renderInChromium(report, { screenshot: join(out, 'audit-cli-report.png') });
    for (const name of [A, B, ...DESTS]) assert.ok(dom.includes(name), `the page names ${name}`);
    assert.ok(dom.includes(victim), 'the damaged file is listed');
    assert.match(dom, /Damaged/i);
    const prom = readFileSync(metrics, 'utf8');
    assert.match(prom, /^offsite_audit_destination_ok\{destination="nas"\} 0$/m);
    assert.match(prom, /^offsite_audit_destination_ok\{destination="disk"\} 1$/m);
    assert.match(prom, /^offsite_audit_copies\{destination="nas",state="damaged"\} 1$/m);
    assert.ok(!existsSync(`${metrics}.tmp.${process.pid}`));
  });
});
