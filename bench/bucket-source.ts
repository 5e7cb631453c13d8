/**
 * Reading a bucket source (`npm run bench:bucket-source`): the path most real runs take, a backup
 * that milvus-backup wrote to its MinIO/S3 bucket, read by offsite's `type: minio` source and
 * written to one local folder. A generated backup (scripts/gen-backup.ts, a realistic mix of file
 * sizes, 512 MiB by default) is uploaded once to a throwaway Ceph RADOS Gateway
 * (test/servers/rgw.ts: single node, memstore, 127.0.0.1) under `backup/NAME/`, then copied from
 * that bucket, in the same run, by
 *
 *   (a) `offsite replicate NAME --to disk` (source `type: minio` on the bucket, one `local`
 *       destination; offsite makes every file durable before it records it);
 *       with `--baseline DIR`, also the offsite of another built checkout (e.g. the last commit,
 *       `git archive HEAD | tar -x -C DIR`, node_modules linked, `npx tsc`), same settings;
 *   (b) `env -u AWS_CA_BUNDLE rclone copy rgw:BUCKET/backup/NAME DIR` (rclone's S3 remote through
 *       RCLONE_CONFIG_RGW_* variables: type s3, provider Ceph, path style; its default
 *       `--transfers 4`, `--rclone-transfers 8` adds variants) followed by `sync -f DIR`, since
 *       rclone returns with the data still in the page cache.
 *
 * Every run writes into a folder that did not exist before (all are removed at the end: see
 * bench/local.ts `measureAll` for why not in between), is a child process timed from spawn to
 * exit under GNU time, and is checked afterwards: same files, same sizes as the source (offsite's
 * `.offsite/` aside, its manifest present). Contenders run once per round in a rotating order;
 * the median of `--repeat` rounds is reported with offsite's time over rclone + sync (issue 13's
 * target: <= 0.90x).
 *
 * `--trace` puts a request-logging proxy between offsite and the gateway and prints, per contender,
 * the requests it sent by kind (listing pages, GETs whole and ranged, HEADs): what a change of the
 * read path did to the requests, not only to the time.
 *
 *   npm run bench:bucket-source
 *   npm run bench:bucket-source -- --size 256MiB --repeat 3 --trace
 *   npm run bench:bucket-source -- --baseline /tmp/offsite-head
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import {
  baselineBinOf, clean, cpuOf, freshBackup, loadAverage, offsiteBin as bin, positiveInteger, positiveIntegers, printServerResults, type ServerTimed, silenceSdkVersionWarning, sizesUnder, timedAsync, treeDifference,
} from './lib.js';
import { bucketSizes, rcloneRgwEnv, startRgw } from './rgw.js';

const program = new Command('bench-bucket-source')
  .option('--size <size>', 'backup size', '512MiB')
  .option('--repeat <n>', 'runs of each contender (the median is reported)', '2')
  .option('--seed <n>', 'generator seed', '42')
  .option('--concurrency <list>', 'offsite --concurrency values to try, comma-separated (default: offsite\'s own)')
  .option('--rclone-transfers <list>', 'rclone --transfers values to try (4 is its default)', '4')
  .option('--baseline <dir>', 'another built checkout whose offsite runs too, with the same settings (before/after in one run)')
  .option('--trace', 'count offsite\'s requests to the gateway by kind (a logging proxy in between)')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-bucket-source'))
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; seed: string; concurrency?: string; rcloneTransfers: string; baseline?: string; trace?: boolean; dir: string }>();
silenceSdkVersionWarning();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
const BUCKET = 'milvus-bucket';
const ROOT_PATH = 'backup';
/** Issue 13: offsite from a bucket to one local folder, against rclone copy + sync. */
const TARGET = 0.9;
const baselineBin = baselineBinOf(opts.baseline);
const repeat = positiveInteger(opts.repeat, '--repeat');
const concurrencies: (number | undefined)[] = opts.concurrency === undefined ? [undefined] : positiveIntegers(opts.concurrency, '--concurrency');
const rcloneTransfers = positiveIntegers(opts.rcloneTransfers, '--rclone-transfers');
const totalBytes = parseBytes(opts.size, '--size');

/** Server CPU = radosgw + ceph-osd + ceph-mon during the run; requests only with `--trace`. */
type Run = ServerTimed;

interface Contender {
  readonly label: string;
  readonly kind: 'offsite' | 'rclone';
  readonly baseline?: boolean;
  readonly concurrency?: number;
  /** Copies the backup into `dest` (which does not exist yet). */
  readonly run: (dest: string) => Promise<Run>;
}

/**
 * A proxy that forwards to the gateway and sorts the requests it sees by kind. Only request
 * heads cross it towards the server (a source is read, never written), so every request line
 * starts a request.
 */
async function startTracer(targetPort: number): Promise<{ port: number; take: () => Map<string, number>; close: () => Promise<void> }> {
  let counts = new Map<string, number>();
  const open = new Set<Socket>();
  const count = (kind: string): void => { counts.set(kind, (counts.get(kind) ?? 0) + 1); };
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    open.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let tail = '';
    client.on('data', (data: Buffer) => {
      const text = tail + data.toString('latin1');
      const heads = text.split('\r\n\r\n');
      tail = heads.pop() ?? '';
      for (const head of heads) {
        const line = /^(\w+) (\S+) HTTP/.exec(head);
        if (!line) continue;
        const [, method, target] = line as unknown as [string, string, string];
        const query = target.includes('?') ? target.slice(target.indexOf('?') + 1) : '';
        if (method === 'GET' && /(^|&)list-type=2/.test(query)) count('GET listing page');
        else if (method === 'GET' && /(^|&)location/.test(query)) count('GET bucket location');
        else if (method === 'GET') count(/\r\nrange:/i.test(head) ? 'GET ranged' : 'GET whole object');
        else count(`${method}${method === 'HEAD' && target.split('/').length <= 2 ? ' bucket' : ''}`);
      }
      if (tail.length > 64 * 1024) tail = tail.slice(-64 * 1024);
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', () => resolve()); });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    take: () => { const taken = counts; counts = new Map(); return taken; },
    close: () => new Promise<void>((resolve) => { for (const s of open) s.destroy(); server.close(() => resolve()); }),
  };
}

async function main(): Promise<void> {
  const dir = opts.dir;
  const { files, local, expected, bytes, largest } = await freshBackup(dir, BACKUP, totalBytes, Number(opts.seed));

  const rgw = await startRgw(join(dir, 'rgw'), 2 * totalBytes);
  const { server, client, pids: serverPids } = rgw;
  const tracer = opts.trace ? await startTracer(Number(new URL(server.endpoint).port)) : undefined;
  const outputs: string[] = [];
  try {
    const rcloneVersion = spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'version']).stdout?.toString().split('\n')[0] ?? 'rclone (version unknown)';
    // The source bucket, as milvus-backup leaves it: BUCKET/backup/NAME/...
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const upload = spawnSync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'copy', '--config', '/dev/null', '--s3-force-path-style', '--transfers', '8', local, `rgw:${BUCKET}/${ROOT_PATH}/${BACKUP}`],
      { env: { ...process.env, ...rcloneRgwEnv(server) }, stdio: ['ignore', 'ignore', 'pipe'] });
    if (upload.status !== 0) throw new Error(`uploading the backup with rclone failed: ${upload.stderr.toString().slice(-2000)}`);
    const uploaded = treeDifference(expected, await bucketSizes(client, BUCKET, `${ROOT_PATH}/${BACKUP}/`));
    if (uploaded) throw new Error(`the uploaded backup differs from the generated one: ${uploaded}`);

    // Secrets reach the children through the environment, never a file; so does each run's folder.
    const env = { OFFSITE_BENCH_S3_ACCESS_KEY: server.accessKeyId, OFFSITE_BENCH_S3_SECRET_KEY: server.secretAccessKey };
    const config = join(dir, 'offsite.yaml');
    const port = tracer?.port ?? Number(new URL(server.endpoint).port);
    writeFileSync(config, [
      `source: { type: minio, address: 127.0.0.1, port: ${port}, useSSL: false, bucketName: ${BUCKET}, rootPath: ${ROOT_PATH}, region: ${server.region}, ` +
        'accessKeyID: "${OFFSITE_BENCH_S3_ACCESS_KEY}", secretAccessKey: "${OFFSITE_BENCH_S3_SECRET_KEY}" }',
      'destinations:',
      '  disk: { type: local, root: "${OFFSITE_BENCH_DEST}" }',
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));

    const measured = async (command: string, args: readonly string[], runEnv: NodeJS.ProcessEnv): Promise<Run> => {
      tracer?.take();
      const serverBefore = cpuOf(serverPids);
      const result = await timedAsync(command, args, { env: runEnv });
      return { seconds: result.seconds, cpuSeconds: result.cpuSeconds, maxRssMb: result.maxRssMb, serverCpuSeconds: cpuOf(serverPids) - serverBefore, ...(tracer ? { requests: tracer.take() } : {}) };
    };
    const contenders: Contender[] = [];
    for (const transfers of rcloneTransfers) {
      contenders.push({
        label: `rclone copy --transfers ${transfers}${transfers === 4 ? ' (default)' : ''} + sync`,
        kind: 'rclone',
        run: async (dest) => {
          const copied = await measured('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'copy', '--config', '/dev/null', '--s3-force-path-style', '--transfers', String(transfers),
            `rgw:${BUCKET}/${ROOT_PATH}/${BACKUP}`, join(dest, BACKUP)], rcloneRgwEnv(server));
          const flushed = await timedAsync('sync', ['-f', dest]);
          return { ...copied, seconds: copied.seconds + flushed.seconds, cpuSeconds: copied.cpuSeconds + flushed.cpuSeconds };
        },
      });
    }
    for (const concurrency of concurrencies) {
      for (const [launcher, baseline] of [[bin, false], ...(baselineBin !== undefined ? [[baselineBin, true] as const] : [])] as const) {
        contenders.push({
          label: `${baseline ? 'baseline' : 'offsite'} replicate${concurrency === undefined ? '' : ` --concurrency ${concurrency}`}`,
          kind: 'offsite',
          baseline,
          ...(concurrency !== undefined ? { concurrency } : {}),
          run: (dest) => measured(process.execPath, [launcher, '--config', config, '--quiet', 'replicate', BACKUP, '--to', 'disk',
            ...(concurrency === undefined ? [] : ['--concurrency', String(concurrency)])], { ...env, OFFSITE_BENCH_DEST: dest }),
        });
      }
    }

    console.log(`\nload average before: ${loadAverage()}`);
    console.log(`${files} files, ${(bytes / MiB).toFixed(0)} MiB (largest ${(largest / MiB).toFixed(1)} MiB, ${[...expected.values()].filter((s) => s > 8 * MiB).length} above 8 MiB) ` +
      `in s3://${BUCKET}/${ROOT_PATH}/${BACKUP}/ on Ceph RGW (memstore) at ${server.endpoint}, to one local folder; ` +
      `${contenders.length} contenders, median of ${repeat}, rotating order${tracer ? `; offsite through a request-counting proxy on port ${tracer.port}` : ''}`);
    console.log(`${rcloneVersion}: RCLONE_CONFIG_RGW_TYPE=s3 PROVIDER=Ceph, --s3-force-path-style, its defaults otherwise, then sync -f`);
    console.log('offsite: source type minio (defaults), destination type local, quietPeriod 0s');
    if (baselineBin !== undefined) console.log(`baseline: ${baselineBin}, same settings`);

    let fresh = 0;
    const runs: Run[][] = contenders.map(() => []);
    for (let round = 0; round < repeat; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const i = (round + k) % contenders.length;
        const contender = contenders[i] as Contender;
        const dest = join(dir, `out-${fresh++}`);
        outputs.push(dest);
        const result = await contender.run(dest);
        const there = sizesUnder(join(dest, BACKUP), '.offsite');
        if (contender.kind === 'offsite' && sizesUnder(join(dest, BACKUP, '.offsite')).get('manifest.json') === undefined) throw new Error(`${contender.label}: no manifest after the run`);
        const problem = treeDifference(expected, there);
        if (problem) throw new Error(`${contender.label}: the copy differs from the source: ${problem}`);
        runs[i]?.push(result);
        console.log(`  round ${round + 1}: ${contender.label.padEnd(40)} ${result.seconds.toFixed(2).padStart(6)} s`);
      }
    }

    const { seconds, cpu } = printServerResults(bytes, repeat, contenders.map((c) => c.label), runs);
    const reference = Math.max(0, contenders.findIndex((c) => c.kind === 'rclone' && c.label.includes('(default)')));
    const rcloneSeconds = seconds[reference] as number;
    console.log(`\nagainst ${contenders[reference]?.label} (${rcloneSeconds.toFixed(2)} s):`);
    for (const [i, contender] of contenders.entries()) {
      if (contender.kind !== 'offsite') continue;
      const s = seconds[i] as number;
      console.log(`  ${contender.label}: time offsite/rclone+sync = ${(s / rcloneSeconds).toFixed(2)}x (target <= ${TARGET.toFixed(2)}x), ` +
        `client CPU ${((cpu[i] as number) / (cpu[reference] as number)).toFixed(2)}x rclone's`);
      if (!contender.baseline) continue;
      const ours = contenders.findIndex((c) => c.kind === 'offsite' && !c.baseline && c.concurrency === contender.concurrency);
      console.log(`    offsite/baseline: time ${((seconds[ours] as number) / s).toFixed(2)}x, client CPU ${((cpu[ours] as number) / (cpu[i] as number)).toFixed(2)}x`);
    }
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    await tracer?.close();
    await rgw.stop();
    clean(...outputs);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
