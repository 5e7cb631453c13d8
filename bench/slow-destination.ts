/**
 * Benchmark (`npm run bench:slow`, also run by `npm run bench`; not a test): a slow destination
 * next to a fast one (issue 16), in two setups, each on the same generated backup:
 *
 *   local    a fast local destination next to a local one limited to `--rate` (12 MiB/s: a cloud
 *            bucket behind a slow uplink);
 *   servers  a NAS over sshd (test/servers/sshd.ts, unlimited) next to S3 on Ceph RGW
 *            (test/servers/rgw.ts) limited to `--rate` with `bwlimit`; the benchmark starts both
 *            servers on 127.0.0.1 and stops them (by PID) at the end.
 *
 * For each: the fast destination alone, the slow one alone (time to its manifest), then both in
 * one run (time to each manifest, source bytes read, detachments, the chunk pool's peak), and the
 * ratios "in company / alone" next to the targets (fast <= 1.2x, slow <= 1.1x) and "source
 * bytes read / backup" (target <= 2 with one laggard).
 *
 *   npm run bench:slow                                # both setups, 400 MiB, 12 MiB/s
 *   npm run bench:slow -- --setups servers --size 1GiB --rate 20MiB --repeat 3
 *   npm run bench:slow -- --setups servers --trace   # also when each destination was planned,
 *                                                    # detached, done, and its MiB per second
 *
 * Runs in-process through the library API (the CLI does not print per-destination times), with
 * the drivers wrapped as the CLI wraps them (src/runtime/drivers.ts: retry around bandwidth limit).
 * Every run writes into a new folder or bucket; S3 buckets are emptied and deleted after each run
 * and the next run waits until the OSD has freed the data (bench/rgw.ts). Times on a shared
 * machine are noisy: compare within one run only.
 */
import { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateBackup } from '../scripts/gen-backup.js';
import { parseBytes } from '../src/config/units.js';
import { replicate, type ReplicateEvent, type ReplicateResult } from '../src/core/replicate.js';
import { createDriver } from '../src/drivers/index.js';
import { LocalDriver } from '../src/drivers/local/index.js';
import type { Driver } from '../src/drivers/types.js';
import { createRateLimiter } from '../src/drivers/wrappers/index.js';
import { wrapDriver } from '../src/runtime/drivers.js';
import { freshBucket, s3Section } from '../test/s3/server.js';
import { clean, median, positiveInteger } from './lib.js';
import { dropBucket, osdBytesUsed, startRgw, waitForFreedData } from './rgw.js';
import { startSshd } from './sshd.js';

const SETUPS = ['local', 'servers'] as const;
type SetupName = (typeof SETUPS)[number];

const program = new Command('bench:slow')
  .option('--setups <list>', `which setups, comma-separated (${SETUPS.join(', ')})`, SETUPS.join(','))
  .option('--size <size>', 'backup size', '400MiB')
  .option('--rate <rate>', 'write rate of the slow destination, bytes per second', '12MiB')
  .option('--repeat <n>', 'runs of each measurement (the median is reported)', '1')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-slow'))
  .option('--trace', 'print a timeline of the runs with both destinations: when each was planned, detached and done, MiB written per second by each')
  .parse(process.argv);
const opts = program.opts<{ setups: string; size: string; rate: string; repeat: string; dir: string; trace?: boolean }>();
const size = parseBytes(opts.size, '--size');
const rate = parseBytes(opts.rate, '--rate');
const repeat = positiveInteger(opts.repeat, '--repeat');
const setups = opts.setups.split(',').map((s) => s.trim()).filter((s) => s !== '');
for (const s of setups) if (!(SETUPS as readonly string[]).includes(s)) throw new Error(`--setups: unknown setup "${s}" (known: ${SETUPS.join(', ')})`);
const dir = opts.dir;
const BACKUP = 'bench_backup';
const MiB = 1024 * 1024;

/** A destination opened for one run, in a place no earlier run wrote to. */
interface Opened {
  readonly driver: Driver;
  /** Removes what the run wrote there when that must not wait for the end (S3: the gateway's RAM). */
  readonly drop?: () => Promise<void>;
}

/** One setup: how to open its fast and its slow destination, and how to stop its servers. */
interface Setup {
  readonly title: string;
  readonly fast: string;
  readonly slow: string;
  open(which: 'fast' | 'slow'): Promise<Opened>;
  stop(): Promise<void>;
}

let fresh = 0;

/** A destination stacked as the CLI does it, the slow one behind a limiter of `rate`. */
async function opened(name: string, section: Record<string, unknown>, limited: boolean): Promise<Driver> {
  return wrapDriver(await createDriver(name, section), { limiters: limited ? [createRateLimiter(rate)] : [] });
}

function localSetup(): Setup {
  const open = async (which: 'fast' | 'slow'): Promise<Opened> =>
    ({ driver: await opened(which, { type: 'local', root: join(dir, `out-${fresh++}`), maxConcurrency: 8 }, which === 'slow') });
  return { title: `fast local + local limited to ${(rate / MiB).toFixed(1)} MiB/s`, fast: 'fast', slow: 'slow', open, stop: async () => undefined };
}

async function serversSetup(): Promise<Setup> {
  const sshd = await startSshd(join(dir, 'sshd'));
  let rgw: Awaited<ReturnType<typeof startRgw>>;
  try {
    // The gateway holds every object in RAM: room for a run plus what is still being freed.
    rgw = await startRgw(join(dir, 'rgw'), 3 * size);
  } catch (err) {
    await sshd.stop();
    throw err;
  }
  const sftp = sshd.server;
  const { server: s3, client, dir: rgwDir } = rgw;
  const baseline = osdBytesUsed(rgwDir) ?? 0;
  const open = async (which: 'fast' | 'slow'): Promise<Opened> => {
    if (which === 'fast') {
      const root = join(sftp.root, `out-${fresh++}`);
      mkdirSync(root, { recursive: true });
      const section = { type: 'sftp', host: sftp.host, port: sftp.port, username: sftp.username, privateKey: sftp.privateKey, hostKey: sftp.hostKeyFingerprint, root };
      return { driver: await opened('nas', section, false) };
    }
    const bucket = await freshBucket(s3, 'bench-slow');
    return {
      driver: await opened('cloud', s3Section(s3, bucket), true),
      drop: async () => {
        await dropBucket(client, bucket);
        await waitForFreedData(rgwDir, baseline);
      },
    };
  };
  return {
    title: `NAS over sshd + S3 on Ceph RGW limited to ${(rate / MiB).toFixed(1)} MiB/s (bwlimit)`,
    fast: 'nas', slow: 'cloud', open,
    stop: async () => {
      await Promise.all([sshd.stop(), rgw.stop()]);
    },
  };
}

interface Timing {
  /** Seconds from the start to each destination's manifest. */
  readonly done: Map<string, number>;
  readonly result: ReplicateResult;
}

/** `--trace`: MiB written per second by each destination, and when each was detached or done. */
class Trace {
  private readonly seconds = new Map<string, number[]>();
  private readonly notes: string[] = [];
  constructor(private readonly started: number) {}

  event(e: ReplicateEvent): void {
    const at = (performance.now() - this.started) / 1000;
    if (e.type === 'bytes') {
      const row = this.seconds.get(e.destination) ?? [];
      row[Math.floor(at)] = (row[Math.floor(at)] ?? 0) + e.bytes;
      this.seconds.set(e.destination, row);
    } else if (e.type === 'plan') this.notes.push(`${at.toFixed(2)} s ${e.plan.destinations.map((d) => d.destination).join(', ')} planned (prepared, locked)`);
    else if (e.type === 'detached') this.notes.push(`${at.toFixed(2)} s ${e.destination} detached at ${e.path}`);
    else if (e.type === 'destination-done') this.notes.push(`${at.toFixed(2)} s ${e.destination} ${e.status}`);
  }

  print(): void {
    for (const note of this.notes) console.log(`    ${note}`);
    for (const [name, row] of this.seconds) console.log(`    ${name} MiB/s: ${Array.from(row, (b) => ((b ?? 0) / MiB).toFixed(0)).join(' ')}`);
  }
}

async function run(setup: Setup, which: readonly ('fast' | 'slow')[]): Promise<Timing> {
  const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
  const destinations: Opened[] = [];
  try {
    for (const w of which) destinations.push(await setup.open(w));
    const started = performance.now();
    const done = new Map<string, number>();
    const trace = opts.trace && which.length > 1 ? new Trace(started) : undefined;
    const result = await replicate({
      source, backup: BACKUP, destinations: destinations.map((d) => d.driver), quietPeriodMs: 0,
      onEvent: (e) => {
        if (e.type === 'destination-done') done.set(e.destination, (performance.now() - started) / 1000);
        trace?.event(e);
      },
    });
    trace?.print();
    if (result.destinations.some((d) => d.status !== 'complete')) throw new Error(`a destination failed: ${JSON.stringify(result.destinations.map((d) => d.errors))}`);
    return { done, result };
  } finally {
    await Promise.all(destinations.map((d) => d.driver.close().catch(() => undefined)));
    for (const d of destinations) await d.drop?.();
    await source.close();
  }
}

async function measure(setup: Setup, files: number, bytes: number): Promise<void> {
  console.log(`\n${setup.title}: ${files} files, ${(bytes / MiB).toFixed(0)} MiB; median of ${repeat}`);
  const fastAlone: number[] = [];
  const slowAlone: number[] = [];
  const fastTogether: number[] = [];
  const slowTogether: number[] = [];
  const readRatio: number[] = [];
  let last: ReplicateResult | undefined;
  for (let round = 0; round < repeat; round++) {
    // Interleaved: alone, alone, together, each into new folders or buckets.
    fastAlone.push((await run(setup, ['fast'])).done.get(setup.fast) ?? NaN);
    slowAlone.push((await run(setup, ['slow'])).done.get(setup.slow) ?? NaN);
    const both = await run(setup, ['fast', 'slow']);
    fastTogether.push(both.done.get(setup.fast) ?? NaN);
    slowTogether.push(both.done.get(setup.slow) ?? NaN);
    readRatio.push(both.result.bytesRead / both.result.bytes);
    last = both.result;
  }
  const line = (label: string, alone: number, together: number, target: number): void => {
    console.log(`  ${label.padEnd(34)} alone ${alone.toFixed(2)} s   with the other ${together.toFixed(2)} s   ratio ${(together / alone).toFixed(2)}x (target <= ${target}x)`);
  };
  line(`${setup.fast} (fast) to its manifest`, median(fastAlone), median(fastTogether), 1.2);
  line(`${setup.slow} (slow) to its manifest`, median(slowAlone), median(slowTogether), 1.1);
  console.log(`  source bytes read / backup:        ${median(readRatio).toFixed(2)} (target <= 2); detachments ${last?.detachments ?? 0}; chunk pool peak ${((last?.peakBufferBytes ?? 0) / MiB).toFixed(1)} MiB`);
}

async function main(): Promise<void> {
  clean(dir);
  const made = await generateBackup({ root: join(dir, 'source'), name: BACKUP, totalBytes: size, seed: 16 });
  console.log(`slow destination (issue 16): time to each destination's manifest, alone and next to the other`);
  for (const name of setups as SetupName[]) {
    const setup = name === 'local' ? localSetup() : await serversSetup();
    try {
      await measure(setup, made.files, made.bytes);
    } finally {
      await setup.stop();
    }
  }
  clean(dir);
}

await main();
