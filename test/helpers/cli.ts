/** Runs the built CLI (bin/offsite.js) as a user would, and small fixtures around it. */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
export const binPath = join(projectRoot, 'bin', 'offsite.js');

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], {
      cwd: options.cwd ?? projectRoot,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`offsite ${args.join(' ')} timed out\n${stderr}`)); }, options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolvePromise({ code, stdout, stderr }); });
  });
}

/** A CLI run in a child process whose output can be read while it runs (see `startCli`). */
export interface RunningCli {
  output(): { stdout: string; stderr: string };
  running(): boolean;
  readonly exited: Promise<number | null>;
  /** Kills it if it still runs (for `t.after`: a failed assertion must not leave it behind). */
  stop(): void;
}

/** Starts the CLI and returns at once; killed after `timeoutMs` if still running. */
export function startCli(args: readonly string[], timeoutMs = 180_000): RunningCli {
  const child = spawn(process.execPath, [binPath, ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<number | null>((resolvePromise) => child.on('close', (code) => { clearTimeout(timer); resolvePromise(code); }));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return { output: () => ({ stdout, stderr }), running, exited, stop: () => { if (running()) child.kill('SIGKILL'); } };
}

/** The retry lines (src/cli/common.ts `reportRetry`) that name `destination`. */
export function retriesOf(stderr: string, destination: string): string[] {
  return stderr.split('\n').filter((line) => line.startsWith(`offsite: ${destination}: `) && / retry \d+ in /.test(line));
}

/** Parses the --json output of a run, with the run's output in the error when it is not JSON. */
export function jsonOf<T = Record<string, unknown>>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${run.code}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

export function tempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `offsite-${label}-`));
}

export function writeConfig(dir: string, yaml: string): string {
  const path = join(dir, 'offsite.yaml');
  writeFileSync(path, yaml);
  return path;
}

/** Relative path -> sha256 of every file under `dir` (skipping `skip` prefixes). */
export function treeDigest(dir: string, skip: readonly string[] = []): Map<string, string> {
  const result = new Map<string, string>();
  const walk = (folder: string) => {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      const rel = relative(dir, path).split('\\').join('/');
      if (skip.some((s) => rel.startsWith(s))) continue;
      if (statSync(path).isDirectory()) walk(path);
      else result.set(rel, createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(dir);
  return result;
}

/** Every file path (relative) under dir. */
export function filesUnder(dir: string): string[] {
  return [...treeDigest(dir).keys()].sort();
}
