/**
 * Pull benchmark (`npm run bench:pull`): the way back. A generated backup (a realistic mix of file
 * sizes from scripts/gen-backup.ts, 512 MiB by default) is replicated once to an `s3` destination
 * on a throwaway Ceph RADOS Gateway (test/servers/rgw.ts: single node, memstore, 127.0.0.1); then,
 * in the same run, into a fresh local folder each time,
 *
 *   (a) `offsite pull NAME --from cloud --to DIR` (every file hashed while it downloads and
 *       committed only when it matches the manifest, then the folder read back and checked with
 *       milvus-backup's completion rule); with `--baseline DIR`, also the offsite of another built
 *       checkout (e.g. the last commit, `git archive HEAD | tar -x -C DIR`, node_modules linked,
 *       `npx tsc`);
 *   (b) `env -u AWS_CA_BUNDLE rclone copy rgw:BUCKET/NAME DIR` (its default transfer settings,
 *       written out: see RCLONE_SETTINGS), then `sync -f DIR`: offsite's copy is durable when it
 *       returns (fsync before rename), rclone's is in the page cache until the sync.
 *
 * rclone copies the bucket's keys as they are, offsite's `.offsite/` folder included (a few KB);
 * offsite leaves exactly the backup. Each run is a child process timed from spawn to exit under
 * GNU time (client CPU, peak RSS), the gateway's CPU from /proc. After each run the folder is
 * compared with the source tree (same files, same sizes). Contenders run in a rotating order (the
 * machine's load drifts); the median of `--repeat` rounds is reported with the ratio to
 * rclone + sync and issue 13's target (<= 1.0x, verification included).
 *
 *   npm run bench:pull
 *   npm run bench:pull -- --size 256MiB --repeat 3 --baseline /tmp/offsite-head
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import {
  baselineBinOf, cpuOf, freshBackup, loadAverage, offsiteBin as bin, positiveInteger, printServerResults, type ServerTimed, silenceSdkVersionWarning, sizesUnder, timed as timedChild, treeDifference,
} from './lib.js';
import { rcloneRgwEnv, s3ConfigSection, s3SecretsEnv, startRgw } from './rgw.js';

const program = new Command('bench-pull')
  .option('--size <size>', 'backup size', '512MiB')
  .option('--repeat <n>', 'runs of each contender (the median is reported)', '3')
  .option('--seed <n>', 'generator seed', '42')
  .option('--baseline <dir>', 'another built checkout whose offsite runs too (before/after in one run)')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-pull'))
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; seed: string; dir: string; baseline?: string }>();
silenceSdkVersionWarning();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
const BUCKET = 'bench-pull';
/** Issue 13: pull in at most rclone copy + sync's time, verification included. */
const TARGET = 1.0;
const baselineBin = baselineBinOf(opts.baseline);
const repeat = positiveInteger(opts.repeat, '--repeat');
const totalBytes = parseBytes(opts.size, '--size');

/** rclone 1.60's defaults for an S3 download, passed explicitly: 4 files at once, 8 checkers, no multi-thread download below 250 MiB. */
const RCLONE_SETTINGS = ['--transfers', '4', '--checkers', '8', '--multi-thread-cutoff', '250Mi', '--multi-thread-streams', '4'];

/** Server CPU = radosgw + ceph-osd + ceph-mon during the run. */
type Timed = ServerTimed;

interface Contender {
  readonly label: string;
  readonly kind: 'offsite' | 'rclone';
  /** Copies the backup into `target` (a folder that does not exist yet); returns what it cost. */
  readonly run: (target: string) => Timed;
}

async function main(): Promise<void> {
  const dir = opts.dir;
  const { files, expected, bytes, largest } = await freshBackup(dir, BACKUP, totalBytes, Number(opts.seed));
  const rgw = await startRgw(join(dir, 'rgw'), 2 * totalBytes);
  const { server, client, pids: serverPids } = rgw;
  try {
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
      'destinations:',
      `  cloud: ${s3ConfigSection(server, BUCKET)}`,
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));
    const secrets = s3SecretsEnv(server);
    timedChild(process.execPath, [bin, '--config', config, '--quiet', 'replicate', BACKUP, '--to', 'cloud'], { env: secrets });
    const rcloneVersion = spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'version']).stdout?.toString().split('\n')[0] ?? 'rclone (version unknown)';

    const timed = (command: string, args: readonly string[], env: NodeJS.ProcessEnv): Timed => {
      const serverBefore = cpuOf(serverPids);
      const result = timedChild(command, args, { env });
      return { ...result, serverCpuSeconds: cpuOf(serverPids) - serverBefore };
    };
    const pull = (launcher: string) => (target: string): Timed => timed(process.execPath, [launcher, '--config', config, '--quiet', 'pull', BACKUP, '--from', 'cloud', '--to', target], secrets);
    const contenders: Contender[] = [
      {
        label: 'rclone copy + sync -f', kind: 'rclone',
        run: (target) => {
          const copied = timed('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'copy', '--config', '/dev/null', '--s3-force-path-style', ...RCLONE_SETTINGS, `rgw:${BUCKET}/${BACKUP}`, join(target, BACKUP)], rcloneRgwEnv(server));
          const flushed = timed('sync', ['-f', join(target, BACKUP)], {});
          return { seconds: copied.seconds + flushed.seconds, cpuSeconds: copied.cpuSeconds + flushed.cpuSeconds, maxRssMb: copied.maxRssMb, serverCpuSeconds: copied.serverCpuSeconds + flushed.serverCpuSeconds };
        },
      },
      { label: 'offsite pull', kind: 'offsite', run: pull(bin) },
      ...(baselineBin !== undefined ? [{ label: 'baseline pull', kind: 'offsite' as const, run: pull(baselineBin) }] : []),
    ];

    console.log(`\nload average before: ${loadAverage()}`);
    console.log(`${files} files, ${(bytes / MiB).toFixed(0)} MiB (largest ${(largest / MiB).toFixed(1)} MiB), from Ceph RGW (memstore) at ${server.endpoint} ` +
      `into a fresh local folder; ${contenders.length} contenders, median of ${repeat}, rotating order`);
    console.log(`${rcloneVersion}: ${RCLONE_SETTINGS.join(' ')} (its defaults)`);
    if (baselineBin !== undefined) console.log(`baseline: ${baselineBin}`);
    const runs: Timed[][] = contenders.map(() => []);
    let fresh = 0;
    for (let round = 0; round < repeat; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const i = (round + k) % contenders.length;
        const contender = contenders[i] as Contender;
        const target = join(dir, `target-${fresh++}`);
        const result = contender.run(target);
        const problem = treeDifference(expected, sizesUnder(join(target, BACKUP)), '.offsite/');
        if (problem) throw new Error(`${contender.label}: the pulled tree differs from the source: ${problem}`);
        rmSync(target, { recursive: true, force: true });
        runs[i]?.push(result);
        console.log(`  round ${round + 1}: ${contender.label.padEnd(28)} ${result.seconds.toFixed(2).padStart(6)} s`);
      }
    }

    const { seconds, cpu } = printServerResults(bytes, repeat, contenders.map((c) => c.label), runs);
    const rcloneSeconds = seconds[0] as number;
    console.log(`\nagainst rclone copy + sync -f (${rcloneSeconds.toFixed(2)} s):`);
    for (let i = 1; i < contenders.length; i++) {
      console.log(`  ${contenders[i]?.label}: time ${((seconds[i] as number) / rcloneSeconds).toFixed(2)}x (target <= ${TARGET.toFixed(2)}x), client CPU ${((cpu[i] as number) / (cpu[0] as number)).toFixed(2)}x`);
    }
    if (baselineBin !== undefined) console.log(`  offsite/baseline: time ${((seconds[1] as number) / (seconds[2] as number)).toFixed(2)}x, client CPU ${((cpu[1] as number) / (cpu[2] as number)).toFixed(2)}x`);
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    await rgw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
