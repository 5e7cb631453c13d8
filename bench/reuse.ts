/**
 * Reuse benchmark (`npm run bench:reuse`, issue 12): what a nightly full backup costs when the
 * destination already holds last night's copy. Two nights of the same collections are generated
 * (scripts/gen-nightly.ts: night 2 keeps most segments byte for byte at the same paths, 10% of
 * its bytes new by default), then, against a throwaway Ceph RGW (s3) and sshd (sftp) from
 * test/servers/, in the same run, night 2 is sent by
 *
 *   (a) `offsite replicate NIGHT2` to a destination that holds night 1 (replicated just before,
 *       not measured): reuse as the engine does it by default;
 *   (b) `offsite replicate NIGHT2 --no-reuse` to an empty destination: the full send;
 *   (c) `rclone copy NIGHT2 remote:.../NIGHT2 --copy-dest remote:.../NIGHT1`, night 1 copied
 *       there by rclone just before (not measured). rclone's defaults otherwise. rclone before
 *       1.62 has no server-side copy over sftp and refuses --copy-dest there: then a plain
 *       `rclone copy --sftp-disable-hashcheck` (its fastest full send, as in bench/sftp-cli.ts)
 *       is measured instead, and the report says so.
 *
 * Bytes over the wire are counted by a byte-counting TCP proxy (bench/proxy.ts) that every
 * contender talks through, so the figure is the same kind for all: payload bytes each way,
 * TLS/HTTP/SSH framing included. Each contender is a child process timed from spawn to exit
 * (GNU time gives client CPU and peak RSS). After each run the copy is listed and compared with
 * the source (same files, same sizes; offsite's manifest present), and offsite's manifest says
 * how many files were reused (`reusedFrom`). Rounds rotate the order; `--repeat` gives medians.
 *
 * Prints, per destination, the figures and the issue's targets: bytes over the wire for night 2
 * <= 1.1 x its changed bytes + the manifests; wall time <= 0.25 x the full send, and below rclone
 * --copy-dest. Until the engine reuses, (a) sends everything and the report says so.
 *
 * The floor (s3, unless `--no-floor`): the same server-side copies the reuse makes (night 1's kept
 * files, put there directly), made through the same link by a minimal client (bench/raw-copy.ts:
 * one signed request per copy, no SDK) as many at once as offsite makes them, with the gateway's
 * CPU (radosgw, OSD, monitor) counted meanwhile. No reuse night can be faster than its copies
 * alone (nor than its changed bytes over the link), so this says how much of the reuse's time the
 * server sets, and whether the time target is within reach on this machine at all.
 *
 * Loopback hides what reuse saves most: round trips and bytes on a real link. `--delay` and
 * `--rate` make the proxy a WAN-like link (delay each way, a shared rate each way; see
 * bench/proxy.ts) for every contender alike.
 *
 *   npm run bench:reuse
 *   npm run bench:reuse -- --size 256MiB --changed 5% --only sftp
 *   npm run bench:reuse -- --size 256MiB --only s3 --delay 20 --rate 50MiB
 *   npm run bench:reuse -- --size 256MiB --only s3 --delay 10 --rate 20MiB --trace-s3
 *
 * `--trace-s3` prints, for each night-2 run at s3, its requests by kind over time, the copies in
 * flight, and its CPU before the first request and the first copy (bench/s3-trace.ts): where the
 * time between the reuse and the floor goes. `--cpu-prof DIR` writes a CPU profile of each night-2
 * run at s3 there (`s3-reuse-ROUND.cpuprofile`, `s3-full-ROUND.cpuprofile`): where its CPU goes.
 */
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBytes } from '../src/config/units.js';
import { parsePercent } from '../scripts/gen-backup.js';
import { generateChain, type NextNightResult } from '../scripts/gen-nightly.js';
import {
  cpuOf, loadAverage, median, offsiteBin as bin, positiveInteger, silenceSdkVersionWarning, sizesUnder, timedAsync, totalSize, treeDifference,
  type Timed as ChildTimed,
} from './lib.js';
import { rawCopyClient } from './raw-copy.js';
import { startCountingProxy, type CountingProxy, type LinkOptions, type WireBytes } from './proxy.js';
import type { S3TraceSummary } from './s3-trace.js';
import type { TraceSummary } from './sftp-trace.js';
import { bucketSizes, dropBucket, rcloneRgwEnv, s3ConfigSection, s3SecretsEnv, startRgw } from './rgw.js';
import { sftpConfigSection, startSshd, writeKnownHosts } from './sshd.js';

const program = new Command('bench-reuse')
  .option('--size <size>', 'size of night 1', '1GiB')
  .option('--changed <percent>', 'share of night 2\'s bytes that are new', '10%')
  .option('--seed <n>', 'generator seed', '42')
  .option('--repeat <n>', 'rounds (the median is reported)', '1')
  .option('--only <kinds>', 'destinations to measure: s3, sftp or both', 's3,sftp')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-reuse'))
  .option('--delay <ms>', 'one-way delay the proxy adds each way, for a WAN-like link (a round trip costs twice this)', '0')
  .option('--rate <bytes>', 'most bytes per second the proxy carries each way (e.g. 50MiB), for a WAN-like link')
  .option('--no-floor', 'skip the floor: night 2\'s server-side copies alone, by a minimal client (s3)')
  .option('--trace-sftp', 'print offsite\'s SFTP requests and bytes by kind (bench/sftp-trace.ts) after each sftp run')
  .option('--trace-s3', 'print offsite\'s S3 requests by kind over time, copies in flight and CPU before the first copy (bench/s3-trace.ts) after each s3 run')
  .option('--cpu-prof <dir>', 'write a CPU profile (node --cpu-prof) of each night-2 offsite run at s3 into this folder')
  .option('--compare-with <checkout>', 'another built checkout of offsite (e.g. a worktree of main): its reuse night is measured too, in the same rounds, for an A/B in the same minutes')
  .parse(process.argv);
const opts = program.opts<{ size: string; changed: string; seed: string; repeat: string; only: string; dir: string; delay: string; rate?: string; traceSftp?: boolean; traceS3?: boolean; cpuProf?: string; compareWith?: string; floor: boolean }>();
silenceSdkVersionWarning();

const MiB = 1024 * 1024;
const NIGHT1 = 'backup_2026_01_01_02_00_00';
const NIGHT2 = 'backup_2026_01_02_02_00_00';
const totalBytes = parseBytes(opts.size, '--size');
const changed = parsePercent(opts.changed);
const repeat = positiveInteger(opts.repeat, '--repeat');
const kinds = opts.only.split(',').map((k) => k.trim());
for (const kind of kinds) if (kind !== 's3' && kind !== 'sftp') throw new Error(`--only: "${kind}" is not s3 or sftp`);
const delayMs = Number(opts.delay);
if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('--delay must be a number of milliseconds, 0 or more');
const link: LinkOptions = { delayMs, ...(opts.rate !== undefined ? { bytesPerSecond: parseBytes(opts.rate, '--rate') } : {}) };
const linkDescription = delayMs === 0 && link.bytesPerSecond === undefined ? '' : ` (link: ${delayMs} ms each way${link.bytesPerSecond !== undefined ? `, ${opts.rate}/s` : ''})`;

interface Timed extends ChildTimed {
  readonly wire: WireBytes;
  readonly stdout: string;
  /** What was measured instead of what the label says, when the tool refused it. */
  readonly note?: string;
}

/** `timedAsync` (the proxy shares this event loop), counting the bytes that cross `proxy` meanwhile. */
async function timed(proxy: CountingProxy, command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Timed> {
  const mark = proxy.totals();
  const run = await timedAsync(command, args, { env });
  return { ...run, wire: proxy.since(mark) };
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** Whole KiB, for the per-request figures of a trace. */
function kib(bytes: number): string {
  return `${Math.round(bytes / 1024)} KiB`;
}

/** What a destination holds of night 2 after a run. */
interface Landed {
  /** Relative path -> size, `.offsite/` included. */
  readonly tree: Map<string, number>;
  /** Offsite's manifest of night 2, when there is one. */
  readonly manifest?: Buffer;
}

interface Contender {
  readonly label: string;
  readonly kind: 'offsite' | 'offsite-full' | 'rclone' | 'offsite-compare';
  /** Puts night 1 where this contender reuses from (not measured); undefined when it needs nothing. */
  readonly setup?: (round: number) => Promise<Timed>;
  readonly run: (round: number) => Promise<Timed>;
  readonly landed: (round: number) => Promise<Landed>;
}

/** The server-side copies of a reuse night made alone by a minimal client (see the file comment). */
interface Floor {
  readonly copies: number;
  readonly bytes: number;
  readonly seconds: number;
  /** CPU of the server's processes during the copies. */
  readonly serverCpuSeconds: number;
  /** CPU of this process meanwhile: the minimal client and the proxy. */
  readonly clientCpuSeconds: number;
}

/** Copies offsite makes at once at an s3 destination: `maxConcurrency` (16) x COPIES_PER_UPLOAD_SLOT (4). */
const FLOOR_COPIES_AT_ONCE = 64;

/** Night 2's files that night 1 holds byte for byte under the same path (what a reuse copies), with their sizes. */
function keptFiles(night1: string, night2: string, files: ReadonlyMap<string, number>): Array<[string, number]> {
  const kept: Array<[string, number]> = [];
  for (const [path, size] of files) {
    const before = join(night1, path);
    if (existsSync(before) && readFileSync(before).equals(readFileSync(join(night2, path)))) kept.push([path, size]);
  }
  return kept;
}

interface Kind {
  readonly name: 's3' | 'sftp';
  readonly description: string;
  readonly proxy: CountingProxy;
  readonly contenders: Contender[];
  /** Measures the floor (see the file comment); undefined where it is not measured. */
  readonly floor?: (round: number) => Promise<Floor>;
  /** Removes what a round left (buckets, folders). */
  readonly clean: (round: number) => Promise<void>;
}

/** Manifest facts: files reused (records with `reusedFrom`) and their bytes. */
function reuseOf(manifest: Buffer | undefined): { files: number; reused: number; reusedBytes: number } | undefined {
  if (manifest === undefined) return undefined;
  const parsed = JSON.parse(manifest.toString('utf8')) as { files?: Array<{ size: number; reusedFrom?: string }> };
  const files = parsed.files ?? [];
  const reused = files.filter((f) => typeof f.reusedFrom === 'string');
  return { files: files.length, reused: reused.length, reusedBytes: reused.reduce((a, f) => a + f.size, 0) };
}

const benchDir = dirname(fileURLToPath(import.meta.url));
/** `--compare-with`: the other checkout's CLI, run exactly like this one's. */
const compareBin = opts.compareWith !== undefined ? join(opts.compareWith, 'bin', 'offsite.js') : undefined;
if (compareBin !== undefined && !existsSync(compareBin)) throw new Error(`--compare-with: ${compareBin} does not exist`);
/** The reuse contender of `--compare-with`, if any, for the destination kind `prefix` (s3 or sftp). */
function compareContender(make: (bin: string) => Contender): Contender[] {
  return compareBin === undefined ? [] : [make(compareBin)];
}

/** One run's SFTP requests by kind (bench/sftp-trace.ts); the SSH layer is the wire total minus the SFTP packets. */
function printTrace(label: string, trace: TraceSummary, wire: WireBytes): void {
  const kinds = Object.entries(trace.kinds).sort(([, a], [, b]) => b.out + b.in - (a.out + a.in));
  const sftpBytes = kinds.reduce((sum, [, k]) => sum + k.out + k.in, 0);
  console.log(`    SFTP requests of ${label}, by kind (bytes are SFTP packets, before SSH framing and encryption; ` +
    `when the kind's first request went out and its last was answered, from the process start; per request: count (KiB up/down); all requests ${(trace.first / 1000).toFixed(1)}-${(trace.last / 1000).toFixed(1)} s):`);
  for (const [name, k] of kinds) {
    const ops = Object.entries(k.ops).sort(([, a], [, b]) => b.out + b.in - (a.out + a.in))
      .map(([op, o]) => `${op} ${o.requests} (${kib(o.out)}/${kib(o.in)})`).join(', ');
    console.log(`      ${name.padEnd(17)} ${String(k.files).padStart(6)} paths ${String(k.requests).padStart(7)} requests (${(k.requests / k.files).toFixed(1)}/path) ` +
      `up ${mib(k.out).padStart(10)} down ${mib(k.in).padStart(10)}  ${(k.first / 1000).toFixed(1)}-${(k.last / 1000).toFixed(1)} s  ${ops}`);
  }
  const ssh = wire.up + wire.down - sftpBytes;
  console.log(`      ${'SSH layer'.padEnd(17)} ${mib(ssh).padStart(10)} (${(100 * ssh / Math.max(1, wire.up + wire.down)).toFixed(1)}% of the wire: handshakes, framing, padding, MACs, window adjusts)`);
}

/** One s3 run's requests by kind over time (bench/s3-trace.ts): what its wall time went to. */
function printS3Trace(label: string, trace: S3TraceSummary): void {
  const s = (ms: number): string => (ms / 1000).toFixed(2);
  console.log(`    S3 requests of ${label} (from the process start: first request ${s(trace.first)} s, last answer ${s(trace.last)} s, exit ${s(trace.exit)} s; ` +
    `CPU ${trace.cpu.beforeFirstRequest.toFixed(2)} s before the first request, ${trace.cpu.beforeFirstCopy.toFixed(2)} s before the first copy, ${trace.cpu.total.toFixed(2)} s in all; ${trace.connections} connections):`);
  for (const [name, k] of Object.entries(trace.kinds).sort(([, a], [, b]) => a.first - b.first)) {
    console.log(`      ${name.padEnd(36)} ${String(k.requests).padStart(6)}  ${s(k.first)}-${s(k.last)} s  in flight ${(k.busy / 1000).toFixed(1)} s added up`);
  }
  if (trace.copiesInFlight.some((n) => n > 0)) console.log(`      copies in flight, most in each ${trace.step} ms: ${trace.copiesInFlight.join(' ')}`);
  if (trace.uploadsInFlight.some((n) => n > 0)) console.log(`      uploads in flight, likewise: ${trace.uploadsInFlight.join(' ')}`);
}

/** This checkout's reuse time over the compared one's, round by round (they ran in the same minutes). */
function pairedRatios(ours: readonly { timed: Timed }[] | undefined, theirs: readonly { timed: Timed }[] | undefined): string {
  if (ours === undefined || theirs === undefined) return 'none';
  return ours.slice(0, theirs.length).map((s, i) => (s.timed.seconds / (theirs[i] as { timed: Timed }).timed.seconds).toFixed(2)).join(' ');
}

async function main(): Promise<void> {
  const dir = opts.dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const sourceRoot = join(dir, 'source');
  console.log(`generating night 1 (${opts.size}) and night 2 (${(100 * changed).toFixed(1)}% changed), seed ${opts.seed}...`);
  const nights = await generateChain({ root: sourceRoot, names: [NIGHT1, NIGHT2], totalBytes, changed, seed: Number(opts.seed) });
  const second = nights[1] as NextNightResult;
  const night2Dir = join(sourceRoot, NIGHT2);
  const night1Dir = join(sourceRoot, NIGHT1);
  const expected = sizesUnder(night2Dir, '.offsite');
  const night2Bytes = totalSize(expected);
  const chain = second.chain;

  const stops: Array<() => Promise<void>> = [];
  const kindsRun: Kind[] = [];
  /** Every offsite run keeps its manifest cache in the work folder (none from earlier benchmarks). */
  const secretsEnv: NodeJS.ProcessEnv = { OFFSITE_CACHE_DIR: join(dir, 'cache') };
  /** Destination sections of each kind, for a round (literal buckets and folders; secrets from the environment). */
  const sections: Array<(round: number) => string[]> = [];
  const bucket = (label: string, round: number): string => `bench-${label}-${round}-${runId}`;
  const runId = randomBytes(3).toString('hex');
  const config = (round: number): string => join(dir, `offsite-${round}.yaml`);
  const writeConfig = (round: number): void => writeFileSync(config(round), [
    `source: { type: local, root: ${JSON.stringify(sourceRoot)} }`, 'destinations:', ...sections.flatMap((lines) => lines(round)), 'options: { quietPeriod: 0s }', '',
  ].join('\n'));
  const rcloneBase = ['-u', 'AWS_CA_BUNDLE', 'rclone', '--config', '/dev/null'];
  try {
    if (kinds.includes('s3')) {
      // The gateway holds every object in RAM: night 1 twice and night 2 up to three times per round.
      const rgw = await startRgw(join(dir, 'rgw'), 6 * totalBytes);
      stops.push(() => rgw.stop());
      const { server, client } = rgw;
      const proxy = await startCountingProxy(Number(new URL(server.endpoint).port), '127.0.0.1', link);
      stops.push(() => proxy.close());
      const endpoint = `http://127.0.0.1:${proxy.port}`;
      Object.assign(secretsEnv, s3SecretsEnv(server));
      const s3Section = (name: string): string => s3ConfigSection(server, name, endpoint);
      sections.push((round) => [
        `  s3-reuse: ${s3Section(bucket('reuse', round))}`, `  s3-full: ${s3Section(bucket('full', round))}`, `  s3-compare: ${s3Section(bucket('compare', round))}`,
      ]);
      const rcloneEnv = rcloneRgwEnv(server, endpoint);
      const withBucket = async (name: string): Promise<string> => {
        await client.send(new CreateBucketCommand({ Bucket: name }));
        return name;
      };
      const landedIn = async (name: string): Promise<Landed> => {
        const tree = await bucketSizes(client, name, `${NIGHT2}/`);
        if (!tree.has('.offsite/manifest.json')) return { tree };
        const body = await client.send(new GetObjectCommand({ Bucket: name, Key: `${NIGHT2}/.offsite/manifest.json` }));
        return { tree, manifest: Buffer.from(await (body.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()) };
      };
      const traceFile = join(dir, 's3-trace.json');
      /** Night 2's runs are traced with `--trace-s3` (night 1, the set-up, is not). */
      const offsite = async (round: number, backup: string, to: string, extra: string[] = [], cli = bin): Promise<Timed> => {
        const trace = opts.traceS3 === true && backup === NIGHT2;
        const profile = opts.cpuProf !== undefined && backup === NIGHT2 ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`, `--cpu-prof-name=${to}-${round}.cpuprofile`] : [];
        const args = [...profile, ...(trace ? ['--import', join(benchDir, 's3-trace.js')] : []), cli, '--config', config(round), '--quiet', 'replicate', backup, '--to', to, ...extra];
        const run = await timed(proxy, process.execPath, args, trace ? { ...secretsEnv, OFFSITE_S3_TRACE: traceFile } : secretsEnv);
        if (trace) printS3Trace(`${to}${extra.length > 0 ? ` ${extra.join(' ')}` : ''}`, JSON.parse(readFileSync(traceFile, 'utf8')) as S3TraceSummary);
        return run;
      };
      const floor = async (round: number): Promise<Floor> => {
        const name = await withBucket(bucket('floor', round));
        const kept = keptFiles(night1Dir, night2Dir, expected);
        let next = 0;
        await Promise.all(Array.from({ length: 8 }, async () => {
          for (let i = next++; i < kept.length; i = next++) {
            const [path] = kept[i] as [string, number];
            await client.send(new PutObjectCommand({ Bucket: name, Key: `${NIGHT1}/${path}`, Body: readFileSync(join(night1Dir, path)) }));
          }
        }));
        const raw = rawCopyClient({ endpoint, region: server.region, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, sockets: FLOOR_COPIES_AT_ONCE });
        const serverBefore = cpuOf(rgw.pids);
        const clientBefore = process.cpuUsage();
        const started = process.hrtime.bigint();
        next = 0;
        try {
          await Promise.all(Array.from({ length: FLOOR_COPIES_AT_ONCE }, async () => {
            for (let i = next++; i < kept.length; i = next++) {
              const [path] = kept[i] as [string, number];
              await raw.copy(name, `${NIGHT1}/${path}`, `${NIGHT2}/${path}`);
            }
          }));
        } finally {
          raw.close();
        }
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const used = process.cpuUsage(clientBefore);
        return {
          copies: kept.length, bytes: kept.reduce((a, [, size]) => a + size, 0), seconds,
          serverCpuSeconds: cpuOf(rgw.pids) - serverBefore, clientCpuSeconds: (used.user + used.system) / 1e6,
        };
      };
      kindsRun.push({
        name: 's3', proxy, ...(opts.floor ? { floor } : {}), description: `Ceph RGW (memstore) ${server.endpoint} through a counting proxy on :${proxy.port}${linkDescription}`,
        contenders: [
          {
            label: 'offsite replicate (reuse; night 1 there)', kind: 'offsite',
            setup: async (round) => { await withBucket(bucket('reuse', round)); return offsite(round, NIGHT1, 's3-reuse'); },
            run: (round) => offsite(round, NIGHT2, 's3-reuse'),
            landed: (round) => landedIn(bucket('reuse', round)),
          },
          ...compareContender((cli) => ({
            label: 'offsite replicate (reuse), --compare-with', kind: 'offsite-compare',
            setup: async (round) => { await withBucket(bucket('compare', round)); return offsite(round, NIGHT1, 's3-compare', [], cli); },
            run: (round) => offsite(round, NIGHT2, 's3-compare', [], cli),
            landed: (round) => landedIn(bucket('compare', round)),
          })),
          {
            label: 'offsite replicate --no-reuse (full send)', kind: 'offsite-full',
            run: async (round) => { await withBucket(bucket('full', round)); return offsite(round, NIGHT2, 's3-full', ['--no-reuse']); },
            landed: (round) => landedIn(bucket('full', round)),
          },
          {
            label: 'rclone copy --copy-dest NIGHT1', kind: 'rclone',
            setup: async (round) => timed(proxy, 'env', [...rcloneBase, 'copy', night1Dir, `rgw:${await withBucket(bucket('rclone', round))}/${NIGHT1}`], rcloneEnv),
            run: (round) => timed(proxy, 'env', [...rcloneBase, 'copy', night2Dir, `rgw:${bucket('rclone', round)}/${NIGHT2}`, '--copy-dest', `rgw:${bucket('rclone', round)}/${NIGHT1}`], rcloneEnv),
            landed: (round) => landedIn(bucket('rclone', round)),
          },
        ],
        clean: async (round) => {
          for (const label of ['reuse', 'compare', 'full', 'rclone', 'floor']) await dropBucket(client, bucket(label, round));
        },
      });
    }
    if (kinds.includes('sftp')) {
      const sshd = await startSshd(join(dir, 'sshd'));
      stops.push(() => sshd.stop());
      const { server } = sshd;
      const proxy = await startCountingProxy(server.port, '127.0.0.1', link);
      stops.push(() => proxy.close());
      const knownHosts = writeKnownHosts(join(dir, 'known_hosts'), server, proxy.port);
      const folder = (label: string, round: number): string => join(server.root, `bench-${round}`, label);
      const sftpSection = (root: string): string => sftpConfigSection(server, root, proxy.port);
      sections.push((round) => [
        `  sftp-reuse: ${sftpSection(folder('reuse', round))}`, `  sftp-full: ${sftpSection(folder('full', round))}`, `  sftp-compare: ${sftpSection(folder('compare', round))}`,
      ]);
      const rcloneEnv = {
        RCLONE_CONFIG_NAS_TYPE: 'sftp', RCLONE_CONFIG_NAS_HOST: '127.0.0.1', RCLONE_CONFIG_NAS_PORT: String(proxy.port),
        RCLONE_CONFIG_NAS_USER: server.username, RCLONE_CONFIG_NAS_KEY_FILE: server.privateKey, RCLONE_CONFIG_NAS_KNOWN_HOSTS_FILE: knownHosts,
      };
      const landedIn = async (root: string): Promise<Landed> => {
        const there = join(root, NIGHT2);
        const tree = existsSync(there) ? sizesUnder(there, '.offsite') : new Map<string, number>();
        const manifestPath = join(there, '.offsite', 'manifest.json');
        if (!existsSync(manifestPath)) return { tree };
        const manifest = readFileSync(manifestPath);
        tree.set('.offsite/manifest.json', manifest.length);
        return { tree, manifest };
      };
      const traceFile = join(dir, 'sftp-trace.json');
      const offsite = async (round: number, backup: string, to: string, extra: string[] = [], cli = bin): Promise<Timed> => {
        const trace = opts.traceSftp === true && backup === NIGHT2;
        const env = trace ? { ...secretsEnv, NODE_OPTIONS: `--import ${join(benchDir, 'sftp-trace.js')}`, OFFSITE_SFTP_TRACE: traceFile } : secretsEnv;
        const run = await timed(proxy, process.execPath, [cli, '--config', config(round), '--quiet', 'replicate', backup, '--to', to, ...extra], env);
        if (trace) printTrace(`${to}${extra.length > 0 ? ` ${extra.join(' ')}` : ''}`, JSON.parse(readFileSync(traceFile, 'utf8')) as TraceSummary, run.wire);
        return run;
      };
      const made = (path: string): string => { mkdirSync(path, { recursive: true }); return path; };
      /**
       * Night 1 put in place without timing or the proxy: the server's folder is on this machine, so
       * a local copy with the modification times kept is what `rclone copy` would have made there
       * (rclone sets them), in a moment instead of minutes over a slow link.
       */
      const placed = (from: string, to: string): Timed => {
        const started = process.hrtime.bigint();
        cpSync(from, made(to), { recursive: true, preserveTimestamps: true });
        return { seconds: Number(process.hrtime.bigint() - started) / 1e9, cpuSeconds: 0, maxRssMb: 0, wire: { up: 0, down: 0 }, stdout: '' };
      };
      kindsRun.push({
        name: 'sftp', proxy, description: `OpenSSH sshd 127.0.0.1:${server.port} through a counting proxy on :${proxy.port}${linkDescription}`,
        contenders: [
          {
            label: 'offsite replicate (reuse; night 1 there)', kind: 'offsite',
            // Night 1 (untimed) through the proxy to the same destination as night 2, as a nightly
            // chain has it: offsite caches the manifests it writes per destination, so night 2
            // reads only night 1's last bytes (src/core/manifest-cache.ts).
            setup: (round) => { made(folder('reuse', round)); return offsite(round, NIGHT1, 'sftp-reuse'); },
            run: (round) => offsite(round, NIGHT2, 'sftp-reuse'),
            landed: async (round) => landedIn(folder('reuse', round)),
          },
          ...compareContender((cli) => ({
            label: 'offsite replicate (reuse), --compare-with', kind: 'offsite-compare',
            setup: (round) => { made(folder('compare', round)); return offsite(round, NIGHT1, 'sftp-compare', [], cli); },
            run: (round) => offsite(round, NIGHT2, 'sftp-compare', [], cli),
            landed: async (round) => landedIn(folder('compare', round)),
          })),
          {
            label: 'offsite replicate --no-reuse (full send)', kind: 'offsite-full',
            run: (round) => { made(folder('full', round)); return offsite(round, NIGHT2, 'sftp-full', ['--no-reuse']); },
            landed: async (round) => landedIn(folder('full', round)),
          },
          {
            label: 'rclone copy --copy-dest NIGHT1', kind: 'rclone',
            setup: async (round) => placed(night1Dir, join(folder('rclone', round), NIGHT1)),
            run: async (round) => {
              const to = `nas:${folder('rclone', round)}/${NIGHT2}`;
              try {
                return await timed(proxy, 'env', [...rcloneBase, 'copy', night2Dir, to, '--copy-dest', `nas:${folder('rclone', round)}/${NIGHT1}`], rcloneEnv);
              } catch (err) {
                // rclone before 1.62 has no server-side copy on sftp, and then refuses --copy-dest before copying anything.
                if (!/doesn't support server.side copy/.test((err as Error).message)) throw err;
                const plain = await timed(proxy, 'env', [...rcloneBase, 'copy', '--sftp-disable-hashcheck', night2Dir, to], rcloneEnv);
                return { ...plain, note: 'this rclone refuses --copy-dest on sftp (no server-side copy there): `rclone copy --sftp-disable-hashcheck` measured instead' };
              }
            },
            landed: async (round) => landedIn(folder('rclone', round)),
          },
        ],
        clean: async (round) => { rmSync(join(server.root, `bench-${round}`), { recursive: true, force: true }); },
      });
    }

    const rcloneVersion = spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'version']).stdout?.toString().split('\n')[0] ?? 'rclone (version unknown)';
    console.log(`\nload average before: ${loadAverage()}`);
    console.log(`night 2: ${expected.size} files, ${mib(night2Bytes)}; new since night 1: ${chain.changedFiles} files, ${mib(chain.changedBytes)} ` +
      `(${(100 * chain.changedShare).toFixed(1)}%, meta included); kept byte for byte: ${chain.keptFiles} files, ${mib(chain.keptBytes)}`);
    console.log(`  (${chain.newSegments.length} new segments, ${chain.compactedSegments.length} compacted into ${chain.compactedInto.length}, ` +
      `${chain.deltaLogsAdded} delta logs on kept segments, ${chain.newL0Segments.length} new L0 segments)`);
    console.log(`${rcloneVersion}; offsite ${bin}; ${repeat} round(s), rotating order`);

    interface Sample { timed: Timed; reuse?: ReturnType<typeof reuseOf>; manifestBytes: number }
    const samples = new Map<string, Sample[]>();
    const floors = new Map<string, Floor[]>();
    const setups = new Map<string, Timed[]>();
    for (let round = 0; round < repeat; round++) {
      writeConfig(round);
      for (const kind of kindsRun) {
        console.log(`\n${kind.name}: ${kind.description}`);
        for (let k = 0; k < kind.contenders.length; k++) {
          const contender = kind.contenders[(round + k) % kind.contenders.length] as Contender;
          const key = `${kind.name}:${contender.label}`;
          let result: Timed;
          try {
            if (contender.setup) {
              const setup = await contender.setup(round);
              setups.set(key, [...(setups.get(key) ?? []), setup]);
            }
            result = await contender.run(round);
          } catch (err) {
            console.log(`  round ${round + 1}: ${contender.label}: FAILED: ${(err as Error).message.split('\n').slice(0, 3).join(' / ')}`);
            continue;
          }
          const landed = await contender.landed(round);
          const problem = treeDifference(expected, landed.tree, '.offsite/');
          if (problem) throw new Error(`${kind.name}: ${contender.label}: night 2 at the destination differs from the source: ${problem}`);
          if (contender.kind !== 'rclone' && landed.manifest === undefined) throw new Error(`${kind.name}: ${contender.label}: no manifest after the run`);
          const manifestBytes = [...landed.tree].filter(([path]) => path.startsWith('.offsite/')).reduce((a, [, size]) => a + size, 0);
          samples.set(key, [...(samples.get(key) ?? []), { timed: result, reuse: reuseOf(landed.manifest), manifestBytes }]);
          console.log(`  round ${round + 1}: ${contender.label.padEnd(44)} ${result.seconds.toFixed(2).padStart(7)} s  wire ${mib(result.wire.up + result.wire.down).padStart(11)}` +
            (result.note ? ` (${result.note})` : ''));
        }
        if (kind.floor) {
          try {
            const floor = await kind.floor(round);
            floors.set(kind.name, [...(floors.get(kind.name) ?? []), floor]);
            console.log(`  round ${round + 1}: ${'floor: the reuse\'s copies alone'.padEnd(44)} ${floor.seconds.toFixed(2).padStart(7)} s  (${floor.copies} copies, server CPU ${floor.serverCpuSeconds.toFixed(2)} s)`);
          } catch (err) {
            console.log(`  round ${round + 1}: floor: FAILED: ${(err as Error).message.split('\n')[0]}`);
          }
        }
        await kind.clean(round);
      }
    }

    console.log(`\nresults for night 2 (${mib(night2Bytes)}, ${mib(chain.changedBytes)} new; median of ${repeat}):`);
    for (const kind of kindsRun) {
      console.log(`${kind.name}:`);
      const figures = new Map<Contender['kind'], { seconds: number; wire: number; manifestBytes: number; reuse?: ReturnType<typeof reuseOf>; note?: string }>();
      for (const contender of kind.contenders) {
        const key = `${kind.name}:${contender.label}`;
        const list = samples.get(key) ?? [];
        if (list.length === 0) {
          console.log(`  ${contender.label.padEnd(44)} no successful run`);
          continue;
        }
        const seconds = median(list.map((s) => s.timed.seconds));
        const up = median(list.map((s) => s.timed.wire.up));
        const down = median(list.map((s) => s.timed.wire.down));
        const last = list[list.length - 1] as Sample;
        figures.set(contender.kind, { seconds, wire: up + down, manifestBytes: last.manifestBytes, reuse: last.reuse, ...(last.timed.note ? { note: last.timed.note } : {}) });
        const setup = setups.get(key);
        const reused = (last.reuse ? `, reused ${last.reuse.reused} of ${last.reuse.files} files (${mib(last.reuse.reusedBytes)})` : '') +
          (last.timed.note ? `\n  ${''.padEnd(44)} (${last.timed.note})` : '');
        console.log(`  ${contender.label.padEnd(44)} ${seconds.toFixed(2).padStart(7)} s  wire ${mib(up + down).padStart(11)} (up ${mib(up)}, down ${mib(down)})  ` +
          `CPU ${median(list.map((s) => s.timed.cpuSeconds)).toFixed(1)} s  peak RSS ${Math.max(...list.map((s) => s.timed.maxRssMb)).toFixed(0)} MB${reused}` +
          (setup ? `\n  ${''.padEnd(44)} (night 1 before it: ${median(setup.map((t) => t.seconds)).toFixed(2)} s, wire ${mib(median(setup.map((t) => t.wire.up + t.wire.down)))})` : ''));
      }
      const ours = figures.get('offsite');
      const full = figures.get('offsite-full');
      const rclone = figures.get('rclone');
      if (ours === undefined) continue;
      const limit = 1.1 * chain.changedBytes + ours.manifestBytes;
      const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
      console.log(`  target bytes: wire ${mib(ours.wire)} <= 1.1 x ${mib(chain.changedBytes)} changed + ${mib(ours.manifestBytes)} manifests = ${mib(limit)}: ` +
        `${(ours.wire / limit).toFixed(2)}x the limit, ${verdict(ours.wire <= limit)}` +
        (full ? `; the full send moved ${mib(full.wire)} (${(ours.wire / full.wire).toFixed(2)}x of it)` : ''));
      if (full) console.log(`  target time: ${(ours.seconds / full.seconds).toFixed(2)}x the full send (target <= 0.25x), ${verdict(ours.seconds <= 0.25 * full.seconds)}`);
      const compared = figures.get('offsite-compare');
      if (compared && full) {
        console.log(`  --compare-with ${opts.compareWith}: ${(compared.seconds / full.seconds).toFixed(2)}x the full send; this checkout / that one: ${(ours.seconds / compared.seconds).toFixed(2)}x ` +
          `(per round: ${pairedRatios(samples.get(`${kind.name}:${kind.contenders.find((c) => c.kind === 'offsite')?.label}`), samples.get(`${kind.name}:${kind.contenders.find((c) => c.kind === 'offsite-compare')?.label}`))})`);
      }
      if (rclone) {
        console.log(`  target time: ${(ours.seconds / rclone.seconds).toFixed(2)}x rclone --copy-dest${rclone.note ? ' (plain rclone copy, see above)' : ''} (target < 1.00x), ${verdict(ours.seconds < rclone.seconds)}; ` +
          `rclone's wire ${mib(rclone.wire)}`);
        const rcloneDown = median((samples.get(`${kind.name}:${kind.contenders.find((c) => c.kind === 'rclone')?.label}`) ?? []).map((s) => s.timed.wire.down));
        if (rcloneDown > 0.5 * chain.keptBytes) {
          console.log(`  (rclone read ${mib(rcloneDown)} back from the server: without a server-side copy on this remote, --copy-dest downloads each kept file and uploads it again)`);
        }
      }
      const floor = floors.get(kind.name) ?? [];
      if (floor.length > 0) {
        const seconds = median(floor.map((f) => f.seconds));
        const serverCpu = median(floor.map((f) => f.serverCpuSeconds));
        const last = floor[floor.length - 1] as Floor;
        console.log(`  floor: night 1's ${last.copies} kept files (${mib(last.bytes)}) copied server-side alone by a minimal client (no SDK, ${FLOOR_COPIES_AT_ONCE} at once, ` +
          `same link): ${seconds.toFixed(2)} s, server CPU ${serverCpu.toFixed(2)} s (${(1000 * serverCpu / Math.max(1, last.copies)).toFixed(1)} ms per copy), ` +
          `this process (client + proxy) ${median(floor.map((f) => f.clientCpuSeconds)).toFixed(2)} s CPU`);
        if (full) {
          console.log(`    = ${(seconds / full.seconds).toFixed(2)}x the full send by the copies alone; the reuse took ${(ours.seconds / seconds).toFixed(2)}x the floor` +
            (seconds > 0.25 * full.seconds ? ' (the server alone is slower than the time target here)' : ''));
        }
      }
      if (ours.reuse && ours.reuse.reused === 0) console.log('  (offsite reused no file: this build sends everything; the figures above are its full cost)');
    }
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => console.error(`cleanup: ${(err as Error).message}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
