/**
 * Benchmark helpers: timing external commands and our CLI in child processes, with CPU and peak
 * RSS from GNU time, so every figure is measured in the same run on the same (shared, noisy)
 * machine and reported as a ratio to a baseline; the checks every benchmark makes of what a run
 * left (same files, same sizes) and the small option parsers they share.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateBackup } from '../scripts/gen-backup.js';

export const projectRoot = resolve(fileURLToPath(new URL('../../', import.meta.url)));
/** The built CLI of this checkout. */
export const offsiteBin = join(projectRoot, 'bin', 'offsite.js');

/** The built CLI of another checkout (`--baseline DIR`: before/after in one run), or undefined without one. */
export function baselineBinOf(checkout: string | undefined): string | undefined {
  if (checkout === undefined) return undefined;
  const bin = join(resolve(checkout), 'bin', 'offsite.js');
  if (!existsSync(bin)) throw new Error(`--baseline: ${bin} does not exist (build that checkout first: npx tsc)`);
  return bin;
}

export interface Timed {
  readonly seconds: number;
  /** User + system CPU seconds of the process and its children. */
  readonly cpuSeconds: number;
  readonly maxRssMb: number;
}

let statsCounter = 0;

/** GNU time's `%U %S %M` line, read and removed. */
function readStats(statsFile: string): Omit<Timed, 'seconds'> {
  const [user = 0, system = 0, rssKb = 0] = (readFileSync(statsFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
  rmSync(statsFile, { force: true });
  return { cpuSeconds: user + system, maxRssMb: rssKb / 1024 };
}

/** A stats file of its own for each run (runs may overlap). */
function statsPath(): string {
  return join(tmpdir(), `offsite-bench-time-${process.pid}-${statsCounter++}`);
}

/** Runs a command under /usr/bin/time (wall clock from spawn to exit), failing loudly when it fails. */
export function timed(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Timed {
  const statsFile = statsPath();
  const started = process.hrtime.bigint();
  const run = spawnSync('/usr/bin/time', ['-f', '%U %S %M', '-o', statsFile, command, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${run.status}): ${run.stderr.toString().slice(-2000)}`);
  return { seconds, ...readStats(statsFile) };
}

/**
 * `timed` with an asynchronous spawn, for a benchmark whose own event loop must keep running
 * meanwhile (a proxy in this process, several children at once); also returns the child's stdout
 * (its last 16 MiB).
 */
export async function timedAsync(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<Timed & { stdout: string }> {
  const statsFile = statsPath();
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%U %S %M', '-o', statsFile, command, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout = (stdout + d.toString()).slice(-16 * 1024 * 1024); });
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4096); });
  const code = await new Promise<number | null>((resolveExit, reject) => { child.once('error', reject); child.once('close', resolveExit); });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0) {
    rmSync(statsFile, { force: true });
    throw new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.slice(-2000)}${stdout.slice(-1000)}`);
  }
  return { seconds, ...readStats(statsFile), stdout };
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** The fields of `/proc/PID/stat` after the command name: index 0 is proc(5)'s field 3 (state). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds used so far by the given processes (utime + stime from /proc; a gone process counts nothing more). */
export function cpuOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = statFields(pid);
      ticks += Number(fields[11]) + Number(fields[12]); // fields 14 and 15 of proc(5)
    } catch {
      // gone
    }
  }
  return ticks / CLOCK_TICKS;
}

/** CPU seconds of the children `pid` has waited for (cutime + cstime from /proc). */
export function reapedChildrenCpuOf(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS; // fields 16 and 17 of proc(5)
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

/** A whole number >= 1 from an option, or an error that names the option. */
export function positiveInteger(text: string, what: string): number {
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what}: "${text}" is not a positive integer`);
  return n;
}

/** A comma-separated list of whole numbers >= 1 (`--concurrency 4,8,16`). */
export function positiveIntegers(text: string, what: string): number[] {
  return text.split(',').map((s) => positiveInteger(s, what));
}

/** The 1/5/15-minute load averages: other work on this 2-core machine skews every figure. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** The AWS SDK's notice about future Node versions is noise in a benchmark's output: drop it. */
export function silenceSdkVersionWarning(): void {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: never[]) => {
    if (String(typeof warning === 'string' ? warning : warning.name).includes('NodeVersionSupport') || (rest[0] as unknown) === 'NodeVersionSupportWarning') return;
    emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** Relative path ('/'-separated) -> size of every file under `dir`, without the first-level folder `skip`. */
export function sizesUnder(dir: string, skip?: string): Map<string, number> {
  const sizes = new Map<string, number>();
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) {
        if (folder === dir && entry.name === skip) continue;
        walk(path);
      } else {
        sizes.set(relative(dir, path).split(sep).join('/'), statSync(path).size);
      }
    }
  };
  walk(dir);
  return sizes;
}

/** The sum of the sizes of a `sizesUnder` tree. */
export function totalSize(sizes: ReadonlyMap<string, number>): number {
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

/**
 * Why a copy (`actual`) differs from the source (`expected`): a missing file, another size, or a
 * file the source lacks (except under `ignorePrefix`, e.g. offsite's `.offsite/`); undefined when
 * it is the same tree.
 */
export function treeDifference(expected: ReadonlyMap<string, number>, actual: ReadonlyMap<string, number>, ignorePrefix?: string): string | undefined {
  for (const [path, size] of expected) if (actual.get(path) !== size) return `${path}: ${actual.get(path) ?? 'missing'} bytes instead of ${size}`;
  for (const path of actual.keys()) {
    if (!expected.has(path) && (ignorePrefix === undefined || !path.startsWith(ignorePrefix))) return `unexpected file ${path}`;
  }
  return undefined;
}

/** A run against a server on this machine: the client's figures and the server's CPU. */
export interface ServerTimed extends Timed {
  /** CPU seconds the server's processes spent during the run. */
  readonly serverCpuSeconds: number;
  /** Requests by kind, where the benchmark traced them. */
  readonly requests?: ReadonlyMap<string, number>;
}

/**
 * Prints one line per contender (median time, throughput, client and server CPU, peak RSS, each
 * run's time) and returns the median seconds and client CPU by contender, for the ratios.
 */
export function printServerResults(bytes: number, repeat: number, labels: readonly string[], runs: readonly (readonly ServerTimed[])[]): { seconds: number[]; cpu: number[] } {
  const MiB = 1024 * 1024;
  const width = Math.max(...labels.map((l) => l.length)) + 2;
  console.log(`\nresults (${(bytes / MiB).toFixed(0)} MiB, median of ${repeat}; CPU = client process tree / server processes, median):`);
  const seconds = runs.map((r) => median(r.map((t) => t.seconds)));
  const cpu = runs.map((r) => median(r.map((t) => t.cpuSeconds)));
  for (const [i, label] of labels.entries()) {
    const s = seconds[i] as number;
    const list = runs[i] ?? [];
    console.log(`  ${label.padEnd(width)} ${s.toFixed(2).padStart(6)} s ${(bytes / MiB / s).toFixed(0).padStart(5)} MiB/s  ` +
      `CPU ${(cpu[i] as number).toFixed(1).padStart(5)} s / ${median(list.map((t) => t.serverCpuSeconds)).toFixed(1).padStart(5)} s  ` +
      `peak RSS ${Math.max(...list.map((t) => t.maxRssMb)).toFixed(0).padStart(4)} MB  (runs: ${list.map((t) => t.seconds.toFixed(2)).join(', ')} s)`);
    const requests = list[list.length - 1]?.requests;
    if (requests && requests.size > 0) console.log(`    requests (last run): ${[...requests].sort((a, b) => b[1] - a[1]).map(([kind, n]) => `${n} ${kind}`).join(', ')}`);
  }
  return { seconds, cpu };
}

/** A generated backup in a fresh work folder: where it is and what a copy of it must hold. */
export interface BenchBackup {
  /** Number of files. */
  readonly files: number;
  /** The backup's folder (`DIR/source/NAME`). */
  readonly local: string;
  /** Size of every file, by path inside the backup. */
  readonly expected: Map<string, number>;
  /** Their total. */
  readonly bytes: number;
  /** The largest file's size. */
  readonly largest: number;
}

/** Empties `dir` and generates the realistic backup `name` of about `totalBytes` under `dir/source`. */
export async function freshBackup(dir: string, name: string, totalBytes: number, seed: number): Promise<BenchBackup> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const made = await generateBackup({ root: join(dir, 'source'), name, totalBytes, seed });
  const local = join(dir, 'source', name);
  const expected = sizesUnder(local);
  return { files: made.files, local, expected, bytes: totalSize(expected), largest: Math.max(...expected.values()) };
}
