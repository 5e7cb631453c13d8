/**
 * Sharding benchmark (`npm run bench:shard`, issue 15): the same generated backup (1 GiB by
 * default) replicated to a throwaway Ceph RADOS Gateway (test/servers/rgw.ts: single node,
 * memstore, 127.0.0.1) by 1, 2 and 4 shards (`offsite replicate NAME --shard i/n`), each shard a
 * separate process, all started at once. On this machine the shards share its cores (and the
 * gateway's), so the point is not speed-up but that the work divides: per n it reports the wall
 * time (first start to last exit), the CPU (user + system) and peak RSS of each shard, the
 * gateway's CPU, and the data bytes sent summed over the shards against the backup's size
 * (target <= 1.02x: no file is sent twice). Every run gets a fresh bucket, and is checked after:
 * exactly the source's keys and sizes, one manifest, no shard records left, no open uploads.
 *
 *   npm run bench:shard
 *   npm run bench:shard -- --size 64MiB --shards 1,2
 */
import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import { cpuOf, freshBackup, offsiteBin as bin, positiveIntegers, timedAsync, treeDifference } from './lib.js';
import { bucketSizes, dropBucket, s3ConfigSection, s3SecretsEnv, startRgw } from './rgw.js';

const program = new Command('bench-shard')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--shards <list>', 'shard counts to run, comma-separated', '1,2,4')
  .option('--seed <n>', 'generator seed', '15')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-shard'))
  .parse(process.argv);
const opts = program.opts<{ size: string; shards: string; seed: string; dir: string }>();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
const totalBytes = parseBytes(opts.size, '--size');
const counts = positiveIntegers(opts.shards, '--shards');

interface ShardRun {
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly maxRssMb: number;
  readonly bytesWritten: number;
  readonly status: string;
  /** This shard completed the set and wrote the manifest. */
  readonly wroteManifest: boolean;
}

/** One shard as a child process under GNU time; resolves with its figures, rejects when it fails. */
async function runShard(config: string, index: number, count: number, env: NodeJS.ProcessEnv): Promise<ShardRun> {
  const run = await timedAsync(process.execPath, [bin, '--config', config, '--json', 'replicate', BACKUP, '--to', 'cloud', '--shard', `${index}/${count}`], { env })
    .catch((err: unknown) => { throw new Error(`shard ${index}/${count}: ${(err as Error).message}`); });
  const result = JSON.parse(run.stdout) as { destinations: { bytesWritten: number; status: string; shardSet?: { manifestWritten: boolean } }[] };
  const d = result.destinations[0];
  return { ...run, bytesWritten: d?.bytesWritten ?? 0, status: d?.status ?? 'missing', wroteManifest: d?.shardSet?.manifestWritten === true };
}

async function main(): Promise<void> {
  const dir = opts.dir;
  const { files, expected, bytes } = await freshBackup(dir, BACKUP, totalBytes, Number(opts.seed));
  // The gateway holds every object in RAM: room for one run plus what is still being freed.
  const rgw = await startRgw(join(dir, 'rgw'), 3 * totalBytes);
  const { server, client, pids: serverPids } = rgw;
  try {
    const config = join(dir, 'offsite.yaml');
    // Secrets and the bucket reach the shards through the environment, never a file.
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
      'destinations:',
      `  cloud: ${s3ConfigSection(server, '"${OFFSITE_BENCH_BUCKET}"')}`,
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));
    console.log(`${files} files, ${(bytes / MiB).toFixed(0)} MiB, to Ceph RGW (memstore) at ${server.endpoint}; shard counts ${counts.join(', ')}, every shard a process, all started at once, a fresh bucket per run`);
    const rows: string[] = [];
    for (const n of counts) {
      const bucket = `bench-shard-${n}-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      try {
        const env = { OFFSITE_BENCH_BUCKET: bucket, ...s3SecretsEnv(server) };
        const serverBefore = cpuOf(serverPids);
        const started = process.hrtime.bigint();
        const shards = await Promise.all(Array.from({ length: n }, (_, i) => runShard(config, i, n, env)));
        const wall = Number(process.hrtime.bigint() - started) / 1e9;
        const serverCpu = cpuOf(serverPids) - serverBefore;
        const there = await bucketSizes(client, bucket, `${BACKUP}/`);
        if (!there.has('.offsite/manifest.json')) throw new Error(`${n} shards: no manifest after the run`);
        const leftovers = [...there.keys()].filter((k) => k.startsWith('.offsite/') && k !== '.offsite/manifest.json');
        if (leftovers.length > 0) throw new Error(`${n} shards: left ${leftovers.join(', ')}`);
        there.delete('.offsite/manifest.json');
        const problem = treeDifference(expected, there);
        if (problem) throw new Error(`${n} shards: the uploaded tree differs from the source: ${problem}`);
        if (((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).length > 0) throw new Error(`${n} shards: multipart uploads left open`);
        if (shards.filter((s) => s.wroteManifest).length !== 1) throw new Error(`${n} shards: ${shards.map((s) => s.status).join(', ')}: not exactly one wrote the manifest`);
        const sent = shards.reduce((sum, s) => sum + s.bytesWritten, 0);
        const row = `  ${String(n).padStart(2)} shard(s): wall ${wall.toFixed(2).padStart(6)} s  ${(bytes / MiB / wall).toFixed(0).padStart(5)} MiB/s  ` +
          `sent ${(sent / bytes).toFixed(3)}x the backup (target <= 1.02x)  gateway CPU ${serverCpu.toFixed(1)} s\n` +
          shards.map((s, i) => `      shard ${i}/${n}: ${s.seconds.toFixed(2).padStart(6)} s, CPU ${s.cpuSeconds.toFixed(1).padStart(5)} s, peak RSS ${s.maxRssMb.toFixed(0).padStart(4)} MB, ` +
            `${(s.bytesWritten / MiB).toFixed(1).padStart(7)} MiB sent, ${s.wroteManifest ? 'wrote the manifest' : s.status}`).join('\n');
        rows.push(row);
        console.log(row);
      } finally {
        await dropBucket(client, bucket);
      }
    }
    console.log(`\nresults (${(bytes / MiB).toFixed(0)} MiB; the shards share this machine's cores with the gateway):\n${rows.join('\n')}`);
  } finally {
    await rgw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
