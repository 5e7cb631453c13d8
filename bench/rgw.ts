/**
 * Ceph RGW helpers for the benchmarks that start the gateway of test/servers/rgw.ts
 * (bench/s3-cli.ts, bench/slow-destination.ts): the OSD keeps objects in RAM (memstore), so a
 * benchmark deletes what a run uploaded and waits until the OSD has really freed it before the
 * next run (a garbage collection running during a measurement would skew it).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const MiB = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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
