/**
 * Ceph RGW helpers for the benchmarks that start the gateway of test/servers/rgw.ts
 * (bench/s3-cli.ts, bench/shard.ts, bench/reuse.ts, bench/slow-destination.ts): starting it with
 * room for the data a benchmark sends, the destination section and rclone remote that point at
 * it (secrets through the environment, never a file), listing and dropping buckets. The OSD keeps
 * objects in RAM (memstore), so a benchmark deletes what a run uploaded and waits until the OSD
 * has really freed it before the next run (a garbage collection running during a measurement
 * would skew it).
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminClient, removeBucket } from '../test/s3/server.js';
import { rgwServer, type S3TestServer } from '../test/servers/rgw.js';

const MiB = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface BenchRgw {
  readonly server: S3TestServer;
  /** A plain SDK client for set-up and checks (destroyed by `stop`). */
  readonly client: S3Client;
  /** The gateway's work folder (its admin sockets, for `osdBytesUsed`). */
  readonly dir: string;
  /** radosgw, ceph-osd and ceph-mon, for their CPU (`cpuOf`). */
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

/**
 * Starts the gateway in `dir` with room in RAM for `holdsBytes` (at least 4 GiB; an
 * OFFSITE_TEST_RGW_MEMSTORE_MIB already set wins).
 */
export async function startRgw(dir: string, holdsBytes: number): Promise<BenchRgw> {
  process.env['OFFSITE_TEST_RGW_MEMSTORE_MIB'] ??= String(Math.max(4096, Math.ceil(holdsBytes / MiB)));
  const handle = await rgwServer.start(dir);
  const server = JSON.parse(handle.env['OFFSITE_TEST_S3'] as string) as S3TestServer;
  const client = adminClient(server);
  const pids = ['client.rgw.a', 'osd.0', 'mon.a'].map((n) => Number(readFileSync(join(dir, 'run', `${n}.pid`), 'utf8').trim()));
  return {
    server, client, dir, pids,
    stop: async () => {
      client.destroy();
      await handle.stop();
    },
  };
}

/** The variables `s3ConfigSection` refers to; hand them to the child's environment. */
export function s3SecretsEnv(server: S3TestServer): NodeJS.ProcessEnv {
  return { OFFSITE_BENCH_S3_ACCESS_KEY: server.accessKeyId, OFFSITE_BENCH_S3_SECRET_KEY: server.secretAccessKey };
}

/**
 * A `type: s3` destination as a YAML flow mapping, the keys read from the environment
 * (`s3SecretsEnv`); `bucket` is written as is (a name, or `"${VARIABLE}"`).
 */
export function s3ConfigSection(server: S3TestServer, bucket: string, endpoint = server.endpoint): string {
  return `{ type: s3, endpoint: ${JSON.stringify(endpoint)}, region: ${server.region}, bucket: ${bucket}, ` +
    'accessKeyId: "${OFFSITE_BENCH_S3_ACCESS_KEY}", secretAccessKey: "${OFFSITE_BENCH_S3_SECRET_KEY}" }';
}

/** rclone's remote `rgw:` (type s3, provider Ceph, path style) through RCLONE_CONFIG_RGW_* variables. */
export function rcloneRgwEnv(server: S3TestServer, endpoint = server.endpoint): NodeJS.ProcessEnv {
  return {
    RCLONE_CONFIG_RGW_TYPE: 's3', RCLONE_CONFIG_RGW_PROVIDER: 'Ceph', RCLONE_CONFIG_RGW_ENDPOINT: endpoint,
    RCLONE_CONFIG_RGW_REGION: server.region, RCLONE_CONFIG_RGW_ACCESS_KEY_ID: server.accessKeyId,
    RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY: server.secretAccessKey, RCLONE_CONFIG_RGW_FORCE_PATH_STYLE: 'true',
  };
}

/** Key (relative to `prefix`) -> size of every object under `prefix`. */
export async function bucketSizes(client: S3Client, bucket: string, prefix: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
    for (const item of page.Contents ?? []) if (item.Key !== undefined) sizes.set(item.Key.slice(prefix.length), item.Size ?? 0);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return sizes;
}

/** Aborts open uploads, deletes every object and the bucket; a bucket that does not exist is fine. */
export async function dropBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await removeBucket(client, bucket);
  } catch (err) {
    if ((err as { name?: string }).name !== 'NoSuchBucket') throw err;
  }
}

/** Bytes the OSD holds, from its admin socket (`ceph df` needs a ceph-mgr, which this cluster lacks). */
export function osdBytesUsed(rgwDir: string): number | undefined {
  const run = spawnSync('ceph', ['-c', join(rgwDir, 'ceph.conf'), '--admin-daemon', join(rgwDir, 'run', 'osd.0.asok'), 'perf', 'dump', 'osd'], { timeout: 10_000 });
  if (run.status !== 0) return undefined;
  try {
    const used = (JSON.parse(run.stdout.toString()) as { osd?: { stat_bytes_used?: number } }).osd?.stat_bytes_used;
    return typeof used === 'number' ? used : undefined;
  } catch {
    return undefined;
  }
}

/** Waits (at most 120 s) until the OSD is back to `baseline` + 64 MiB: the last run's data is gone. */
export async function waitForFreedData(rgwDir: string, baseline: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const used = osdBytesUsed(rgwDir);
    if (used === undefined || used <= baseline + 64 * MiB) return;
    if (Date.now() > deadline) {
      console.log(`  (warning: the OSD still holds ${(used / MiB).toFixed(0)} MiB after 120 s; going on)`);
      return;
    }
    await sleep(1000);
  }
}
