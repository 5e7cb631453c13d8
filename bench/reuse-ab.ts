/**
 * Quick A/B of a reuse night at s3 (issue 12), for changes to its start-up or copy phase: bench/reuse.ts
 * measures a round with the full send, rclone and the floor beside the reuse night (a few minutes
 * per round on this machine); this measures only the reuse night, many times, in the same minutes
 * for every checkout compared.
 *
 * Two nights are generated (scripts/gen-nightly.ts), a throwaway Ceph RGW is started behind the
 * same counting proxy (bench/proxy.ts, `--delay` and `--rate` for a WAN-like link), and night 1 is
 * replicated once into one bucket. Then, each round, every checkout replicates night 2 into that
 * bucket (the order turns each round), each run starting from the same state: night 2's objects and
 * open uploads are removed after each run, and the manifest cache is put back as night 1 left it.
 * Each run is timed from spawn to exit (GNU time: client CPU); the gateway's CPU meanwhile is read
 * from /proc; with `--trace-s3` (bench/s3-trace.ts) also when its first request and first
 * server-side copy went out and its CPU before them: the part of a reuse night that comes before
 * the server has anything to do.
 *
 *   npm run build && node dist/bench/reuse-ab.js --compare-with ../offsite-main --rounds 6
 *   node dist/bench/reuse-ab.js --size 256MiB --delay 10 --rate 20MiB --trace-s3 --compare-with ../offsite-main
 *
 * Medians per checkout, and this checkout's over the other's. The machine is shared: compare only
 * runs of the same invocation, and prefer the CPU figures when the load is high.
 */
import { AbortMultipartUploadCommand, CreateBucketCommand, DeleteObjectsCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBytes } from '../src/config/units.js';
import { parsePercent } from '../scripts/gen-backup.js';
import { generateChain } from '../scripts/gen-nightly.js';
import { baselineBinOf, cpuOf, loadAverage, median, offsiteBin, positiveInteger, silenceSdkVersionWarning, timedAsync } from './lib.js';
import { startCountingProxy } from './proxy.js';
import { s3ConfigSection, s3SecretsEnv, startRgw } from './rgw.js';
import type { S3TraceSummary } from './s3-trace.js';

const program = new Command('bench-reuse-ab')
  .option('--size <size>', 'size of night 1', '256MiB')
  .option('--changed <percent>', 'share of night 2\'s bytes that are new', '10%')
  .option('--seed <n>', 'generator seed', '42')
  .option('--rounds <n>', 'rounds (each checkout replicates night 2 once per round)', '4')
  .option('--delay <ms>', 'one-way delay the proxy adds each way', '10')
  .option('--rate <bytes>', 'most bytes per second the proxy carries each way', '20MiB')
  .option('--compare-with <checkout>', 'another built checkout of offsite (e.g. a worktree of main)')
  .option('--trace-s3', 'time the first request and the first server-side copy of each run (bench/s3-trace.ts)')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-reuse-ab'))
  .parse(process.argv);
const opts = program.opts<{ size: string; changed: string; seed: string; rounds: string; delay: string; rate: string; compareWith?: string; traceS3?: boolean; dir: string }>();
silenceSdkVersionWarning();

const NIGHT1 = 'backup_2026_01_01_02_00_00';
const NIGHT2 = 'backup_2026_01_02_02_00_00';
const BUCKET = 'bench-reuse-ab';
const totalBytes = parseBytes(opts.size, '--size');
const rounds = positiveInteger(opts.rounds, '--rounds');
const delayMs = Number(opts.delay);
if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('--delay must be a number of milliseconds, 0 or more');
const benchDir = dirname(fileURLToPath(import.meta.url));
const checkouts: { readonly label: string; readonly bin: string }[] = [
  { label: 'this checkout', bin: offsiteBin },
  ...(opts.compareWith !== undefined ? [{ label: resolve(opts.compareWith), bin: baselineBinOf(opts.compareWith) as string }] : []),
];

interface Run {
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly serverCpuSeconds: number;
  readonly trace?: S3TraceSummary;
}

const dir = opts.dir;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const sourceRoot = join(dir, 'source');
await generateChain({ root: sourceRoot, names: [NIGHT1, NIGHT2], totalBytes, changed: parsePercent(opts.changed), seed: Number(opts.seed) });
// The gateway holds every object in RAM; deleted ones until its garbage collection (hours): room for every run.
const rgw = await startRgw(join(dir, 'rgw'), (2 + rounds * checkouts.length) * totalBytes);
try {
  const proxy = await startCountingProxy(Number(new URL(rgw.server.endpoint).port), '127.0.0.1', { delayMs, bytesPerSecond: parseBytes(opts.rate, '--rate') });
  try {
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(sourceRoot)} }`, 'destinations:', `  s3: ${s3ConfigSection(rgw.server, BUCKET, `http://127.0.0.1:${proxy.port}`)}`,
      'options: { quietPeriod: 0s }', '',
    ].join('\n'));
    await rgw.client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const night1Cache = join(dir, 'cache-night1');
    const cache = join(dir, 'cache');
    const env = s3SecretsEnv(rgw.server);
    const setup = await timedAsync(process.execPath, [offsiteBin, '--config', config, '--quiet', 'replicate', NIGHT1, '--to', 's3'], { env: { ...env, OFFSITE_CACHE_DIR: night1Cache } });
    console.log(`night 1 replicated in ${setup.seconds.toFixed(2)} s; night 2 ${rounds} times per checkout (link: ${delayMs} ms each way, ${opts.rate}/s)`);

    /** Night 2's objects and open uploads removed: the bucket as night 1 left it. */
    const removeNight2 = async (): Promise<void> => {
      let token: string | undefined;
      do {
        const page = await rgw.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${NIGHT2}/`, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
        const keys = (page.Contents ?? []).flatMap((c) => (c.Key !== undefined ? [{ Key: c.Key }] : []));
        if (keys.length > 0) await rgw.client.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys } }));
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      const uploads = await rgw.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
      for (const u of uploads.Uploads ?? []) await rgw.client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: u.Key, UploadId: u.UploadId }));
    };

    const traceFile = join(dir, 's3-trace.json');
    const night2 = async (bin: string): Promise<Run> => {
      rmSync(cache, { recursive: true, force: true });
      cpSync(night1Cache, cache, { recursive: true });
      rmSync(traceFile, { force: true });
      const serverBefore = cpuOf(rgw.pids);
      const args = [...(opts.traceS3 === true ? ['--import', join(benchDir, 's3-trace.js')] : []), bin, '--config', config, '--quiet', 'replicate', NIGHT2, '--to', 's3'];
      const run = await timedAsync(process.execPath, args, { env: { ...env, OFFSITE_CACHE_DIR: cache, ...(opts.traceS3 === true ? { OFFSITE_S3_TRACE: traceFile } : {}) } });
      const serverCpuSeconds = cpuOf(rgw.pids) - serverBefore;
      // A run that reused nothing measured something else (a broken set-up): stop.
      if (!(Number(/(\d+) reused server-side/.exec(run.stdout)?.[1] ?? 0) > 0)) throw new Error(`night 2 reused nothing: ${run.stdout.slice(-500)}`);
      await removeNight2();
      return { seconds: run.seconds, cpuSeconds: run.cpuSeconds, serverCpuSeconds, ...(opts.traceS3 === true ? { trace: JSON.parse(readFileSync(traceFile, 'utf8')) as S3TraceSummary } : {}) };
    };

    const s = (ms: number): string => (ms / 1000).toFixed(2);
    const runs = new Map(checkouts.map((c) => [c.label, [] as Run[]]));
    for (let round = 0; round < rounds; round++) {
      for (const checkout of round % 2 === 0 ? checkouts : [...checkouts].reverse()) {
        const run = await night2(checkout.bin);
        (runs.get(checkout.label) as Run[]).push(run);
        const copy = run.trace?.kinds['copy'];
        const traced = run.trace === undefined ? '' : `; first request ${s(run.trace.first)} s, first copy ${copy !== undefined ? s(copy.first) : '-'} s, CPU before them ${run.trace.cpu.beforeFirstRequest.toFixed(2)} s and ${run.trace.cpu.beforeFirstCopy.toFixed(2)} s`;
        console.log(`  round ${round + 1}: ${checkout.label.padEnd(30)} ${run.seconds.toFixed(2).padStart(6)} s, client CPU ${run.cpuSeconds.toFixed(2)} s, gateway CPU ${run.serverCpuSeconds.toFixed(2)} s${traced} (load ${loadAverage()})`);
      }
    }
    const medians = checkouts.map((c) => {
      const of = runs.get(c.label) as Run[];
      const firstCopies = of.flatMap((r) => (r.trace?.kinds['copy'] !== undefined ? [r.trace.kinds['copy'].first] : []));
      return {
        label: c.label, seconds: median(of.map((r) => r.seconds)), cpu: median(of.map((r) => r.cpuSeconds)), server: median(of.map((r) => r.serverCpuSeconds)),
        firstCopy: firstCopies.length > 0 ? median(firstCopies) : undefined,
      };
    });
    console.log(`\nmedians of ${rounds}:`);
    for (const m of medians) {
      console.log(`  ${m.label.padEnd(30)} ${m.seconds.toFixed(2).padStart(6)} s, client CPU ${m.cpu.toFixed(2)} s, gateway CPU ${m.server.toFixed(2)} s${m.firstCopy !== undefined ? `, first copy at ${s(m.firstCopy)} s` : ''}`);
    }
    const [ours, theirs] = medians;
    if (ours !== undefined && theirs !== undefined) {
      console.log(`  this checkout / the other: time ${(ours.seconds / theirs.seconds).toFixed(2)}x, client CPU ${(ours.cpu / theirs.cpu).toFixed(2)}x` +
        `${ours.firstCopy !== undefined && theirs.firstCopy !== undefined ? `, first copy ${(ours.firstCopy / theirs.firstCopy).toFixed(2)}x` : ''}`);
    }
  } finally {
    await proxy.close();
  }
} finally {
  await rgw.stop();
  rmSync(dir, { recursive: true, force: true });
}
