/**
 * S3 benchmark through the CLI (`npm run bench:s3`): the same generated backup (a realistic mix
 * of file sizes from scripts/gen-backup.ts, 1 GiB by default) uploaded to the same throwaway Ceph
 * RADOS Gateway (test/servers/rgw.ts: single node, memstore, 127.0.0.1), in the same run, by
 *
 *   (a) `offsite replicate NAME --to cloud` (one `s3` destination, local source), once per
 *       setting tried: `--concurrency` x `options.chunkSize` (default 4,8,16 x 8MiB,16MiB);
 *       with `--baseline DIR`, also the offsite of another built checkout (e.g. the last commit,
 *       `git archive HEAD | tar -x -C DIR`, node_modules linked, `npx tsc`) with the same settings
 *       (and encrypted too with `--encrypted`), so that a change is measured against what it
 *       replaces in the same run;
 *   (b) `env -u AWS_CA_BUNDLE rclone copy DIR rgw:BUCKET/NAME`, the remote configured through
 *       RCLONE_CONFIG_RGW_* variables (type s3, provider Ceph, path style), with rclone's
 *       default transfer settings written out explicitly (see RCLONE_SETTINGS) so that the figure
 *       does not move with the rclone version; `--rclone-transfers 4,8` adds variants.
 *
 * Every run gets a fresh, empty bucket, and is a child process timed from spawn to exit (start-up
 * and connection included) under GNU time (client CPU, peak RSS). The gateway's own CPU (radosgw +
 * OSD + mon, from /proc) is reported too: on this 2-core machine client and server share the
 * cores. After each run the bucket is listed and compared with the source tree (same keys, same
 * sizes, no temp objects, no open multipart uploads; offsite's manifest present), then emptied and
 * deleted, and the next run waits until the OSD has freed the data (memstore keeps it in RAM, and
 * a garbage collection running during the next run would skew it). Contenders run once per round
 * in a rotating order (the machine's load drifts); the median of `--repeat` rounds is reported.
 *
 * With `--encrypted`, each offsite setting also runs against the same bucket kind with
 * client-side encryption (`encryption: { key }`, README "Client-side encryption"), and each rclone
 * setting also through an rclone `crypt` remote over the same S3 remote (standard file name
 * encryption, rclone's defaults), so the cost of encryption is measured against plain in one run
 * (issue 14's target: encrypted <= 1.1x the plain destination's time).
 *
 * `--cpu-prof DIR` profiles every offsite run (each thread, the CPU pool's workers included).
 *
 *   npm run bench:s3
 *   npm run bench:s3 -- --size 256MiB --repeat 3 --concurrency 8 --chunk-sizes 8MiB --rclone-transfers 4 --encrypted
 *   npm run bench:s3 -- --size 256MiB --repeat 3 --concurrency 8 --chunk-sizes 8MiB
 *   npm run bench:s3 -- --size 1GiB --repeat 3 --concurrency 8 --chunk-sizes 8MiB --baseline /tmp/offsite-head
 */
import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SETTINGS } from '../src/config/config.js';
import { parseBytes } from '../src/config/units.js';
import {
  baselineBinOf, cpuOf, freshBackup, loadAverage, median, offsiteBin as bin, positiveInteger, positiveIntegers, silenceSdkVersionWarning, type Timed as ChildTimed, timed as timedChild, treeDifference,
} from './lib.js';
import { storedSize } from '../src/crypto/format.js';
import { bucketSizes, dropBucket, osdBytesUsed, rcloneRgwEnv, s3ConfigSection, s3SecretsEnv, startRgw, waitForFreedData } from './rgw.js';

const program = new Command('bench-s3-cli')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--repeat <n>', 'runs of each contender (the median is reported)', '2')
  .option('--seed <n>', 'generator seed', '42')
  .option('--concurrency <list>', 'offsite --concurrency values to try, comma-separated', '4,8,16')
  .option('--chunk-sizes <list>', 'offsite options.chunkSize values to try, comma-separated', '8MiB,16MiB')
  .option('--rclone-transfers <list>', 'rclone --transfers values to try (4 is its default)', '4')
  .option('--encrypted', 'also run every setting with client-side encryption, and rclone through a crypt remote')
  .option('--baseline <dir>', 'another built checkout whose offsite runs too, with the same settings (before/after in one run)')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-s3-cli'))
  .option('--cpu-prof <dir>', 'write CPU profiles (node --cpu-prof: main thread and each worker thread) of every offsite run into DIR/<label>/<bucket>/')
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; seed: string; concurrency: string; chunkSizes: string; rcloneTransfers: string; dir: string; baseline?: string; encrypted?: boolean; cpuProf?: string }>();
silenceSdkVersionWarning();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
const baselineBin = baselineBinOf(opts.baseline);
const repeat = positiveInteger(opts.repeat, '--repeat');
const concurrencies = positiveIntegers(opts.concurrency, '--concurrency');
const chunkSizes = opts.chunkSizes.split(',').map((s) => ({ text: s.trim(), bytes: parseBytes(s.trim(), '--chunk-sizes') }));
const rcloneTransfers = positiveIntegers(opts.rcloneTransfers, '--rclone-transfers');
const totalBytes = parseBytes(opts.size, '--size');

/**
 * rclone 1.60's defaults for an S3 upload, passed explicitly: 4 files at once, 8 checkers,
 * single PUT up to 200 MiB, above that multipart in 5 MiB parts with 4 parts in flight per file.
 * It also hashes each file with MD5 before sending it (Content-MD5 of a single PUT, metadata of a
 * multipart upload); offsite sends every object and part with a digest the server checks (on RGW the
 * signed SHA-256 of the body, cheaper than MD5 with the CPU's SHA instructions).
 */
const RCLONE_SETTINGS = ['--checkers', '8', '--s3-upload-cutoff', '200Mi', '--s3-chunk-size', '5Mi', '--s3-upload-concurrency', '4'];

interface Timed extends ChildTimed {
  /** CPU seconds of radosgw + ceph-osd + ceph-mon during the run. */
  readonly serverCpuSeconds: number;
}

/** Runs a command under GNU time, with the gateway's CPU meanwhile; throws with the end of its stderr when it fails. */
function timed(command: string, args: readonly string[], env: NodeJS.ProcessEnv, serverPids: readonly number[]): Timed {
  const serverBefore = cpuOf(serverPids);
  const result = timedChild(command, args, { env });
  return { ...result, serverCpuSeconds: cpuOf(serverPids) - serverBefore };
}

interface Contender {
  readonly label: string;
  readonly kind: 'offsite' | 'rclone';
  /** The offsite of `--baseline`: measured, but never the "default" or "best" setting. */
  readonly baseline?: boolean;
  /** offsite with `encryption`, or rclone through a crypt remote. */
  readonly encrypted?: boolean;
  readonly concurrency?: number;
  readonly chunk?: string;
  /** Uploads the backup into `bucket` (keys `BACKUP/...`). */
  readonly run: (bucket: string) => Timed;
}

async function main(): Promise<void> {
  const dir = opts.dir;
  const { files, local, expected, bytes, largest } = await freshBackup(dir, BACKUP, totalBytes, Number(opts.seed));

  // The gateway holds every object in RAM: room for a run plus what is still being freed.
  const rgw = await startRgw(join(dir, 'rgw'), 3 * totalBytes);
  const { server, client, pids: serverPids } = rgw;
  try {
    const rcloneVersion = spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'version']).stdout?.toString().split('\n')[0] ?? 'rclone (version unknown)';

    // Secrets and the bucket reach the children through the environment, never a file.
    const secrets = s3SecretsEnv(server);
    const configs = new Map<string, string>();
    for (const chunk of chunkSizes) {
      const file = join(dir, `offsite-${chunk.text}.yaml`);
      writeFileSync(file, [
        `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
        'destinations:',
        `  cloud: ${s3ConfigSection(server, '"${OFFSITE_BENCH_BUCKET}"')}`,
        `options: { quietPeriod: 0s, chunkSize: ${chunk.text} }`,
        '',
      ].join('\n'));
      configs.set(chunk.text, file);
      const encryptedFile = join(dir, `offsite-${chunk.text}-encrypted.yaml`);
      writeFileSync(encryptedFile, readFileSync(file, 'utf8').replace('secretAccessKey: "${OFFSITE_BENCH_S3_SECRET_KEY}" }', 'secretAccessKey: "${OFFSITE_BENCH_S3_SECRET_KEY}", encryption: { key: "${OFFSITE_BENCH_KEY}" } }'));
      configs.set(`${chunk.text} encrypted`, encryptedFile);
    }
    const encryptionKey = randomBytes(32).toString('hex');
    // rclone wants its crypt password obscured (its own reversible encoding).
    const rclonePassword = opts.encrypted ? spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'obscure', randomBytes(24).toString('hex')]).stdout?.toString().trim() ?? '' : '';

    const contenders: Contender[] = [];
    for (const transfers of rcloneTransfers) {
      for (const encrypted of opts.encrypted ? [false, true] : [false]) {
        contenders.push({
          label: `rclone ${encrypted ? 'crypt' : 'copy'} --transfers ${transfers}${transfers === 4 ? ' (default)' : ''}`,
          kind: 'rclone',
          encrypted,
          run: (bucket) => timed('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'copy', '--config', '/dev/null', '--s3-force-path-style',
            '--transfers', String(transfers), ...RCLONE_SETTINGS, local, encrypted ? 'secret:' : `rgw:${bucket}/${BACKUP}`], {
            ...rcloneRgwEnv(server),
            ...(encrypted ? { RCLONE_CONFIG_SECRET_TYPE: 'crypt', RCLONE_CONFIG_SECRET_REMOTE: `rgw:${bucket}/${BACKUP}`, RCLONE_CONFIG_SECRET_PASSWORD: rclonePassword } : {}),
          }, serverPids),
        });
      }
    }
    for (const chunk of chunkSizes) {
      for (const concurrency of concurrencies) {
        const isDefault = concurrency === DEFAULT_SETTINGS.concurrency && chunk.bytes === DEFAULT_SETTINGS.chunkBytes;
        for (const [offsiteBin, baseline, encrypted] of [[bin, false, false], ...(opts.encrypted ? [[bin, false, true] as const] : []), ...(baselineBin !== undefined ? [[baselineBin, true, false] as const, ...(opts.encrypted ? [[baselineBin, true, true] as const] : [])] : [])] as const) {
          const label = `${baseline ? 'baseline' : 'offsite'}${encrypted ? ' encrypted' : ''} --concurrency ${concurrency}, chunkSize ${chunk.text}`;
          // Profiles of a run: one per thread, in a folder of their own (the default file names tell the threads apart).
          const profile = (bucket: string): string[] => opts.cpuProf === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(opts.cpuProf, label.replace(/[^A-Za-z0-9]+/g, '-'), bucket)}`];
          contenders.push({
            label: `${label}${isDefault && !baseline ? ' (default)' : ''}`,
            kind: 'offsite',
            baseline,
            encrypted,
            concurrency,
            chunk: chunk.text,
            run: (bucket) => timed(process.execPath, [...profile(bucket), offsiteBin, '--config', configs.get(encrypted ? `${chunk.text} encrypted` : chunk.text) as string, '--quiet', 'replicate', BACKUP, '--to', 'cloud',
              '--concurrency', String(concurrency)], { ...secrets, OFFSITE_BENCH_BUCKET: bucket, OFFSITE_BENCH_KEY: encryptionKey }, serverPids),
          });
        }
      }
    }

    console.log(`\nload average before: ${loadAverage()}`);
    console.log(`${files} files, ${(bytes / MiB).toFixed(0)} MiB (largest ${(largest / MiB).toFixed(1)} MiB, ` +
      `${[...expected.values()].filter((s) => s > 8 * MiB).length} above 8 MiB), to Ceph RGW (memstore) at ${server.endpoint}; ` +
      `${contenders.length} contenders, median of ${repeat}, rotating order, a fresh bucket per run`);
    console.log(`${rcloneVersion}: RCLONE_CONFIG_RGW_TYPE=s3 PROVIDER=Ceph, --s3-force-path-style ${RCLONE_SETTINGS.join(' ')} (its defaults), --transfers as labelled`);
    console.log(`offsite: local source, one s3 destination (defaults: forcePathStyle, WHEN_REQUIRED checksums, a signed SHA-256 or Content-MD5 on every upload), quietPeriod 0s`);
    if (baselineBin !== undefined) console.log(`baseline: ${baselineBin}, same settings`);

    const baseline = osdBytesUsed(rgw.dir) ?? 0;
    const runs: Timed[][] = contenders.map(() => []);
    for (let round = 0; round < repeat; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const i = (round + k) % contenders.length;
        const contender = contenders[i] as Contender;
        await waitForFreedData(rgw.dir, baseline);
        const bucket = `bench-${contender.kind}-${round}-${i}-${randomBytes(4).toString('hex')}`;
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        try {
          const result = contender.run(bucket);
          const there = await bucketSizes(client, bucket, `${BACKUP}/`);
          if (contender.kind === 'offsite') {
            if (!there.has('.offsite/manifest.json')) throw new Error(`${contender.label}: no manifest after the run`);
            for (const key of [...there.keys()]) if (key.startsWith('.offsite/')) there.delete(key);
          }
          // Encrypted: offsite keeps the names and stores each file at its sealed size; rclone crypt encrypts the names too.
          const problem = !contender.encrypted ? treeDifference(expected, there)
            : contender.kind === 'offsite' ? treeDifference(new Map([...expected].map(([path, size]) => [path, storedSize(size, parseBytes(contender.chunk as string, '--chunk-sizes'))])), there)
              : there.size === expected.size ? undefined : `${there.size} objects for ${expected.size} files`;
          if (problem) throw new Error(`${contender.label}: the uploaded tree differs from the source: ${problem}`);
          const open = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
          if ((open.Uploads ?? []).length > 0) throw new Error(`${contender.label}: ${open.Uploads?.length} multipart uploads left open`);
          runs[i]?.push(result);
          console.log(`  round ${round + 1}: ${contender.label.padEnd(48)} ${result.seconds.toFixed(2).padStart(6)} s`);
        } finally {
          await dropBucket(client, bucket);
        }
      }
    }

    console.log(`\nresults (${(bytes / MiB).toFixed(0)} MiB, median of ${repeat}; CPU = client process tree / ceph daemons, median):`);
    const seconds = runs.map((r) => median(r.map((t) => t.seconds)));
    for (const [i, contender] of contenders.entries()) {
      const s = seconds[i] as number;
      const list = runs[i] ?? [];
      console.log(`  ${contender.label.padEnd(48)} ${s.toFixed(2).padStart(6)} s ${(bytes / MiB / s).toFixed(0).padStart(5)} MiB/s  ` +
        `CPU ${median(list.map((t) => t.cpuSeconds)).toFixed(1).padStart(5)} s / ${median(list.map((t) => t.serverCpuSeconds)).toFixed(1).padStart(5)} s  ` +
        `peak RSS ${Math.max(...list.map((t) => t.maxRssMb)).toFixed(0).padStart(4)} MB  (runs: ${list.map((t) => t.seconds.toFixed(2)).join(', ')} s)`);
    }

    if (opts.encrypted) {
      console.log('\nencrypted against plain (same setting, same run; issue 14 target <= 1.10x):');
      for (const [i, contender] of contenders.entries()) {
        if (!contender.encrypted) continue;
        const plain = contenders.findIndex((c) => !c.encrypted && c.baseline === contender.baseline && c.kind === contender.kind && c.concurrency === contender.concurrency && c.chunk === contender.chunk &&
          (c.kind === 'offsite' || c.label.replace('copy', 'crypt') === contender.label));
        console.log(`  ${contender.label}: ${((seconds[i] as number) / (seconds[plain] as number)).toFixed(2)}x the time of ${contenders[plain]?.label}`);
      }
    }
    const rcloneIndex = contenders.findIndex((c) => c.kind === 'rclone' && !c.encrypted && c.label.includes('(default)'));
    const reference = rcloneIndex >= 0 ? rcloneIndex : contenders.findIndex((c) => c.kind === 'rclone' && !c.encrypted);
    const rcloneSeconds = seconds[reference] as number;
    const offsiteIndexes = contenders.flatMap((c, i) => (c.kind === 'offsite' && !c.baseline && !c.encrypted ? [i] : []));
    const best = offsiteIndexes.reduce((a, b) => ((seconds[b] as number) < (seconds[a] as number) ? b : a));
    const defaultIndex = offsiteIndexes.find((i) => contenders[i]?.label.includes('(default)'));
    const cpu = runs.map((r) => median(r.map((t) => t.cpuSeconds)));
    const compare = (i: number): string => {
      const s = seconds[i] as number;
      return `${contenders[i]?.label}: time offsite/rclone = ${(s / rcloneSeconds).toFixed(2)}x (target <= 1.00x), throughput ${(rcloneSeconds / s).toFixed(2)}x rclone's, ` +
        `client CPU ${((cpu[i] as number) / (cpu[reference] as number)).toFixed(2)}x rclone's`;
    };
    console.log(`\nagainst ${contenders[reference]?.label} (${rcloneSeconds.toFixed(2)} s):`);
    if (defaultIndex !== undefined) console.log(`  ${compare(defaultIndex)}`);
    console.log(`  best setting: ${compare(best)}`);
    const rss = runs.map((r) => Math.max(...r.map((t) => t.maxRssMb)));
    for (const [i, contender] of contenders.entries()) {
      if (!contender.baseline) continue;
      // The same setting of this build: an encrypted baseline row against this build's encrypted row.
      const ours = contenders.findIndex((c) => !c.baseline && c.encrypted === contender.encrypted && c.kind === 'offsite' && c.concurrency === contender.concurrency && c.chunk === contender.chunk);
      console.log(`  ${compare(i)}`);
      console.log(`    offsite/baseline: time ${((seconds[ours] as number) / (seconds[i] as number)).toFixed(2)}x, client CPU ${((cpu[ours] as number) / (cpu[i] as number)).toFixed(2)}x, ` +
        `peak RSS ${((rss[ours] as number) / (rss[i] as number)).toFixed(2)}x`);
    }
    if (chunkSizes.length > 1) {
      for (const concurrency of concurrencies) {
        const row = chunkSizes.map((chunk) => {
          const i = contenders.findIndex((c) => c.kind === 'offsite' && !c.baseline && !c.encrypted && c.concurrency === concurrency && c.chunk === chunk.text);
          return `${chunk.text} ${(seconds[i] as number).toFixed(2)} s`;
        });
        console.log(`  --concurrency ${concurrency}: ${row.join(' vs ')}`);
      }
    }
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    await rgw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
