/**
 * Benchmark helpers: timing external commands and our CLI in child processes, with peak RSS
 * from GNU time, so every figure is measured in the same run on the same (shared, noisy)
 * machine and reported as a ratio to a baseline.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(fileURLToPath(new URL('../../', import.meta.url)));

export interface Timed {
  readonly seconds: number;
  readonly maxRssMb: number;
}

/** Runs a command under /usr/bin/time, failing loudly when it fails. */
export function timed(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Timed {
  const rssFile = join('/tmp', `offsite-bench-rss-${process.pid}`);
  const started = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-f', '%M', '-o', rssFile, command, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${run.status}): ${run.stderr.toString().slice(-2000)}`);
  const rssKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
  rmSync(rssFile, { force: true });
  return { seconds, maxRssMb: rssKb / 1024 };
}

/** Drops a destination folder between runs. */
export function clean(...paths: string[]): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
}

/** Makes sure a Debian package's command exists (benchmarks may install baselines). */
export function ensureCommand(command: string, aptPackage: string): boolean {
  if (existsSync(`/usr/bin/${command}`)) return true;
  const run = spawnSync('sh', ['-c', `apt-get install -y --no-install-recommends ${aptPackage} || (apt-get update && apt-get install -y --no-install-recommends ${aptPackage})`], { stdio: 'ignore' });
  return run.status === 0 && existsSync(`/usr/bin/${command}`);
}

/** The median; for an even count the mean of the two middle values (with --repeat 2, not the slower run). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const half = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[half] as number) : ((sorted[half - 1] as number) + (sorted[half] as number)) / 2;
}

export function ratio(ours: number, theirs: number): string {
  return `${(ours / theirs).toFixed(2)}x`;
}
