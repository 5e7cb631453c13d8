/**
 * Benchmark (`npm run bench:slow`, not a test): a fast local destination next to one limited to
 * 12 MiB/s (a cloud bucket behind a slow uplink), issue 16. Measures, on one generated backup:
 *   - the fast destination alone, the slow destination alone (time to its manifest);
 *   - both in one run: time to each destination's manifest, source bytes read, detachments, the
 *     chunk pool's peak;
 * and prints the ratios "in company / alone" (targets: fast <= 1.2x, slow <= 1.1x) and
 * "source bytes read / backup" (target <= 2 with one laggard).
 *
 *   npm run bench:slow                      # 400 MiB, 12 MiB/s
 *   npm run bench:slow -- --size 1GiB --rate 20MiB --repeat 3
 *
 * Runs in-process through the library API (the CLI does not print per-destination times). Times
 * on a shared machine are noisy: compare within one run only.
 */
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateBackup } from '../scripts/gen-backup.js';
import { parseBytes } from '../src/config/units.js';
import { replicate, type ReplicateResult } from '../src/core/replicate.js';
import { LocalDriver } from '../src/drivers/local/index.js';
import type { Driver } from '../src/drivers/types.js';
import { createRateLimiter, withBandwidthLimit } from '../src/drivers/wrappers/index.js';
import { clean, median } from './lib.js';

const program = new Command('bench:slow')
  .option('--size <size>', 'backup size', '400MiB')
  .option('--rate <rate>', 'write rate of the slow destination, bytes per second', '12MiB')
  .option('--repeat <n>', 'runs of each measurement (the median is reported)', '1')
  .option('--dir <dir>', 'work folder', join(tmpdir(), 'offsite-bench-slow'))
  .parse(process.argv);
const opts = program.opts<{ size: string; rate: string; repeat: string; dir: string }>();
const size = parseBytes(opts.size, '--size');
const rate = parseBytes(opts.rate, '--rate');
const repeat = Number(opts.repeat);
const dir = opts.dir;
const BACKUP = 'bench_backup';
let fresh = 0;

interface Timing {
  /** Seconds from the start to each destination's manifest. */
  readonly done: Map<string, number>;
  readonly result: ReplicateResult;
}

async function run(which: readonly ('fast' | 'slow')[]): Promise<Timing> {
  const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
  const destinations: Driver[] = which.map((name) => {
    const local = new LocalDriver(name, { root: join(dir, `out-${fresh++}`), maxConcurrency: 8 });
    return name === 'slow' ? withBandwidthLimit(local, [createRateLimiter(rate)]) : local;
  });
  const started = performance.now();
  const done = new Map<string, number>();
  const result = await replicate({
    source, backup: BACKUP, destinations, quietPeriodMs: 0,
    onEvent: (e) => { if (e.type === 'destination-done') done.set(e.destination, (performance.now() - started) / 1000); },
  });
  if (result.destinations.some((d) => d.status !== 'complete')) throw new Error(`a destination failed: ${JSON.stringify(result.destinations.map((d) => d.errors))}`);
  return { done, result };
}

async function main(): Promise<void> {
  clean(dir);
  const made = await generateBackup({ root: join(dir, 'source'), name: BACKUP, totalBytes: size, seed: 16 });
  console.log(`slow destination: ${made.files} files, ${(made.bytes / 1024 ** 2).toFixed(0)} MiB; slow destination limited to ${(rate / 1024 ** 2).toFixed(1)} MiB/s; median of ${repeat}`);
  const fastAlone: number[] = [];
  const slowAlone: number[] = [];
  const fastTogether: number[] = [];
  const slowTogether: number[] = [];
  const readRatio: number[] = [];
  let last: ReplicateResult | undefined;
  for (let round = 0; round < repeat; round++) {
    // Interleaved: alone, alone, together, each into new folders.
    fastAlone.push((await run(['fast'])).done.get('fast') ?? NaN);
    slowAlone.push((await run(['slow'])).done.get('slow') ?? NaN);
    const both = await run(['fast', 'slow']);
    fastTogether.push(both.done.get('fast') ?? NaN);
    slowTogether.push(both.done.get('slow') ?? NaN);
    readRatio.push(both.result.bytesRead / both.result.bytes);
    last = both.result;
  }
  const line = (label: string, alone: number, together: number, target: number): void => {
    console.log(`  ${label.padEnd(34)} alone ${alone.toFixed(2)} s   with the other ${together.toFixed(2)} s   ratio ${(together / alone).toFixed(2)}x (target <= ${target}x)`);
  };
  line('fast destination to its manifest', median(fastAlone), median(fastTogether), 1.2);
  line('slow destination to its manifest', median(slowAlone), median(slowTogether), 1.1);
  console.log(`  source bytes read / backup:        ${median(readRatio).toFixed(2)} (target <= 2); detachments ${last?.detachments ?? 0}; chunk pool peak ${((last?.peakBufferBytes ?? 0) / 1024 ** 2).toFixed(1)} MiB`);
  if (existsSync(dir)) clean(dir);
}

await main();
