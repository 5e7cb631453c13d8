/**
 * Benchmark (`npm run bench`): a generated backup of >= 1 GiB with a realistic mix of file sizes,
 * replicated by offsite to 1 and to 3 local destinations, against `cp -r` and `rclone copy` on
 * the same data in the same run; then 100,000 small files to show that memory does not grow with
 * the file count. Prints times, ratios and our peak RSS.
 *
 *   npm run bench                 # 1 GiB + 100,000 files
 *   npm run bench -- --size 4GiB --small-files 0 --repeat 3
 *   npm run bench -- --size 0 --small-files 25000 --one-destination --compare /tmp/old/bin/offsite.js
 *
 * Then it runs bench/slow-destination.ts (also `npm run bench:slow`) in a child process: a fast
 * destination next to a slow one, local and over sshd + Ceph RGW, time to each manifest alone and
 * in company (`--slow-size`, 400 MiB by default; 0 skips it; `--repeat` is passed on).
 *
 * `--compare` also times another offsite build (e.g. a checkout of an older commit, built) in the
 * same runs, so that a change is measured against its baseline on the same noisy machine. The
 * measurements are interleaved, each into new folders (see measureAll); times still vary a lot
 * on a shared machine: compare within one run of the benchmark only.
 */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseBytes } from '../src/config/units.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { clean, ensureCommand, median, offsiteBin as bin, ratio, timed, type Timed } from './lib.js';

const program = new Command('bench')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--small-files <n>', 'files in the many-small-files backup (0 to skip)', '100000')
  .option('--repeat <n>', 'runs of each measurement (the median is reported)', '2')
  .option('--dir <dir>', 'work folder', join(tmpdir(), 'offsite-bench'))
  .option('--one-destination', 'skip the 3-destination measurements', false)
  .option('--slow-size <size>', 'backup size of the slow-destination benchmark run at the end (0 to skip)', '400MiB')
  .option('--compare <bin>', 'also time this offsite launcher (bin/offsite.js of another build)')
  .parse(process.argv);
const opts = program.opts<{ size: string; smallFiles: string; repeat: string; dir: string; oneDestination: boolean; slowSize: string; compare?: string }>();
const repeat = Number(opts.repeat);
const dir = opts.dir;

interface Measurement {
  readonly label: string;
  /** Runs once into fresh destination folders (three, for the 3-destination measurements). */
  readonly run: (dests: readonly string[]) => Timed;
}

/**
 * Runs every measurement `repeat` times, interleaved (round 1 of each, then round 2...), each
 * into destination folders that did not exist before, and deletes them all only at the end:
 * deleting a copy just before the next run made ext4 skip the freshly freed inodes on every
 * create (they are "recently deleted" for a minute or more), which slowed whichever tool ran
 * next and favoured the first one. Reports the median time and the largest peak RSS.
 */
function measureAll(measurements: readonly Measurement[]): Map<string, Timed> {
  const runs = new Map<string, Timed[]>(measurements.map((m) => [m.label, []]));
  let fresh = 0;
  const outputs: string[] = [];
  for (let round = 0; round < repeat; round++) {
    for (const m of measurements) {
      const dests = [1, 2, 3].map(() => join(dir, `out-${fresh++}`));
      outputs.push(...dests);
      runs.get(m.label)?.push(m.run(dests));
    }
  }
  clean(...outputs);
  const results = new Map<string, Timed>();
  for (const m of measurements) {
    const timedRuns = runs.get(m.label) ?? [];
    const result = { seconds: median(timedRuns.map((r) => r.seconds)), cpuSeconds: median(timedRuns.map((r) => r.cpuSeconds)), maxRssMb: Math.max(...timedRuns.map((r) => r.maxRssMb)) };
    console.log(`  ${m.label.padEnd(44)} ${result.seconds.toFixed(2)} s   CPU ${result.cpuSeconds.toFixed(2)} s   peak RSS ${result.maxRssMb.toFixed(0)} MB   (runs: ${timedRuns.map((r) => r.seconds.toFixed(1)).join(', ')})`);
    results.set(m.label, result);
  }
  return results;
}

async function suite(name: string, generate: () => Promise<{ files: number; bytes: number }>): Promise<void> {
  const source = join(dir, 'source');
  clean(dir);
  const made = await generate();
  console.log(`\n${name}: ${made.files} files, ${(made.bytes / 1024 ** 3).toFixed(2)} GiB (median of ${repeat}, interleaved)`);
  const backup = 'bench_backup';
  const config = join(dir, 'offsite.yaml');
  const offsite = (dests: readonly string[], count: number, launcher = bin): Timed => {
    writeFileSync(config, `source: { type: local, root: ${source} }\ndestinations:\n${dests.map((d, i) => `  d${i + 1}: { type: local, root: ${d} }`).join('\n')}\noptions: { quietPeriod: 0s }\n`);
    return timed(process.execPath, [launcher, '--config', config, '--quiet', 'replicate', backup, '--to', dests.slice(0, count).map((_, i) => `d${i + 1}`).join(',')]);
  };
  const haveRclone = ensureCommand('rclone', 'rclone');
  const rclone = (dest: string) => timed('rclone', ['copy', '--config', '/dev/null', join(source, backup), join(dest, backup)]);
  // offsite makes every copy durable (syncfs) before it records files and before it writes a
  // manifest; cp and rclone return with the data still in the page cache. The same baselines
  // plus a final `sync -f`:
  const durable = (run: () => Timed, dest: string): Timed => {
    const copied = run();
    const flushed = timed('sync', ['-f', dest]);
    return { seconds: copied.seconds + flushed.seconds, cpuSeconds: copied.cpuSeconds + flushed.cpuSeconds, maxRssMb: copied.maxRssMb };
  };
  const sequential = (dests: readonly string[], one: (dest: string) => Timed): Timed => {
    const each = dests.map(one);
    return { seconds: each.reduce((sum, r) => sum + r.seconds, 0), cpuSeconds: each.reduce((sum, r) => sum + r.cpuSeconds, 0), maxRssMb: Math.max(...each.map((r) => r.maxRssMb)) };
  };
  const three = !opts.oneDestination;
  const measurements: Measurement[] = [
    { label: 'cp -r, 1 destination', run: (d) => timed('cp', ['-r', join(source, backup), d[0] as string]) },
    ...(haveRclone ? [
      { label: 'rclone copy, 1 destination', run: (d: readonly string[]) => rclone(d[0] as string) },
      { label: 'rclone copy + sync, 1 destination', run: (d: readonly string[]) => durable(() => rclone(d[0] as string), d[0] as string) },
      ...(three ? [
        { label: 'rclone copy x3, one after another', run: (d: readonly string[]) => sequential(d, rclone) },
        { label: 'rclone copy + sync x3, one after another', run: (d: readonly string[]) => sequential(d, (one) => durable(() => rclone(one), one)) },
      ] : []),
    ] : []),
    { label: 'offsite replicate, 1 destination', run: (d) => offsite(d, 1) },
    ...(opts.compare ? [{ label: 'offsite (--compare build), 1 destination', run: (d: readonly string[]) => offsite(d, 1, opts.compare) }] : []),
    ...(three ? [{ label: 'offsite replicate, 3 destinations at once', run: (d: readonly string[]) => offsite(d, 3) }] : []),
    ...(three && opts.compare ? [{ label: 'offsite (--compare build), 3 destinations', run: (d: readonly string[]) => offsite(d, 3, opts.compare) }] : []),
  ];
  const r = measureAll(measurements);
  const get = (label: string): Timed | undefined => r.get(label);
  const cp = get('cp -r, 1 destination') as Timed;
  const o1 = get('offsite replicate, 1 destination') as Timed;
  const o3 = get('offsite replicate, 3 destinations at once');
  const c1 = get('offsite (--compare build), 1 destination');
  const c3 = get('offsite (--compare build), 3 destinations');
  const r1 = get('rclone copy, 1 destination');
  const r3 = get('rclone copy x3, one after another');
  const r1s = get('rclone copy + sync, 1 destination');
  const r3s = get('rclone copy + sync x3, one after another');
  console.log(`  ratios: offsite x1 / cp = ${ratio(o1.seconds, cp.seconds)}` +
    (r1 ? `; offsite x1 / rclone x1 = ${ratio(o1.seconds, r1.seconds)} (target <= 1.00x)` : '; rclone not available') +
    (r3 && o3 ? `; offsite x3 / rclone x3 sequential = ${ratio(o3.seconds, r3.seconds)} (target <= 0.60x)` : '') +
    (c1 ? `; offsite x1 / --compare build x1 = ${ratio(o1.seconds, c1.seconds)}` : '') +
    (c3 && o3 ? `; offsite x3 / --compare build x3 = ${ratio(o3.seconds, c3.seconds)}` : ''));
  if (r1s) {
    console.log(`  durable ratios (baselines + sync -f): offsite x1 / rclone+sync x1 = ${ratio(o1.seconds, r1s.seconds)} (target <= 0.80x)` + (r3s && o3 ? `; offsite x3 / rclone+sync x3 = ${ratio(o3.seconds, r3s.seconds)} (target <= 0.50x)` : '') +
      (c1 ? `; --compare build x1 / rclone+sync x1 = ${ratio(c1.seconds, r1s.seconds)}` : '') + (r3s && c3 ? `; --compare build x3 / rclone+sync x3 = ${ratio(c3.seconds, r3s.seconds)}` : ''));
  }
  console.log(`  offsite peak RSS: ${o1.maxRssMb.toFixed(0)} MB (x1)${o3 ? `, ${o3.maxRssMb.toFixed(0)} MB (x3)` : ''}${c1 ? `; --compare build ${c1.maxRssMb.toFixed(0)} MB (x1)` : ''} (target < 200 MB)`);
}

const totalBytes = parseBytes(opts.size, '--size');
if (totalBytes > 0) await suite('realistic mix', () => generateBackup({ root: join(dir, 'source'), name: 'bench_backup', totalBytes, seed: 42 }));
const smallFiles = Number(opts.smallFiles);
if (smallFiles > 0) {
  await suite('many small files', () => generateBackup({ root: join(dir, 'source'), name: 'bench_backup', files: smallFiles, totalBytes: smallFiles * 4096, largestFileBytes: 64 * 1024, seed: 43 }));
}
clean(dir);

// The slow-destination benchmark (issue 16), in its own process.
if (parseBytes(opts.slowSize, '--slow-size') > 0) {
  const slow = spawnSync(process.execPath, [fileURLToPath(new URL('./slow-destination.js', import.meta.url)), '--size', opts.slowSize, '--repeat', opts.repeat], { stdio: 'inherit' });
  if (slow.status !== 0) throw new Error(`the slow-destination benchmark failed (exit ${slow.status ?? slow.signal})`);
}
