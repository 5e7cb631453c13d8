/**
 * Deep verify benchmark (`npm run bench:verify`): a generated backup (a realistic mix of file
 * sizes from scripts/gen-backup.ts, 1 GiB by default) is replicated once to a local destination,
 * then, in the same run and on the same files,
 *
 *   (a) `offsite verify NAME --at nas --deep` (every byte read back and hashed);
 *       with `--baseline DIR`, also the offsite of another built checkout (e.g. the last commit,
 *       `git archive HEAD | tar -x -C DIR`, node_modules linked, `npx tsc`);
 *   (b) `cat` of the same files into /dev/null (`find -type f -print0 | xargs -0 cat`): the
 *       speed of reading them, the floor a read-back can reach.
 *
 * The copy is read once before the first run, so every contender reads from the page cache (as a
 * verify soon after a replicate does; a cold read is the disk's speed for both). Contenders run
 * in a rotating order (the machine's load drifts); the median of `--repeat` rounds is reported,
 * with the throughput ratio to `cat` and issue 13's target (>= 0.8x cat's throughput). Each
 * offsite run must report the copy intact (exit 0), and at the end one byte of the copy is
 * flipped and the deep verify must find it (exit 3), so a fast verify that checks nothing fails
 * the benchmark.
 *
 *   npm run bench:verify
 *   npm run bench:verify -- --size 256MiB --repeat 3 --baseline /tmp/offsite-head
 */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { openSync, closeSync, readSync, writeSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { baselineBinOf, loadAverage, median, offsiteBin as bin, positiveInteger, sizesUnder, timed, totalSize, treeDifference, type Timed } from './lib.js';

const program = new Command('bench-verify')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--repeat <n>', 'runs of each contender (the median is reported)', '3')
  .option('--seed <n>', 'generator seed', '42')
  .option('--baseline <dir>', 'another built checkout whose offsite runs too (before/after in one run)')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-verify'))
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; seed: string; dir: string; baseline?: string }>();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
/** Issue 13: deep verify at >= 0.8x the throughput of `cat` of the same files. */
const TARGET = 0.8;
const baselineBin = baselineBinOf(opts.baseline);
const repeat = positiveInteger(opts.repeat, '--repeat');
const totalBytes = parseBytes(opts.size, '--size');

interface Contender {
  readonly label: string;
  readonly run: () => Timed;
}

/** `offsite verify --deep` with the given launcher; its exit code (0 intact, 3 damage). */
function deepVerify(launcher: string, config: string): { code: number | null; stdout: string } {
  const run = spawnSync(process.execPath, [launcher, '--config', config, '--quiet', 'verify', BACKUP, '--at', 'nas', '--deep'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return { code: run.status, stdout: run.stdout.toString() + run.stderr.toString() };
}

async function main(): Promise<void> {
  const dir = opts.dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    await generateBackup({ root: join(dir, 'source'), name: BACKUP, totalBytes, seed: Number(opts.seed) });
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
      'destinations:',
      `  nas: { type: local, root: ${JSON.stringify(join(dir, 'copy'))} }`,
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));
    timed(process.execPath, [bin, '--config', config, '--quiet', 'replicate', BACKUP, '--to', 'nas']);
    const copy = join(dir, 'copy', BACKUP);
    const expected = sizesUnder(join(dir, 'source', BACKUP));
    const problem = treeDifference(expected, sizesUnder(copy, '.offsite'));
    if (problem) throw new Error(`the copy differs from the source: ${problem}`);
    const bytes = totalSize(expected);
    // The same files offsite reads back: the copy's, without offsite's own folder (its manifest is read by both anyway: a few KB).
    const cat = ['sh', '-c', `cd "$1" && find . -path ./.offsite -prune -o -type f -print0 | xargs -0 cat > /dev/null`, 'cat', copy] as const;
    timed(cat[0], cat.slice(1)); // into the page cache

    const contenders: Contender[] = [
      { label: 'cat (find | xargs cat > /dev/null)', run: () => timed(cat[0], cat.slice(1)) },
      { label: 'offsite verify --deep', run: () => timed(process.execPath, [bin, '--config', config, '--quiet', 'verify', BACKUP, '--at', 'nas', '--deep']) },
      ...(baselineBin !== undefined ? [{ label: 'baseline verify --deep', run: () => timed(process.execPath, [baselineBin, '--config', config, '--quiet', 'verify', BACKUP, '--at', 'nas', '--deep']) }] : []),
    ];
    console.log(`\nload average before: ${loadAverage()}`);
    console.log(`${expected.size} files, ${(bytes / MiB).toFixed(0)} MiB (largest ${(Math.max(...expected.values()) / MiB).toFixed(1)} MiB), local copy in the page cache; ` +
      `${contenders.length} contenders, median of ${repeat}, rotating order`);
    if (baselineBin !== undefined) console.log(`baseline: ${baselineBin}`);
    const runs: Timed[][] = contenders.map(() => []);
    for (let round = 0; round < repeat; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const i = (round + k) % contenders.length;
        const contender = contenders[i] as Contender;
        const result = contender.run(); // a verify that finds damage exits 3: `timed` throws
        runs[i]?.push(result);
        console.log(`  round ${round + 1}: ${contender.label.padEnd(40)} ${result.seconds.toFixed(2).padStart(6)} s`);
      }
    }

    console.log(`\nresults (${(bytes / MiB).toFixed(0)} MiB, median of ${repeat}):`);
    const seconds = runs.map((r) => median(r.map((t) => t.seconds)));
    const cpu = runs.map((r) => median(r.map((t) => t.cpuSeconds)));
    for (const [i, contender] of contenders.entries()) {
      const s = seconds[i] as number;
      const list = runs[i] ?? [];
      console.log(`  ${contender.label.padEnd(40)} ${s.toFixed(2).padStart(6)} s ${(bytes / MiB / s).toFixed(0).padStart(6)} MiB/s  CPU ${(cpu[i] as number).toFixed(2).padStart(5)} s  ` +
        `peak RSS ${Math.max(...list.map((t) => t.maxRssMb)).toFixed(0).padStart(4)} MB  (runs: ${list.map((t) => t.seconds.toFixed(2)).join(', ')} s)`);
    }
    const catSeconds = seconds[0] as number;
    console.log(`\nagainst cat (${catSeconds.toFixed(2)} s):`);
    for (let i = 1; i < contenders.length; i++) {
      console.log(`  ${contenders[i]?.label}: throughput ${(catSeconds / (seconds[i] as number)).toFixed(2)}x cat's (target >= ${TARGET.toFixed(2)}x), time ${((seconds[i] as number) / catSeconds).toFixed(2)}x`);
    }
    if (baselineBin !== undefined) console.log(`  offsite/baseline: time ${((seconds[1] as number) / (seconds[2] as number)).toFixed(2)}x, CPU ${((cpu[1] as number) / (cpu[2] as number)).toFixed(2)}x`);

    // A fast verify must still find damage: one byte of the largest file flipped in place.
    const largest = [...expected.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
    const fd = openSync(join(copy, largest[0]), 'r+');
    const byte = Buffer.alloc(1);
    const at = Math.floor(largest[1] / 2);
    readSync(fd, byte, 0, 1, at);
    byte[0] = (byte[0] as number) ^ 0x01;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
    const damaged = deepVerify(bin, config);
    if (damaged.code !== 3) throw new Error(`a flipped byte in ${largest[0]} was not found by offsite verify --deep (exit ${damaged.code}): ${damaged.stdout.slice(-1000)}`);
    console.log(`  a flipped byte in ${largest[0]} (${(largest[1] / MiB).toFixed(1)} MiB, offset ${at}): deep verify exits 3, as it must`);
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
