/**
 * End to end through the built CLI, as a user runs it, on local folders: replicate, re-run,
 * damage detection, refusal of incomplete backups, bad input, resume, int64 IDs.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'node:test';
import { generateBackup, type Breakage } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const NAME = 'nightly_2025_06_01';

interface Setup { dir: string; config: string; source: string }

async function setup(label: string, options: { totalBytes?: number; destinations?: string[] } = {}): Promise<Setup> {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  await generateBackup({ root: source, name: NAME, totalBytes: options.totalBytes ?? 3 * 1024 * 1024, seed: 11 });
  const dests = options.destinations ?? ['disk', 'nas'];
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    ...dests.map((d) => `  ${d}: { type: local, root: ./${d} }`),
    'options: { quietPeriod: 1s, chunkSize: 64KiB }',
  ].join('\n'));
  return { dir, config, source };
}

interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; bytesResumed: number; filesCopied: number; errors: { message: string; path?: string }[] }[] }
interface VerifyJson { ok: boolean; results: { destination: string; status: string; damage: { path: string; problem: string; chunk?: number; message: string }[] }[] }

describe('replicate and verify on local folders (CLI)', () => {
  let s: Setup;
  before(async () => { s = await setup('e2e'); });

  it('copies a backup to two destinations byte for byte, with a manifest each', async () => {
    const run = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk,nas']);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<ReplicateJson>(run);
    assert.deepEqual(result.destinations.map((d) => d.status), ['complete', 'complete']);
    const sourceTree = treeDigest(join(s.source, NAME));
    assert.ok(sourceTree.size > 10, 'the generated backup has files');
    for (const d of ['disk', 'nas']) {
      assert.deepEqual(treeDigest(join(s.dir, d, NAME), ['.offsite/']), sourceTree, `${d} is identical to the source`);
      assert.ok(existsSync(join(s.dir, d, NAME, '.offsite', 'manifest.json')), `${d} has a manifest`);
      assert.ok(!existsSync(join(s.dir, d, NAME, '.offsite', 'progress.json')), `${d} has no leftover checkpoint`);
    }
    const total = [...sourceTree.keys()].reduce((sum, p) => sum + readFileSync(join(s.source, NAME, p)).length, 0);
    for (const d of result.destinations) assert.equal(d.bytesWritten, total, `${d.name} received every byte once`);
  });

  it('deep verify passes at both', async () => {
    const run = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk,nas', '--deep']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const result = jsonOf<VerifyJson>(run);
    assert.deepEqual(result.results.map((r) => r.status), ['ok', 'ok']);
  });

  it('a second run copies nothing', async () => {
    const run = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk,nas']);
    assert.equal(run.code, 0, run.stderr);
    const result = jsonOf<ReplicateJson>(run);
    assert.deepEqual(result.destinations.map((d) => [d.status, d.bytesWritten, d.filesCopied]), [['up-to-date', 0, 0], ['up-to-date', 0, 0]]);
  });

  it('int64 IDs above 2^53 survive byte for byte', () => {
    const meta = readFileSync(join(s.source, NAME, 'meta', 'full_meta.json'), 'utf8');
    const ids = meta.match(/\b\d{18}\b/g) ?? [];
    assert.ok(ids.length > 5, 'the meta holds 18-digit IDs');
    assert.ok(ids.some((id) => BigInt(id) > BigInt(Number.MAX_SAFE_INTEGER) && String(Number(id)) !== id), 'some cannot survive a float round trip');
    for (const d of ['disk', 'nas']) {
      assert.equal(readFileSync(join(s.dir, d, NAME, 'meta', 'full_meta.json'), 'utf8'), meta);
      const paths = filesUnder(join(s.dir, d, NAME));
      assert.ok(ids.some((id) => paths.some((p) => p.includes(`/${id}/`))), 'paths keep the IDs');
    }
  });

  it('one flipped byte at one destination: deep verify exits 3 naming the file and chunk; the other is clean', async () => {
    const victim = filesUnder(join(s.dir, 'nas', NAME)).map((p) => join(s.dir, 'nas', NAME, p))
      .find((p) => p.includes('insert_log') && readFileSync(p).length > 200 * 1024) as string;
    assert.ok(victim, 'a binlog larger than 3 chunks exists');
    const bytes = readFileSync(victim);
    const offset = 3 * 65536 + 17; // inside chunk 3
    bytes[offset] = (bytes[offset] as number) ^ 0xff;
    writeFileSync(victim, bytes);
    const run = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk,nas', '--deep']);
    assert.equal(run.code, 3, run.stdout + run.stderr);
    const result = jsonOf<VerifyJson>(run);
    const [disk, nas] = result.results;
    assert.equal(disk?.status, 'ok');
    assert.equal(nas?.status, 'damaged');
    assert.equal(nas?.damage.length, 1);
    assert.equal(nas?.damage[0]?.problem, 'chunk');
    assert.equal(nas?.damage[0]?.chunk, 3);
    assert.ok(victim.endsWith(nas?.damage[0]?.path as string), `names ${nas?.damage[0]?.path}`);
    const human = await runCli(['--config', s.config, 'verify', NAME, '--at', 'nas', '--deep']);
    assert.equal(human.code, 3);
    assert.match(human.stdout, /DAMAGED/);
    assert.match(human.stdout, /chunk 3 \(bytes 196608\.\.\d+\) differs/);
    bytes[offset] = (bytes[offset] as number) ^ 0xff;
    writeFileSync(victim, bytes);
  });

  it('a truncated, lengthened or deleted file is caught by the quick and by the deep verify', async () => {
    const files = filesUnder(join(s.dir, 'disk', NAME)).filter((p) => p.startsWith('binlogs/'));
    const truncated = join(s.dir, 'disk', NAME, files[0] as string);
    const deleted = join(s.dir, 'disk', NAME, files[1] as string);
    const lengthened = join(s.dir, 'disk', NAME, files[2] as string);
    const original = readFileSync(truncated);
    truncateSync(truncated, Math.max(0, original.length - 1));
    const removed = readFileSync(deleted);
    rmSync(deleted);
    // Its manifest size's worth of bytes is intact: only the size tells (a deep read of them alone would pass).
    const longer = readFileSync(lengthened);
    appendFileSync(lengthened, 'x');
    for (const level of [[], ['--deep']]) {
      const run = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk', ...level]);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      const problems = jsonOf<VerifyJson>(run).results[0]?.damage.map((d) => [d.path, d.problem]);
      assert.deepEqual(problems?.sort(), [[files[0], 'size'], [files[1], 'missing'], [files[2], 'size']].sort(), level.join(''));
    }
    // a re-run heals exactly these three files and nothing else
    const heal = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk']);
    assert.equal(heal.code, 0, heal.stderr);
    const healed = jsonOf<ReplicateJson>(heal).destinations[0];
    assert.equal(healed?.filesCopied, 3);
    assert.equal(healed?.bytesWritten, original.length + removed.length + longer.length);
    const again = await runCli(['--config', s.config, 'verify', NAME, '--at', 'disk', '--deep']);
    assert.equal(again.code, 0, again.stdout);
  });

  it('--dry-run writes nothing and lists the plan', async () => {
    const fresh = join(s.dir, 'fresh');
    writeFileSync(s.config, readFileSync(s.config, 'utf8').replace('destinations:', `destinations:\n  fresh: { type: local, root: ./fresh }`));
    const run = await runCli(['--config', s.config, 'replicate', NAME, '--to', 'fresh', '--dry-run']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /would copy \d+ files/);
    assert.ok(!existsSync(join(fresh, NAME)), 'nothing written');
  });
});

describe('incomplete and failed backups are refused (CLI)', () => {
  const breakages: { breakage: Breakage; reason: RegExp }[] = [
    { breakage: 'no-meta', reason: /meta/ },
    { breakage: 'no-full-meta', reason: /full_meta\.json/ },
    { breakage: 'missing-binlog', reason: /binlog .* missing|missing/ },
    { breakage: 'short-binlog', reason: /bytes, meta says \d+/ },
    { breakage: 'malformed-meta', reason: /\.json/ },
    { breakage: 'l0-missing', reason: /-1\/|missing/ },
  ];
  for (const { breakage, reason } of breakages) {
    it(`${breakage}: refused with its reason, nothing written anywhere`, async () => {
      const dir = tempDir(`broken-${breakage}`);
      await generateBackup({ root: join(dir, 'backups'), name: NAME, breakage, seed: 5, totalBytes: 512 * 1024 });
      const config = writeConfig(dir, 'source: { type: local, root: ./backups }\ndestinations:\n  disk: { type: local, root: ./disk }\n  nas: { type: local, root: ./nas }\noptions: { quietPeriod: 1s }\n');
      const run = await runCli(['--config', config, 'replicate', NAME, '--to', 'disk,nas']);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /^offsite: backup nightly_2025_06_01 is not complete: /);
      assert.match(run.stderr, reason);
      assert.equal(run.stderr.trim().split('\n').length, 1, 'one line');
      assert.ok(!existsSync(join(dir, 'disk')) || filesUnder(join(dir, 'disk')).length === 0, 'nothing at disk');
      assert.ok(!existsSync(join(dir, 'nas')) || filesUnder(join(dir, 'nas')).length === 0, 'nothing at nas');
    });
  }

  it('a backup changed within the quiet period is refused and says how long ago', async () => {
    const dir = tempDir('quiet');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, seed: 5, totalBytes: 256 * 1024, mtimeMs: Date.now() });
    const config = writeConfig(dir, 'source: { type: local, root: ./backups }\ndestinations:\n  disk: { type: local, root: ./disk }\noptions: { quietPeriod: 10m }\n');
    const run = await runCli(['--config', config, 'replicate', NAME]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /ago/);
    assert.ok(!existsSync(join(dir, 'disk', NAME, '.offsite')));
  });
});

describe('bad input: one clear line, the right exit code, no stack trace (CLI)', () => {
  let s: Setup;
  before(async () => { s = await setup('bad', { totalBytes: 256 * 1024 }); });

  const noStack = (text: string) => assert.doesNotMatch(text, /\n\s+at .+\(.+:\d+:\d+\)/);

  it('unknown destination name: exit 2, names the known ones', async () => {
    const run = await runCli(['--config', s.config, 'replicate', NAME, '--to', 'disk,cloud']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown destination "cloud" .*disk, nas/);
    assert.equal(run.stderr.trim().split('\n').length, 1);
    noStack(run.stderr);
  });

  it('malformed config: exit 2 with the line', async () => {
    const dir = tempDir('badyaml');
    const config = writeConfig(dir, 'source: { type: local, root: ./b\ndestinations:\n  - nope\n');
    const run = await runCli(['--config', config, 'list']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /not valid YAML at line \d+/);
    noStack(run.stderr);
  });

  it('missing config file and unset ${ENV}: exit 2, the variable named, no value printed', async () => {
    const missing = await runCli(['--config', '/nonexistent/offsite.yaml', 'list']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /does not exist/);
    const dir = tempDir('env');
    const config = writeConfig(dir, 'source: { type: local, root: ./b }\ndestinations:\n  d: { type: local, root: "${OFFSITE_TEST_UNSET_VAR}" }\n');
    const run = await runCli(['--config', config, 'list'], { env: { OFFSITE_TEST_UNSET_VAR: '' } });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /destinations\.d\.root refers to \$\{OFFSITE_TEST_UNSET_VAR\}/);
  });

  it('malformed meta JSON: refused naming the file', async () => {
    const dir = tempDir('badmeta');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, seed: 3, totalBytes: 128 * 1024 });
    const meta = join(dir, 'backups', NAME, 'meta', 'full_meta.json');
    writeFileSync(meta, readFileSync(meta, 'utf8').slice(0, 100));
    const config = writeConfig(dir, 'source: { type: local, root: ./backups }\ndestinations:\n  d: { type: local, root: ./d }\noptions: { quietPeriod: 0s }\n');
    const run = await runCli(['--config', config, 'replicate', NAME]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /full_meta\.json/);
    assert.equal(run.stderr.trim().split('\n').length, 1);
    noStack(run.stderr);
  });

  it('a name with ../ is refused before any IO: exit 2', async () => {
    for (const bad of ['../etc', 'a/../../b', '/abs']) {
      const run = await runCli(['--config', s.config, 'replicate', bad, '--to', 'disk']);
      assert.equal(run.code, 2, `${bad}: ${run.stderr}`);
      assert.match(run.stderr, /not a milvus-backup backup name/);
      noStack(run.stderr);
    }
  });

  it('a source symlink pointing outside the root is refused', async () => {
    const dir = tempDir('symlink');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, seed: 3, totalBytes: 128 * 1024 });
    mkdirSync(join(dir, 'outside'));
    writeFileSync(join(dir, 'outside', 'secret'), 'not part of any backup');
    symlinkSync(join(dir, 'outside', 'secret'), join(dir, 'backups', NAME, 'binlogs', 'escape'));
    const config = writeConfig(dir, 'source: { type: local, root: ./backups }\ndestinations:\n  d: { type: local, root: ./d }\noptions: { quietPeriod: 0s }\n');
    const run = await runCli(['--config', config, 'replicate', NAME]);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /symlink|outside/);
    assert.ok(!existsSync(join(dir, 'd', NAME, 'binlogs', 'escape')));
    assert.ok(!existsSync(join(dir, 'd', NAME, '.offsite', 'manifest.json')));
    noStack(run.stderr);
  });

  it('no backup name and no --latest: exit 2', async () => {
    const run = await runCli(['--config', s.config, 'replicate']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /NAME or --latest/);
  });

  it('--help documents the exit codes', async () => {
    const run = await runCli(['--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /Exit codes:[\s\S]*3 {2}verification or audit found damage[\s\S]*4 {2}partial/);
  });
});

describe('--latest, list and resume (CLI)', () => {
  it('--latest replicates the newest complete backup and list shows the copies', async () => {
    const dir = tempDir('latest');
    const hour = 3_600_000;
    await generateBackup({ root: join(dir, 'backups'), name: 'backup_2025_01_01', seed: 1, totalBytes: 128 * 1024, mtimeMs: Date.now() - 3 * hour });
    await generateBackup({ root: join(dir, 'backups'), name: 'backup_2025_01_02', seed: 2, totalBytes: 128 * 1024, mtimeMs: Date.now() - 2 * hour });
    await generateBackup({ root: join(dir, 'backups'), name: 'backup_2025_01_03', seed: 3, totalBytes: 128 * 1024, breakage: 'no-full-meta', mtimeMs: Date.now() - hour });
    const config = writeConfig(dir, 'source: { type: local, root: ./backups }\ndestinations:\n  d: { type: local, root: ./d }\noptions: { quietPeriod: 1s }\n');
    const run = await runCli(['--config', config, '--json', 'replicate', '--latest']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(jsonOf<{ backup: string }>(run).backup, 'backup_2025_01_02');
    const list = await runCli(['--config', config, '--json', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const rows = jsonOf<{ backups: { name: string; state: string; copies: Record<string, string> }[] }>(list).backups;
    assert.deepEqual(rows.map((b) => [b.name, b.state, b.copies['d']]), [
      ['backup_2025_01_01', 'complete', 'absent'],
      ['backup_2025_01_02', 'complete', 'complete'],
      ['backup_2025_01_03', rows[2]?.state, 'absent'],
    ]);
    assert.notEqual(rows[2]?.state, 'complete');
  });

  it('a partial temp file left by a crash is resumed, sending only the rest', async () => {
    const s = await setup('resume', { destinations: ['disk'] });
    const big = filesUnder(join(s.source, NAME)).map((p) => ({ p, size: readFileSync(join(s.source, NAME, p)).length }))
      .sort((a, b) => b.size - a.size)[0] as { p: string; size: number };
    assert.ok(big.size > 3 * 65536, 'a file of several chunks');
    // What a killed run leaves: the first 3 chunks in the deterministic temp file next to the final name.
    const target = join(s.dir, 'disk', NAME, big.p);
    mkdirSync(join(target, '..'), { recursive: true });
    const tempName = join(target, '..', `.${big.p.split('/').pop()}.offsite-partial`);
    writeFileSync(tempName, readFileSync(join(s.source, NAME, big.p)).subarray(0, 3 * 65536));
    const run = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk', '--concurrency', '1']);
    assert.equal(run.code, 0, run.stderr);
    const d = jsonOf<ReplicateJson>(run).destinations[0];
    assert.equal(d?.bytesResumed, 3 * 65536, 'three chunks found intact and not sent again');
    const total = filesUnder(join(s.source, NAME)).reduce((sum, p) => sum + readFileSync(join(s.source, NAME, p)).length, 0);
    assert.equal(d?.bytesWritten, total - 3 * 65536);
    assert.deepEqual(treeDigest(join(s.dir, 'disk', NAME), ['.offsite/']), treeDigest(join(s.source, NAME)));
    assert.ok(!existsSync(tempName), 'temp file renamed away');
  });
});
