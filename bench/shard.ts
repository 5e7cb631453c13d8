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
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { adminClient, type S3TestServer } from '../test/s3/server.js';
import { projectRoot } from './lib.js';

const program = new Command('bench-shard')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--shards <list>', 'shard counts to run, comma-separated', '1,2,4')
  .option('--seed <n>', 'generator seed', '15')
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-shard'))
  .parse(process.argv);
const opts = program.opts<{ size: string; shards: string; seed: string; dir: string }>();

const MiB = 1024 * 1024;
const BACKUP = 'bench_backup';
const bin = join(projectRoot, 'bin', 'offsite.js');
const totalBytes = parseBytes(opts.size, '--size');
const counts = opts.shards.split(',').map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`--shards: "${s}" is not a positive integer`);
  return n;
});

// The gateway holds every object in RAM: room for one run plus what is still being freed.
process.env['OFFSITE_TEST_RGW_MEMSTORE_MIB'] ??= String(Math.max(4096, Math.ceil((3 * totalBytes) / MiB)));
const { rgwServer } = await import('../test/servers/rgw.js');

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** CPU seconds used so far by the given processes (utime + stime from /proc). */
function cpuOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks / CLOCK_TICKS;
}

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
function runShard(config: string, index: number, count: number, env: NodeJS.ProcessEnv): Promise<ShardRun> {
  const statsFile = join(opts.dir, `time-${count}-${index}`);
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%U %S %M', '-o', statsFile, process.execPath, bin, '--config', config, '--json', 'replicate', BACKUP, '--to', 'cloud', '--shard', `${index}/${count}`], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) { reject(new Error(`shard ${index}/${count} failed (${code}): ${stderr.slice(-2000)}`)); return; }
      const [user = 0, system = 0, rssKb = 0] = (readFileSync(statsFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
      const result = JSON.parse(stdout) as { destinations: { bytesWritten: number; status: string; shardSet?: { manifestWritten: boolean } }[] };
      const d = result.destinations[0];
      resolve({ seconds, cpuSeconds: user + system, maxRssMb: rssKb / 1024, bytesWritten: d?.bytesWritten ?? 0, status: d?.status ?? 'missing', wroteManifest: d?.shardSet?.manifestWritten === true });
    });
  });
}

function localTree(dir: string): Map<string, number> {
  const sizes = new Map<string, number>();
  const walk = (folder: string): void => {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path); else sizes.set(relative(dir, path), stat.size);
    }
  };
  walk(dir);
  return sizes;
}

async function bucketTree(client: S3Client, bucket: string, prefix: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) sizes.set((o.Key as string).slice(prefix.length), o.Size ?? 0);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return sizes;
}

async function dropBucket(client: S3Client, bucket: string): Promise<void> {
  for (const key of (await bucketTree(client, bucket, '')).keys()) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

async function main(): Promise<void> {
  const dir = opts.dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const made = await generateBackup({ root: join(dir, 'source'), name: BACKUP, totalBytes, seed: Number(opts.seed) });
  const expected = localTree(join(dir, 'source', BACKUP));
  const bytes = [...expected.values()].reduce((a, b) => a + b, 0);
  const rgwDir = join(dir, 'rgw');
  const handle = await rgwServer.start(rgwDir);
  const server = JSON.parse(handle.env['OFFSITE_TEST_S3'] as string) as S3TestServer;
  const client = adminClient(server);
  try {
    const serverPids = ['client.rgw.a', 'osd.0', 'mon.a'].map((n) => Number(readFileSync(join(rgwDir, 'run', `${n}.pid`), 'utf8').trim()));
    const config = join(dir, 'offsite.yaml');
    // Secrets and the bucket reach the shards through the environment, never a file.
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
      'destinations:',
      `  cloud: { type: s3, endpoint: ${JSON.stringify(server.endpoint)}, region: ${server.region}, bucket: "\${OFFSITE_BENCH_BUCKET}", ` +
        'accessKeyId: "${OFFSITE_BENCH_S3_ACCESS_KEY}", secretAccessKey: "${OFFSITE_BENCH_S3_SECRET_KEY}" }',
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));
    console.log(`${made.files} files, ${(bytes / MiB).toFixed(0)} MiB, to Ceph RGW (memstore) at ${server.endpoint}; shard counts ${counts.join(', ')}, every shard a process, all started at once, a fresh bucket per run`);
    const rows: string[] = [];
    for (const n of counts) {
      const bucket = `bench-shard-${n}-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      try {
        const env = { OFFSITE_BENCH_BUCKET: bucket, OFFSITE_BENCH_S3_ACCESS_KEY: server.accessKeyId, OFFSITE_BENCH_S3_SECRET_KEY: server.secretAccessKey };
        const serverBefore = cpuOf(serverPids);
        const started = process.hrtime.bigint();
        const shards = await Promise.all(Array.from({ length: n }, (_, i) => runShard(config, i, n, env)));
        const wall = Number(process.hrtime.bigint() - started) / 1e9;
        const serverCpu = cpuOf(serverPids) - serverBefore;
        const there = await bucketTree(client, bucket, `${BACKUP}/`);
        if (!there.has('.offsite/manifest.json')) throw new Error(`${n} shards: no manifest after the run`);
        const leftovers = [...there.keys()].filter((k) => k.startsWith('.offsite/') && k !== '.offsite/manifest.json');
        if (leftovers.length > 0) throw new Error(`${n} shards: left ${leftovers.join(', ')}`);
        there.delete('.offsite/manifest.json');
        const wrong = [...expected].filter(([k, size]) => there.get(k) !== size).length + [...there.keys()].filter((k) => !expected.has(k)).length;
        if (wrong > 0) throw new Error(`${n} shards: ${wrong} keys differ from the source`);
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
    client.destroy();
    await handle.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
