/**
 * `offsite prune` end to end through the built CLI, on local folders: backups named
 * `backup_YYYY_MM_DD_HH_MM_SS` at chosen dates (a month end, an ISO week that spans a year end,
 * two backups on one day) are replicated to two destinations, then pruned with a policy whose
 * expected keeps are a table (restic forget semantics): the dry run plans exactly that and
 * touches nothing; the real run leaves exactly the kept copies, removes the others entirely,
 * records them in `.offsite/pruned.json`, never touches the source, and never touches
 * incomplete or damaged copies. Then an interrupted prune (a file that cannot be deleted, after
 * the manifest is gone) and a copy locked by a live run: the half-removed copy no longer counts
 * as complete (list, verify), and the next prune finishes the job.
 *
 * Every run sets TZ=UTC: the policy buckets by the local time zone of the process, like restic.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig, type CliRun } from '../helpers/cli.js';

const UTC = { TZ: 'UTC' };

interface PruneJson {
  ok: boolean;
  dryRun: boolean;
  policy: string;
  destinations: {
    destination: string;
    status: string;
    kept: { name: string; time: string; timeSource: string; reasons: string[] }[];
    removed: { name: string; finishing?: boolean; lockPresent?: boolean }[];
    skipped: { name: string; reason: string; message: string }[];
    errors: { name?: string; message: string; manifestRemoved?: boolean }[];
  }[];
}
interface ListJson { backups: { name: string; copies: Record<string, string> }[] }
interface VerifyJson { results: { destination: string; status: string; message?: string }[] }

/** The table: policy --keep-daily 3 --keep-weekly 2 --keep-monthly 3, newest first. */
const POLICY = ['--keep-daily', '3', '--keep-weekly', '2', '--keep-monthly', '3'];
const TABLE: readonly [name: string, reasons: string][] = [
  ['backup_2025_01_02_02_00_00', 'daily snapshot, weekly snapshot, monthly snapshot'],
  ['backup_2025_01_01_14_00_00', 'daily snapshot'],
  ['backup_2025_01_01_02_00_00', ''], // same day as the one above, which is newer
  ['backup_2024_12_31_02_00_00', 'daily snapshot, monthly snapshot'], // December's newest
  ['backup_2024_12_30_02_00_00', ''], // ISO week 2025-W01 (kept already), December (kept already)
  ['backup_2024_12_29_02_00_00', 'weekly snapshot'], // ISO week 2024-W52
  ['backup_2024_11_30_02_00_00', 'monthly snapshot'], // November, last day
  ['backup_2024_11_15_02_00_00', ''], // every budget used up
];
const KEPT = TABLE.filter(([, r]) => r).map(([n]) => n);
const REMOVED = TABLE.filter(([, r]) => !r).map(([n]) => n);

interface Setup { dir: string; config: string; source: string }

async function setup(label: string, names: readonly string[]): Promise<Setup> {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  let seed = 1;
  for (const name of names) {
    // Small (64..176 KiB), finished an hour ago: complete under the 1 s quiet period.
    await generateBackup({ root: source, name, seed: seed++, totalBytes: 48 * 1024 + seed * 16 * 1024, mtimeMs: Date.now() - 3_600_000 });
  }
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    '  disk: { type: local, root: ./disk }',
    '  nas: { type: local, root: ./nas }',
    'options: { quietPeriod: 1s, chunkSize: 64KiB }',
  ].join('\n'));
  for (const name of names) {
    const run = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'disk,nas'], { env: UTC });
    assert.equal(run.code, 0, `replicate ${name}: ${run.stderr}${run.stdout}`);
  }
  return { dir, config, source };
}

function prune(s: Setup, args: readonly string[]): Promise<CliRun> {
  return runCli(['--config', s.config, ...args], { env: UTC });
}

/** Top-level folders at a destination (copies, plus `.offsite`). */
function foldersAt(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory()).sort() : [];
}

function prunedRecord(dir: string): Record<string, string> {
  return (JSON.parse(readFileSync(join(dir, '.offsite', 'pruned.json'), 'utf8')) as { pruned: Record<string, string> }).pruned;
}

function destination(result: PruneJson, name: string): PruneJson['destinations'][number] {
  const d = result.destinations.find((x) => x.destination === name);
  assert.ok(d, `no result for destination ${name}: ${JSON.stringify(result)}`);
  return d;
}

describe('prune on local folders (CLI)', () => {
  let s: Setup;
  before(async () => {
    s = await setup('prune', TABLE.map(([n]) => n));
    // At disk only: an incomplete copy (files, no manifest) and one whose manifest is damaged.
    mkdirSync(join(s.dir, 'disk', 'backup_2020_01_01_00_00_00', 'meta'), { recursive: true });
    writeFileSync(join(s.dir, 'disk', 'backup_2020_01_01_00_00_00', 'meta', 'backup_meta.json'), '{}');
    mkdirSync(join(s.dir, 'disk', 'old_damaged', '.offsite'), { recursive: true });
    mkdirSync(join(s.dir, 'disk', 'old_damaged', 'meta'), { recursive: true });
    writeFileSync(join(s.dir, 'disk', 'old_damaged', 'meta', 'backup_meta.json'), '{}');
    writeFileSync(join(s.dir, 'disk', 'old_damaged', '.offsite', 'manifest.json'), '{"format":"offsite-manifest", "trunc');
  });

  it('refuses to run without a policy, naming the options (exit 2); nothing is touched', async () => {
    const before = treeDigest(join(s.dir, 'disk'));
    const run = await prune(s, ['prune']);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^offsite: no policy was specified: give at least one of --keep-last, .*--keep-daily.*--keep-within; nothing was removed\n$/);
    const zero = await prune(s, ['--json', 'prune', '--keep-daily', '0', '--keep-last', '0']);
    assert.equal(zero.code, 2);
    assert.equal(jsonOf<{ error: { code: string } }>(zero).error.code, 'E_USAGE');
    const bad = await prune(s, ['prune', '--keep-daily', 'seven']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--keep-daily <n>' argument 'seven' is invalid\. expected a whole number >= 0, or "unlimited"/);
    const unknown = await prune(s, ['prune', '--keep-last', '1', '--at', 'tape']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown destination "tape" \(configured in .*: disk, nas\)/);
    assert.deepEqual(treeDigest(join(s.dir, 'disk')), before);
  });

  it('refuses a destination that is the source, or inside it (exit 2): prune never deletes at the source', async () => {
    const dir = tempDir('prune-src');
    for (const [root, verb] of [['./backups', 'is the same place as'], ['./backups/mirror', 'is inside']] as const) {
      const config = writeConfig(dir, `source: { type: local, root: ./backups }\ndestinations:\n  mirror: { type: local, root: ${root} }\n`);
      const run = await runCli(['--config', config, 'prune', '--keep-last', '1'], { env: UTC });
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`destination "mirror" \\(local:.*\\) ${verb} the source \\(local:.*backups\\); a destination must be a place of its own: .*prune would delete backups at the source`));
    }
  });

  it('--dry-run plans exactly the table at each destination and deletes nothing, writes nothing', async () => {
    const before = { disk: treeDigest(join(s.dir, 'disk')), nas: treeDigest(join(s.dir, 'nas')), source: treeDigest(s.source) };
    const run = await prune(s, ['--json', 'prune', ...POLICY, '--dry-run']);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<PruneJson>(run);
    assert.equal(result.dryRun, true);
    assert.equal(result.policy, 'keep 3 daily, 2 weekly, 3 monthly snapshots');
    for (const name of ['disk', 'nas']) {
      const d = destination(result, name);
      assert.equal(d.status, 'ok');
      assert.deepEqual(d.kept.map((k) => [k.name, k.reasons.join(', ')]), TABLE.filter(([, r]) => r), `${name}: kept, newest first, with restic's reasons`);
      assert.deepEqual(d.removed.map((r) => r.name), REMOVED, `${name}: to remove`);
      assert.deepEqual(d.errors, []);
      assert.ok(d.kept.every((k) => k.timeSource === 'backupTime'), 'times come from the manifests');
      assert.equal(d.kept[0]?.time, '2025-01-02T02:00:00.000Z');
    }
    const disk = destination(result, 'disk');
    assert.deepEqual(disk.skipped.map((x) => [x.name, x.reason]), [['old_damaged', 'damaged'], ['backup_2020_01_01_00_00_00', 'incomplete']]);
    assert.match(disk.skipped[0]?.message ?? '', /manifest is not valid JSON.*never pruned/);
    assert.match(disk.skipped[1]?.message ?? '', /no manifest \(files without a manifest\): an incomplete copy is never pruned/);
    assert.deepEqual(destination(result, 'nas').skipped, []);
    assert.deepEqual({ disk: treeDigest(join(s.dir, 'disk')), nas: treeDigest(join(s.dir, 'nas')), source: treeDigest(s.source) }, before, 'nothing changed anywhere');
    assert.ok(!existsSync(join(s.dir, 'disk', '.offsite', 'pruned.json')), 'no pruned record written');
  });

  it('--dry-run human output lists keep (reasons) / would remove per destination, and a summary; --at limits it', async () => {
    const run = await prune(s, ['prune', ...POLICY, '--dry-run', '--at', 'nas']);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.split('\n');
    assert.equal(lines[0], 'prune: keep 3 daily, 2 weekly, 3 monthly snapshots (dry run: nothing was deleted)');
    assert.match(lines[1] ?? '', /^nas \(local:.*nas\):$/);
    assert.ok(!run.stdout.includes('disk'), '--at nas: nothing about disk');
    assert.match(run.stdout, /\n {2}keep {10}backup_2025_01_02_02_00_00 {2}2025-01-02 02:00 {2}daily snapshot, weekly snapshot, monthly snapshot\n/);
    assert.match(run.stdout, /\n {2}keep {10}backup_2024_12_29_02_00_00 {2}2024-12-29 02:00 {2}weekly snapshot\n/);
    assert.match(run.stdout, /\n {2}would remove {2}backup_2024_12_30_02_00_00 {2}2024-12-30 02:00 {2}\d+(\.\d+)? KiB\n/);
    assert.match(run.stdout, /\n {2}nas: 5 kept, 3 to remove \(\d+(\.\d+)? KiB\), 0 skipped\n/);
  });

  it('prune removes exactly the copies the table says, entirely, at both destinations; the source is untouched', async () => {
    const sourceBefore = treeDigest(s.source);
    const keptBefore = treeDigest(join(s.dir, 'disk', KEPT[0] as string));
    const run = await prune(s, ['--json', 'prune', ...POLICY]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<PruneJson>(run);
    assert.equal(result.ok, true);
    assert.equal(result.dryRun, false);
    for (const name of ['disk', 'nas']) {
      const d = destination(result, name);
      assert.deepEqual([d.status, d.removed.map((r) => r.name), d.kept.map((k) => k.name)], ['ok', REMOVED, KEPT]);
      const root = join(s.dir, name);
      const extra = name === 'disk' ? ['backup_2020_01_01_00_00_00', 'old_damaged'] : [];
      assert.deepEqual(foldersAt(root), ['.offsite', ...KEPT, ...extra].sort(), `${name}: exactly the kept copies (and the untouchable ones) remain`);
      for (const gone of REMOVED) assert.ok(!existsSync(join(root, gone)), `${name}/${gone} is gone entirely, folder included`);
      assert.deepEqual(Object.keys(prunedRecord(root)).sort(), [...REMOVED].sort(), `${name}: .offsite/pruned.json lists the removed backups`);
      for (const when of Object.values(prunedRecord(root))) assert.ok(Math.abs(Date.parse(when) - Date.now()) < 5 * 60_000, 'pruned times are now');
    }
    assert.deepEqual(treeDigest(s.source), sourceBefore, 'the source is untouched');
    assert.equal(foldersAt(s.source).length, TABLE.length, 'every backup is still at the source');
    assert.deepEqual(treeDigest(join(s.dir, 'disk', KEPT[0] as string)), keptBefore, 'a kept copy is untouched');
    assert.ok(existsSync(join(s.dir, 'disk', 'old_damaged', '.offsite', 'manifest.json')), 'the damaged copy is left alone');
    assert.ok(existsSync(join(s.dir, 'disk', 'backup_2020_01_01_00_00_00', 'meta', 'backup_meta.json')), 'the incomplete copy is left alone');

    const list = jsonOf<ListJson>(await prune(s, ['--json', 'list']));
    for (const b of list.backups) {
      const expected = KEPT.includes(b.name) ? 'complete' : 'absent';
      assert.deepEqual(b.copies, { disk: expected, nas: expected }, b.name);
    }
    const verify = await prune(s, ['--json', 'verify', KEPT[KEPT.length - 1] as string, '--at', 'disk,nas', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
  });

  it('a second prune with the same policy removes nothing', async () => {
    const before = treeDigest(join(s.dir, 'nas'));
    const run = await prune(s, ['prune', ...POLICY]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\n {2}disk: 5 kept, 0 removed \(0 B\), 2 skipped\n/);
    assert.match(run.stdout, /\n {2}nas: 5 kept, 0 removed \(0 B\), 0 skipped\n/);
    assert.deepEqual(treeDigest(join(s.dir, 'nas')), before);
  });
});

/**
 * Makes `file` impossible to delete, and returns how to undo it. As root, permissions do not
 * stop unlink: make the file immutable (chattr +i), else bind-mount its folder read-only.
 * Otherwise, a read-only folder. Undefined (with the reason) when none works here.
 */
function makeUndeletable(file: string): { undo: () => void } | { reason: string } {
  const folder = file.slice(0, file.lastIndexOf('/'));
  if (process.getuid?.() !== 0) {
    chmodSync(folder, 0o555);
    return { undo: () => chmodSync(folder, 0o755) };
  }
  const errors: string[] = [];
  try {
    execFileSync('chattr', ['+i', file], { stdio: 'pipe' });
    return { undo: () => execFileSync('chattr', ['-i', file], { stdio: 'pipe' }) };
  } catch (err) {
    errors.push(`chattr +i: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    execFileSync('mount', ['--bind', folder, folder], { stdio: 'pipe' });
    try {
      execFileSync('mount', ['-o', 'remount,bind,ro', folder], { stdio: 'pipe' });
    } catch (err) {
      execFileSync('umount', [folder], { stdio: 'pipe' });
      throw err;
    }
    return { undo: () => execFileSync('umount', [folder], { stdio: 'pipe' }) };
  } catch (err) {
    errors.push(`read-only bind mount: ${(err as Error).message.split('\n')[0]}`);
  }
  return { reason: errors.join('; ') };
}

describe('interrupted prune and locked copies (CLI)', () => {
  const A = 'backup_2025_03_01_02_00_00';
  const B = 'backup_2025_03_02_02_00_00';
  const C = 'backup_2025_03_03_02_00_00';
  let s: Setup;
  before(async () => { s = await setup('prune-int', [A, B, C]); });

  it('a copy whose removal stops after its manifest is gone no longer counts as complete; a locked copy is skipped; the next prune finishes both', async (t) => {
    // disk: a file of A cannot be deleted. nas: a live offsite run holds B's lock.
    const victim = filesUnder(join(s.dir, 'disk', A)).filter((p) => p.startsWith('binlogs/')).sort().at(-1) as string;
    assert.ok(victim, 'A has binlogs');
    const blocked = makeUndeletable(join(s.dir, 'disk', A, victim));
    if ('reason' in blocked) {
      t.skip(`SKIPPED LOUDLY: cannot make a file undeletable here (${blocked.reason}); the interrupted-prune case is not covered on this machine`);
      return;
    }
    let undone = false;
    const undo = (): void => { if (!undone) { undone = true; blocked.undo(); } };
    try {
      const lock = { token: 'held-by-test', owner: 'test', host: hostname(), pid: process.pid, time: new Date().toISOString() };
      writeFileSync(join(s.dir, 'nas', B, '.offsite', 'lock.json'), `${JSON.stringify(lock)}\n`);

      const run = await prune(s, ['--json', 'prune', '--keep-last', '1']);
      assert.equal(run.code, 4, `one destination failed, the other did its work: exit 4\n${run.stderr}${run.stdout}`);
      const result = jsonOf<PruneJson>(run);
      const disk = destination(result, 'disk');
      assert.equal(disk.status, 'failed');
      assert.deepEqual(disk.removed.map((r) => r.name), [B]);
      assert.equal(disk.errors.length, 1);
      assert.equal(disk.errors[0]?.name, A);
      assert.equal(disk.errors[0]?.manifestRemoved, true);
      assert.match(disk.errors[0]?.message ?? '', /removal stopped after its manifest was deleted: .*(permission denied|read-only).*; the copy no longer counts as complete; run offsite prune again to finish it/);
      const nas = destination(result, 'nas');
      assert.equal(nas.status, 'ok');
      assert.deepEqual(nas.removed.map((r) => r.name), [A]);
      assert.deepEqual(nas.skipped.map((x) => [x.name, x.reason]), [[B, 'locked']]);
      assert.match(nas.skipped[0]?.message ?? '', /is being written by another offsite run \(test@.*pid \d+.*\); .*not pruned this time/);

      // A at disk: manifest gone, so nothing treats it as a complete copy.
      assert.ok(!existsSync(join(s.dir, 'disk', A, '.offsite', 'manifest.json')), 'the manifest went first');
      assert.ok(existsSync(join(s.dir, 'disk', A, victim)), 'the undeletable file is still there');
      const list = jsonOf<ListJson>(await prune(s, ['--json', 'list']));
      assert.deepEqual(list.backups.find((b) => b.name === A)?.copies, { disk: 'absent', nas: 'absent' });
      assert.deepEqual(list.backups.find((b) => b.name === B)?.copies, { disk: 'absent', nas: 'complete' }, 'the locked copy is untouched');
      const verify = await prune(s, ['--json', 'verify', A, '--at', 'disk']);
      assert.equal(verify.code, 3, verify.stdout);
      assert.equal(jsonOf<VerifyJson>(verify).results[0]?.status, 'incomplete');
      assert.deepEqual(Object.keys(prunedRecord(join(s.dir, 'disk'))).sort(), [A, B], 'the half-removed copy is recorded as pruned too (watch must not re-copy it)');
      assert.deepEqual(Object.keys(prunedRecord(join(s.dir, 'nas'))), [A]);

      // A dry run now shows the leftover as an unfinished removal, whatever the policy.
      const plan = jsonOf<PruneJson>(await prune(s, ['--json', 'prune', '--keep-last', '5', '--dry-run']));
      const leftover = destination(plan, 'disk').removed;
      assert.deepEqual(leftover.map((r) => [r.name, r.finishing]), [[A, true]]);
      assert.deepEqual(destination(plan, 'disk').kept.map((k) => k.name), [C], 'A is no longer a candidate for the policy');
      assert.deepEqual(destination(plan, 'nas').removed, []);

      // Fix the cause and release the lock: the next prune finishes both.
      undo();
      writeFileSync(join(s.dir, 'nas', B, '.offsite', 'lock.json'), `${JSON.stringify({ ...lock, pid: 999_999_999 })}\n`); // its run is gone
      const again = await prune(s, ['prune', '--keep-last', '1']);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      assert.match(again.stdout, /\n {2}removed {2}backup_2025_03_01_02_00_00 {2}\(time unknown\) {2}\d+(\.\d+)? KiB \(finishing an interrupted prune\)\n/);
      for (const d of ['disk', 'nas']) {
        assert.deepEqual(foldersAt(join(s.dir, d)), ['.offsite', C], `${d}: only the newest copy is left`);
        assert.deepEqual(Object.keys(prunedRecord(join(s.dir, d))).sort(), [A, B]);
      }
      assert.deepEqual(foldersAt(s.source), [A, B, C], 'the source still has all three');
    } finally {
      undo();
    }
  });
});
