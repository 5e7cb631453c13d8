/**
 * Benchmark of the read side's memory (`npm run bench:read`, issue 13): peak RSS of `list`,
 * `verify`, `verify --deep`, `audit`, `pull` and `prune` on copies of a backup of 100,000 small
 * files, several such copies at one local destination, against the target of 200 MB.
 *
 *   npm run bench:read                                   # 100,000 files, 3 copies
 *   npm run bench:read -- --files 2000 --copies 2        # a quick smoke run
 *   npm run bench:read -- --baseline /tmp/offsite-head   # the same commands with another built checkout too
 *   npm run bench:read -- --keep                         # keep the work folder; a later --keep run reuses it
 *   npm run bench:read -- --keep --only pull --files 50000   # one command only (names: list, verify, deep, audit, pull, prune)
 *
 * The copies: the generated backup is replicated once; the others are hard-linked trees under
 * other backup names (one day apart, so that `prune --keep-daily 1` removes all but the newest),
 * each with the manifest of the first rewritten for its name (the same files, so their recorded
 * fingerprints hold and quick checks read no data). Each command runs once, as a child process,
 * under GNU time: a single run's peak RSS is meaningful even on a loaded machine (the time is not).
 */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildManifestBody, decodeManifest, encodeManifest, type ManifestBody } from '../src/manifest/manifest.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { baselineBinOf, clean, offsiteBin as bin, timed, type Timed } from './lib.js';

const TARGET_MB = 200;

const program = new Command('bench:read')
  .option('--files <n>', 'files in the backup', '100000')
  .option('--copies <n>', 'copies of it at the destination', '3')
  .option('--dir <dir>', 'work folder', join(tmpdir(), 'offsite-bench-read'))
  .option('--baseline <dir>', 'another built checkout whose offsite runs the same commands (before/after in one run)')
  .option('--keep', 'keep the work folder (and reuse one kept by an earlier run with the same --files and --copies)')
  .option('--only <commands>', 'run only these commands, comma-separated (list, verify, deep, audit, pull, prune); implies no real prune at the end')
  .parse(process.argv);
const opts = program.opts<{ files: string; copies: string; dir: string; baseline?: string; keep?: boolean; only?: string }>();
const only = opts.only === undefined ? undefined : new Set(opts.only.split(',').map((c) => c.trim()));
const baselineBin = baselineBinOf(opts.baseline);
const files = Number(opts.files);
const copies = Math.max(1, Number(opts.copies));
const dir = opts.dir;

/** Backup names one day apart; the last is the newest. */
const names = Array.from({ length: copies }, (_, i) => `backup_2026_01_${String(i + 1).padStart(2, '0')}_00_00_00_000`);
const newest = names[names.length - 1] as string;

function run(command: string, args: readonly string[]): void {
  const done = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (done.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${done.stderr.toString().slice(-2000)}`);
}

/** The copy of `from` at the destination, hard-linked under `to`, with a manifest of its own. */
async function linkCopy(root: string, from: string, to: string, backupTime: string): Promise<void> {
  run('cp', ['-al', join(root, from), join(root, to)]);
  const key = join(root, to, '.offsite', 'manifest.json');
  const manifest = await decodeManifest(readFileSync(key), key);
  const { digest: _digest, ...body } = manifest;
  const renamed: ManifestBody = buildManifestBody({ ...body, kind: 'complete', backup: to, backupTime, createdAt: new Date(body.createdAt), files: body.files });
  const { bytes } = await encodeManifest(renamed);
  run('rm', ['-f', key]); // a new inode: the hard-linked one is the first copy's
  writeFileSync(key, bytes);
}

const config = join(dir, 'offsite.yaml');
/** What a kept work folder was set up with: reused only when it matches. */
const setupMark = join(dir, 'setup.json');
const setup = JSON.stringify({ files, copies });
const reuse = opts.keep === true && existsSync(setupMark) && readFileSync(setupMark, 'utf8') === setup;
if (!reuse) {
  clean(dir);
  mkdirSync(dir, { recursive: true });
  const made = await generateBackup({ root: join(dir, 'source'), name: names[0] as string, files, totalBytes: files * 1024, largestFileBytes: 4096, seed: 13 });
  writeFileSync(config, `source: { type: local, root: ${join(dir, 'source')} }\ndestinations:\n  disk: { type: local, root: ${join(dir, 'disk')} }\noptions: { quietPeriod: 0s }\n`);
  console.log(`read-side memory: ${made.files} files, ${copies} cop${copies === 1 ? 'y' : 'ies'} at one local destination (peak RSS of one run each; target < ${TARGET_MB} MB)`);
  const replicated = timed(process.execPath, [bin, '--config', config, '--quiet', 'replicate', names[0] as string, '--to', 'disk']);
  console.log(`  (setup: replicate ${replicated.seconds.toFixed(1)} s, peak RSS ${replicated.maxRssMb.toFixed(0)} MB)`);
  for (const [i, name] of names.entries()) {
    if (i === 0) continue;
    run('cp', ['-al', join(dir, 'source', names[0] as string), join(dir, 'source', name)]);
    await linkCopy(join(dir, 'disk'), names[0] as string, name, `2026-01-${String(i + 1).padStart(2, '0')}T00:00:00.000Z`);
  }
  writeFileSync(setupMark, setup);
} else {
  console.log(`read-side memory: ${files} files, ${copies} copies (reusing the kept ${dir}; peak RSS of one run each; target < ${TARGET_MB} MB)`);
}

interface Step {
  /** The name `--only` knows it by. */
  readonly name: string;
  readonly label: string;
  readonly args: (restore: string) => readonly string[];
}
const allSteps: Step[] = [
  { name: 'list', label: 'list', args: () => ['list'] },
  { name: 'verify', label: 'verify (quick)', args: () => ['verify', newest, '--at', 'disk'] },
  { name: 'deep', label: 'verify --deep', args: () => ['verify', newest, '--at', 'disk', '--deep'] },
  { name: 'audit', label: `audit (rotation: 1/7 of each of ${copies} copies read back)`, args: () => ['audit'] },
  { name: 'pull', label: 'pull to a folder', args: (restore) => ['pull', newest, '--from', 'disk', '--to', restore] },
  { name: 'prune', label: 'prune --keep-daily 1 --dry-run', args: () => ['prune', '--keep-daily', '1', '--dry-run'] },
];
const unknown = [...(only ?? [])].filter((name) => !allSteps.some((s) => s.name === name));
if (unknown.length > 0) throw new Error(`--only: unknown command(s) ${unknown.join(', ')}; known: ${allSteps.map((s) => s.name).join(', ')}`);
const steps = only ? allSteps.filter((s) => only.has(s.name)) : allSteps;

const builds: { label: string; launcher: string }[] = [{ label: 'this build', launcher: bin }, ...(baselineBin !== undefined ? [{ label: 'baseline', launcher: baselineBin }] : [])];
const results = new Map<string, Timed>();
let restores = 0;
for (const step of steps) {
  for (const build of builds) {
    const restore = join(dir, `restore-${restores++}`);
    const result = timed(process.execPath, [build.launcher, '--config', config, '--quiet', ...step.args(restore)]);
    results.set(`${build.label}: ${step.label}`, result);
    clean(restore);
    const verdict = result.maxRssMb < TARGET_MB ? 'ok' : 'OVER';
    console.log(`  ${`${step.label}${builds.length > 1 ? ` [${build.label}]` : ''}`.padEnd(66)} peak RSS ${result.maxRssMb.toFixed(0).padStart(5)} MB  ${verdict}   (${result.seconds.toFixed(1)} s)`);
  }
}
// Last, as it removes copies: the real prune (not with --keep, which keeps the copies for the next run).
let worst = Math.max(...[...results].filter(([k]) => k.startsWith('this build')).map(([, r]) => r.maxRssMb));
if (opts.keep === true || only !== undefined) {
  console.log(`  (prune --keep-daily 1 without --dry-run skipped: ${only !== undefined ? '--only' : `--keep keeps the copies in ${dir}`})`);
} else {
  const pruned = timed(process.execPath, [bin, '--config', config, '--quiet', 'prune', '--keep-daily', '1']);
  console.log(`  ${'prune --keep-daily 1 (removes the older copies)'.padEnd(66)} peak RSS ${pruned.maxRssMb.toFixed(0).padStart(5)} MB  ${pruned.maxRssMb < TARGET_MB ? 'ok' : 'OVER'}   (${pruned.seconds.toFixed(1)} s)`);
  worst = Math.max(worst, pruned.maxRssMb);
}
console.log(`  largest peak RSS of this build: ${worst.toFixed(0)} MB (target < ${TARGET_MB} MB): ${worst < TARGET_MB ? 'met' : 'NOT met'}`);
if (opts.keep !== true) clean(dir);
