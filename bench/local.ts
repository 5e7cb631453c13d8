/**
 * Benchmark (`npm run bench`): a generated backup of >= 1 GiB with a realistic mix of file sizes,
 * replicated by offsite to 1 and to 3 local destinations, against `cp -r` and `rclone copy` on
 * the same data in the same run; then 100,000 small files to show that memory does not grow with
 * the file count. Prints times, ratios and our peak RSS.
 *
 *   npm run bench                 # 1 GiB + 100,000 files
 *   npm run bench -- --size 4GiB --small-files 0 --repeat 3
 */
import { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseBytes } from '../src/config/units.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { clean, ensureCommand, median, projectRoot, ratio, timed, type Timed } from './lib.js';

const program = new Command('bench')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--small-files <n>', 'files in the many-small-files backup (0 to skip)', '100000')
  .option('--repeat <n>', 'runs of each measurement (the median is reported)', '2')
  .option('--dir <dir>', 'work folder', join(tmpdir(), 'offsite-bench'))
  .parse(process.argv);
const opts = program.opts<{ size: string; smallFiles: string; repeat: string; dir: string }>();
const repeat = Number(opts.repeat);
const dir = opts.dir;
const bin = join(projectRoot, 'bin', 'offsite.js');

function measure(label: string, before: () => void, run: () => Timed): Timed {
  const runs: Timed[] = [];
  for (let i = 0; i < repeat; i++) { before(); runs.push(run()); }
  const result = { seconds: median(runs.map((r) => r.seconds)), maxRssMb: Math.max(...runs.map((r) => r.maxRssMb)) };
  console.log(`  ${label.padEnd(44)} ${result.seconds.toFixed(2)} s   peak RSS ${result.maxRssMb.toFixed(0)} MB`);
  return result;
}

async function suite(name: string, generate: () => Promise<{ files: number; bytes: number }>): Promise<void> {
  const source = join(dir, 'source');
  clean(dir);
  const made = await generate();
  console.log(`\n${name}: ${made.files} files, ${(made.bytes / 1024 ** 3).toFixed(2)} GiB (median of ${repeat})`);
  const dests = [1, 2, 3].map((i) => join(dir, `dest${i}`));
  const config = join(dir, 'offsite.yaml');
  writeFileSync(config, `source: { type: local, root: ${source} }\ndestinations:\n${dests.map((d, i) => `  d${i + 1}: { type: local, root: ${d} }`).join('\n')}\noptions: { quietPeriod: 0s }\n`);
  const backup = 'bench_backup';
  const offsite = (to: string) => timed(process.execPath, [bin, '--config', config, '--quiet', 'replicate', backup, '--to', to]);
  const cp = measure('cp -r, 1 destination', () => clean(...dests), () => timed('cp', ['-r', join(source, backup), dests[0] as string]));
  const haveRclone = ensureCommand('rclone', 'rclone');
  const rclone = (dest: string) => timed('rclone', ['copy', '--config', '/dev/null', join(source, backup), join(dest, backup)]);
  const r1 = haveRclone ? measure('rclone copy, 1 destination', () => clean(...dests), () => rclone(dests[0] as string)) : undefined;
  const r3 = haveRclone ? measure('rclone copy x3, one after another', () => clean(...dests), () => {
    const runs = dests.map((d) => rclone(d));
    return { seconds: runs.reduce((s, r) => s + r.seconds, 0), maxRssMb: Math.max(...runs.map((r) => r.maxRssMb)) };
  }) : undefined;
  // offsite makes every copy durable (one syncfs) before it writes a manifest; cp and rclone
  // return with the data still in the page cache. The same baselines plus a final `sync -f`:
  const durable = (run: () => Timed, dest: string): Timed => {
    const copied = run();
    const flushed = timed('sync', ['-f', dest]);
    return { seconds: copied.seconds + flushed.seconds, maxRssMb: copied.maxRssMb };
  };
  const r1s = haveRclone ? measure('rclone copy + sync, 1 destination', () => clean(...dests), () => durable(() => rclone(dests[0] as string), dests[0] as string)) : undefined;
  const r3s = haveRclone ? measure('rclone copy + sync x3, one after another', () => clean(...dests), () => {
    const runs = dests.map((d) => durable(() => rclone(d), d));
    return { seconds: runs.reduce((s, r) => s + r.seconds, 0), maxRssMb: Math.max(...runs.map((r) => r.maxRssMb)) };
  }) : undefined;
  const o1 = measure('offsite replicate, 1 destination', () => clean(...dests), () => offsite('d1'));
  const o3 = measure('offsite replicate, 3 destinations at once', () => clean(...dests), () => offsite('d1,d2,d3'));
  console.log(`  ratios: offsite x1 / cp = ${ratio(o1.seconds, cp.seconds)}` +
    (r1 && r3 ? `; offsite x1 / rclone x1 = ${ratio(o1.seconds, r1.seconds)} (target <= 1.00x); offsite x3 / rclone x3 sequential = ${ratio(o3.seconds, r3.seconds)} (target <= 0.60x)` : '; rclone not available'));
  if (r1s && r3s) console.log(`  durable ratios (baselines + sync -f): offsite x1 / rclone+sync x1 = ${ratio(o1.seconds, r1s.seconds)}; offsite x3 / rclone+sync x3 = ${ratio(o3.seconds, r3s.seconds)}`);
  console.log(`  offsite peak RSS: ${o1.maxRssMb.toFixed(0)} MB (x1), ${o3.maxRssMb.toFixed(0)} MB (x3) (target < 200 MB)`);
}

const totalBytes = parseBytes(opts.size, '--size');
await suite('realistic mix', () => generateBackup({ root: join(dir, 'source'), name: 'bench_backup', totalBytes, seed: 42 }));
const smallFiles = Number(opts.smallFiles);
if (smallFiles > 0) {
  await suite('many small files', () => generateBackup({ root: join(dir, 'source'), name: 'bench_backup', files: smallFiles, totalBytes: smallFiles * 4096, largestFileBytes: 64 * 1024, seed: 43 }));
}
clean(dir);
