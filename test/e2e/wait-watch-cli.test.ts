/**
 * Starting by itself, through the built CLI on local folders: `replicate --latest --wait` (the
 * post-backup hook), `replicate NAME --wait` giving up, `watch` picking up new backups once each,
 * surviving a restart and a destination outage, never copying a pruned backup back, and the
 * example hook script scripts/examples/milvus-backup-hook.sh.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { createDriver } from '../../src/drivers/index.js';
import { addPruned } from '../../src/ops/state.js';
import { binPath, projectRoot, runCli, tempDir, treeDigest, writeConfig } from '../helpers/cli.js';

const KiB = 1024;

interface Setup { dir: string; config: string; source: string }

function setup(label: string, destinations: readonly string[] = ['disk', 'nas'], quietPeriod = '2s'): Setup {
  const dir = tempDir(label);
  const source = join(dir, 'backups');
  mkdirSync(source, { recursive: true });
  const config = writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    ...destinations.map((d) => `  ${d}: { type: local, root: ./${d} }`),
    `options: { quietPeriod: ${quietPeriod}, chunkSize: 64KiB }`,
  ].join('\n'));
  return { dir, config, source };
}

function manifestPath(s: Setup, destination: string, backup: string): string {
  return join(s.dir, destination, backup, '.offsite', 'manifest.json');
}

/** Polls `check` until it returns true (no fixed sleeps); fails naming `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 60_000, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The CLI as a long-running child whose output can be watched while it runs. */
class LiveCli {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [binPath, ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (d: Buffer) => { this.stdout += d.toString(); });
    this.child.stderr?.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal })));
    live.add(this);
  }

  get output(): string { return `stdout:\n${this.stdout}\nstderr:\n${this.stderr}`; }

  /** The --json log lines so far. */
  events(): WatchLine[] {
    return this.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => {
      try { return JSON.parse(l) as WatchLine; } catch { throw new Error(`not a JSON line: ${l}\n${this.output}`); }
    });
  }

  async stop(signal: NodeJS.Signals, timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try { return await this.exited; } finally { clearTimeout(timer); live.delete(this); }
  }
}

const live = new Set<LiveCli>();
after(() => { for (const l of live) l.child.kill('SIGKILL'); });

interface WatchLine {
  time: string;
  event: string;
  backup?: string;
  destination?: string;
  destinations?: string[];
  status?: string;
  present?: string[];
  pruned?: string[];
  message?: string;
  retryInMs?: number;
  reason?: string;
  copies?: number;
  failing?: string[];
}

const copied = (lines: WatchLine[], backup: string, destination: string): WatchLine[] =>
  lines.filter((l) => l.event === 'copied' && l.backup === backup && l.destination === destination && l.status === 'complete');

describe('replicate --wait (CLI)', () => {
  it('--latest --wait waits for the newest backup, still settling, and replicates that one', async () => {
    const s = setup('wait-latest');
    const older = 'nightly_2025_06_01';
    const newest = 'nightly_2025_06_02';
    await generateBackup({ root: s.source, name: older, seed: 3, totalBytes: 200 * KiB }); // complete, an hour old
    // The newest is being written: everything but meta/full_meta.json, changed just now.
    await generateBackup({ root: s.source, name: newest, seed: 4, totalBytes: 300 * KiB, mtimeMs: Date.now(), breakage: 'no-full-meta' });
    const whole = await generateBackup({ root: join(s.dir, 'finished'), name: newest, seed: 4, totalBytes: 300 * KiB });
    const finalMeta = readFileSync(join(whole.dir, 'meta', 'full_meta.json'));
    assert.deepEqual(treeDigest(join(s.source, newest)), new Map([...treeDigest(whole.dir)].filter(([p]) => p !== 'meta/full_meta.json')),
      'precondition: the settling backup is the finished one without its full_meta.json');

    const run = new LiveCli(['--config', s.config, 'replicate', '--latest', '--wait', '30s', '--to', 'disk,nas']);
    await until('the "waiting" line', () => /waiting up to 30 s for backup nightly_2025_06_02 to be complete/.test(run.stderr), 30_000, () => run.output);
    assert.ok(!existsSync(join(s.dir, 'disk', older)), 'it did not copy the previous backup meanwhile');
    writeFileSync(join(s.source, newest, 'meta', 'full_meta.json'), finalMeta); // milvus-backup finishes
    const { code } = await run.exited;
    live.delete(run);

    assert.equal(code, 0, run.output);
    assert.match(run.stderr, /backup nightly_2025_06_02 is complete after waiting [\d.]+ s/);
    assert.match(run.stdout, /replicated nightly_2025_06_02 from/);
    for (const d of ['disk', 'nas']) {
      const manifest = JSON.parse(readFileSync(manifestPath(s, d, newest), 'utf8')) as { backup: string; files: unknown[] };
      assert.equal(manifest.backup, newest, `${d}: the manifest is for the backup waited for`);
      assert.equal(manifest.files.length, whole.files);
      assert.deepEqual(treeDigest(join(s.dir, d, newest), ['.offsite/']), treeDigest(whole.dir), `${d} holds the finished backup`);
      assert.ok(!existsSync(join(s.dir, d, older)), `${d}: the older backup was not copied`);
    }
  });

  it('NAME --wait gives up at the deadline naming the backup, its state and the reason (exit 1)', async () => {
    const s = setup('wait-timeout');
    const name = 'nightly_2025_07_01';
    // Changed "in the future" (clock skew): never quiet, so it never becomes complete while we wait.
    await generateBackup({ root: s.source, name, seed: 5, totalBytes: 100 * KiB, mtimeMs: Date.now() + 3_600_000 });
    const started = Date.now();
    const run = await runCli(['--config', s.config, 'replicate', name, '--wait', '3s', '--to', 'disk'], { timeoutMs: 60_000 });
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.ok(Date.now() - started >= 3000, 'it waited the whole 3 s');
    assert.match(run.stderr, /offsite: gave up after 3(\.\d)? s waiting for backup nightly_2025_07_01: still incomplete \(last change is \d+ s in the future \(clock skew\?\)/);
    assert.match(run.stderr, /wait longer \(--wait\)/);
    assert.ok(!existsSync(join(s.dir, 'disk', name)), 'nothing was copied');
  });

  it('NAME --wait on a backup that stays failed stops after a quiet period with the reason, not at the deadline', async () => {
    const s = setup('wait-failed');
    const name = 'nightly_2025_07_02';
    await generateBackup({ root: s.source, name, seed: 6, totalBytes: 100 * KiB, breakage: 'no-meta' }); // binlogs, no meta, an hour old
    const started = Date.now();
    const run = await runCli(['--config', s.config, '--json', 'replicate', name, '--wait', '10m', '--to', 'disk'], { timeoutMs: 60_000 });
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.ok(Date.now() - started < 30_000, 'did not wait for the 10 min deadline');
    assert.match(run.stderr, /backup nightly_2025_07_02 will not become complete: meta\/full_meta\.json missing, and no other meta/);
    const json = JSON.parse(run.stdout) as { ok: boolean; error: { code: string } };
    assert.equal(json.error.code, 'E_BACKUP_FAILED');
    assert.ok(!existsSync(join(s.dir, 'disk', name)));
  });
});

describe('watch (CLI)', () => {
  const s = setup('watch');
  const old = 'nightly_2025_08_01';
  const first = 'nightly_2025_08_02';
  const second = 'nightly_2025_08_03';

  it('picks up two new backups and replicates each once; SIGTERM stops it with exit 0', async () => {
    await generateBackup({ root: s.source, name: old, seed: 7, totalBytes: 150 * KiB });
    const pre = await runCli(['--config', s.config, 'replicate', old, '--to', 'disk,nas']);
    assert.equal(pre.code, 0, pre.stderr);

    const watch = new LiveCli(['--config', s.config, '--json', 'watch', '--interval', '1s', '--to', 'disk,nas']);
    await until('the first pass to find the old backup at both', () => watch.stdout.includes('"event":"present"'), 30_000, () => watch.output);
    await generateBackup({ root: s.source, name: first, seed: 8, totalBytes: 200 * KiB, mtimeMs: Date.now() });
    await generateBackup({ root: s.source, name: second, seed: 9, totalBytes: 250 * KiB, mtimeMs: Date.now() });
    const manifests = [first, second].flatMap((b) => ['disk', 'nas'].map((d) => manifestPath(s, d, b)));
    await until('manifests of both new backups at both destinations', () => manifests.every((m) => existsSync(m)), 60_000, () => watch.output);
    await until('the copied events', () => [first, second].every((b) => ['disk', 'nas'].every((d) => copied(watch.events(), b, d).length > 0)), 10_000, () => watch.output);
    // Three more polls (--interval 1s): nothing is copied again.
    await new Promise((r) => setTimeout(r, 3000));
    const { code, signal } = await watch.stop('SIGTERM');

    assert.equal(signal, null, `exited by itself, not killed by the signal\n${watch.output}`);
    assert.equal(code, 0, watch.output);
    const lines = watch.events();
    for (const line of lines) assert.ok(!Number.isNaN(Date.parse(line.time)) && line.time.endsWith('Z'), `ISO time on every line: ${JSON.stringify(line)}`);
    for (const b of [first, second]) {
      for (const d of ['disk', 'nas']) assert.equal(copied(lines, b, d).length, 1, `${b} copied to ${d} exactly once\n${watch.output}`);
      assert.equal(lines.filter((l) => l.event === 'copying' && l.backup === b).length, 1, `one replicate call for ${b}`);
      assert.deepEqual(treeDigest(join(s.dir, 'nas', b), ['.offsite/']), treeDigest(join(s.source, b)));
    }
    assert.equal(lines.filter((l) => l.event === 'copying' && l.backup === old).length, 0, 'the old backup was not copied again');
    assert.deepEqual(lines.find((l) => l.event === 'present' && l.backup === old)?.present, ['disk', 'nas']);
    const stop = lines.at(-1);
    assert.equal(stop?.event, 'stop', watch.output);
    assert.equal(stop?.reason, 'signal');
    assert.equal(stop?.copies, 4);
    assert.deepEqual(stop?.failing, []);
  });

  it('a restarted watch copies nothing, and never copies back a backup that prune removed', async () => {
    const again = await runCli(['--config', s.config, '--json', 'watch', '--once']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const lines = again.stdout.trim().split('\n').map((l) => JSON.parse(l) as WatchLine);
    assert.equal(lines.filter((l) => l.event === 'copying' || l.event === 'copied').length, 0, again.stdout);
    for (const b of [old, first, second]) {
      assert.deepEqual(lines.find((l) => l.event === 'present' && l.backup === b)?.present, ['disk', 'nas'], `${b} found at both`);
    }
    assert.equal(lines.at(-1)?.event, 'stop');

    // `offsite prune` removed `first` from nas (its copy gone, its name in nas/.offsite/pruned.json).
    rmSync(join(s.dir, 'nas', first), { recursive: true, force: true });
    const nas = await createDriver('nas', { type: 'local', root: join(s.dir, 'nas') });
    try { await addPruned(nas, [first]); } finally { await nas.close(); }

    const human = await runCli(['--config', s.config, 'watch', '--once']);
    assert.equal(human.code, 0, human.stdout + human.stderr);
    assert.match(human.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z nightly_2025_08_02: already at disk; pruned from nas \(not copied again\)$/m);
    assert.match(human.stdout, /Z stopped \(one pass done\): 0 copies made; failing: nothing$/m);
    assert.doesNotMatch(human.stdout, /copying/);
    assert.ok(!existsSync(join(s.dir, 'nas', first)), 'the pruned backup was not copied back to nas');
    assert.ok(existsSync(manifestPath(s, 'disk', first)), 'disk keeps its copy');
  });
});

describe('watch with a destination outage (CLI)', () => {
  it('the working destination gets the copy at once; the broken one on a later poll once it is fixed', async () => {
    const s = setup('watch-outage');
    const name = 'nightly_2025_09_01';
    await generateBackup({ root: s.source, name, seed: 10, totalBytes: 200 * KiB });
    const nasRoot = join(s.dir, 'nas');
    writeFileSync(nasRoot, 'not a folder\n'); // the NAS share is not there: its mount point is a file

    const once = await runCli(['--config', s.config, '--json', 'watch', '--once', '--retries', '0']);
    assert.equal(once.code, 4, `one destination failed: partial\n${once.stdout}${once.stderr}`);
    const onceLines = once.stdout.trim().split('\n').map((l) => JSON.parse(l) as WatchLine);
    assert.equal(copied(onceLines, name, 'disk').length, 1, once.stdout);
    const failure = onceLines.find((l) => l.event === 'failed' && l.destination === 'nas');
    assert.ok(failure?.message, `the failure names its cause\n${once.stdout}`);
    assert.equal(failure?.backup, name);
    assert.ok(existsSync(manifestPath(s, 'disk', name)));

    const watch = new LiveCli(['--config', s.config, '--json', 'watch', '--interval', '1s', '--retries', '0']);
    await until('nas failing again', () => watch.events().some((l) => l.event === 'failed' && l.destination === 'nas'), 30_000, () => watch.output);
    const failed = watch.events().find((l) => l.event === 'failed' && l.destination === 'nas');
    assert.ok((failed?.retryInMs ?? 0) >= 1000, `a retry time is given\n${watch.output}`);
    // The share comes back.
    rmSync(nasRoot);
    mkdirSync(nasRoot);
    await until('the copy at nas', () => existsSync(manifestPath(s, 'nas', name)), 60_000, () => watch.output);
    await until('the copied event', () => copied(watch.events(), name, 'nas').length === 1, 10_000, () => watch.output);
    const { code } = await watch.stop('SIGTERM');
    assert.equal(code, 0, `recovered before the stop: exit 0\n${watch.output}`);
    const lines = watch.events();
    assert.equal(lines.filter((l) => l.event === 'copying' && l.destinations?.includes('disk')).length, 0, 'disk, already complete, was not copied to again');
    assert.deepEqual(treeDigest(join(nasRoot, name), ['.offsite/']), treeDigest(join(s.source, name)));
  });
});

describe('scripts/examples/milvus-backup-hook.sh', () => {
  const hook = join(projectRoot, 'scripts', 'examples', 'milvus-backup-hook.sh');
  const generator = join(projectRoot, 'dist', 'scripts', 'gen-backup.js');

  function fakeTools(s: Setup): string {
    const bin = join(s.dir, 'bin');
    mkdirSync(bin);
    // A fake milvus-backup: `create [-n NAME]` writes a backup with the generator, files changed
    // just now (without -n, under a default name like milvus-backup's).
    writeFileSync(join(bin, 'milvus-backup'), [
      '#!/bin/sh',
      '[ "$1" = create ] || { echo "fake milvus-backup: only create" >&2; exit 2; }',
      'shift',
      'name=backup_2025_10_03_02_00_00_000000001',
      'while [ $# -gt 0 ]; do case $1 in -n) name=$2; shift 2 ;; --name=*) name=${1#--name=}; shift ;; *) shift ;; esac; done',
      '[ -n "$FAKE_FAIL" ] && { echo "fake milvus-backup: backup failed" >&2; exit 3; }',
      `exec "${process.execPath}" "${generator}" --root "${s.source}" --name "$name" --size 200KiB --seed 12 --mtime now`,
    ].join('\n'));
    writeFileSync(join(bin, 'offsite'), `#!/bin/sh\nexec "${process.execPath}" "${binPath}" "$@"\n`);
    chmodSync(join(bin, 'milvus-backup'), 0o755);
    chmodSync(join(bin, 'offsite'), 0o755);
    return bin;
  }

  function runHook(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(hook, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`hook timed out\n${stderr}`)); }, 120_000);
      child.on('error', reject);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
  }

  it('makes the backup, waits for it and replicates it', async () => {
    // A quiet period longer than the hook's own start-up (node, the generator, offsite), so the
    // backup is still settling when offsite first looks at it, even on a loaded machine.
    const s = setup('hook', ['disk', 'nas'], '8s');
    const bin = fakeTools(s);
    const name = 'nightly_2025_10_01';
    const run = await runHook(['-n', name], { PATH: `${bin}:${process.env['PATH'] ?? ''}`, OFFSITE_CONFIG: s.config, OFFSITE_TO: 'disk,nas', OFFSITE_WAIT: '1m' });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stderr, /milvus-backup-hook: done: the backup is at every destination/);
    assert.match(run.stderr, /offsite: waiting up to 1 min for backup nightly_2025_10_01 to be complete/, 'it waited for the quiet period');
    for (const d of ['disk', 'nas']) {
      assert.ok(existsSync(manifestPath(s, d, name)), `${d} has the manifest\n${run.stderr}`);
      assert.deepEqual(treeDigest(join(s.dir, d, name), ['.offsite/']), treeDigest(join(s.source, name)));
    }
  });

  it('without a name it replicates the newest backup; a failed milvus-backup stops it with that exit code', async () => {
    const s = setup('hook-fail');
    const bin = fakeTools(s);
    const env = { PATH: `${bin}:${process.env['PATH'] ?? ''}`, OFFSITE_CONFIG: s.config };
    const failed = await runHook(['-n', 'nightly_2025_10_02'], { ...env, FAKE_FAIL: '1' });
    assert.equal(failed.code, 3, failed.stderr);
    assert.match(failed.stderr, /milvus-backup create failed \(exit code 3\); nothing was replicated/);
    assert.ok(!existsSync(join(s.dir, 'disk')), 'offsite did not run');

    await generateBackup({ root: s.source, name: 'nightly_2025_10_01', seed: 13, totalBytes: 100 * KiB }); // an older one
    const latest = await runHook([], env);
    assert.equal(latest.code, 0, latest.stderr);
    assert.match(latest.stderr, /replicating the newest backup \(offsite replicate --latest --wait 10m/);
    const made = 'backup_2025_10_03_02_00_00_000000001';
    for (const d of ['disk', 'nas']) assert.ok(existsSync(manifestPath(s, d, made)), `${d} has the backup just made\n${latest.stderr}`);
    assert.ok(!existsSync(join(s.dir, 'nas', 'nightly_2025_10_01')), 'only the new backup was replicated');

    // `--name=NAME` is recognised too.
    const named = await runHook(['--name=nightly_2025_10_04'], env);
    assert.equal(named.code, 0, named.stderr);
    assert.match(named.stderr, /replicating nightly_2025_10_04 \(offsite replicate nightly_2025_10_04 --wait 10m/);
    assert.ok(existsSync(manifestPath(s, 'nas', 'nightly_2025_10_04')));
  });
});
