/**
 * The crash trial (issue 5): replicate one generated backup to a local, an SFTP and an S3
 * destination with the real CLI, SIGKILL it at seeded random moments, and after every kill check
 * that no destination holds a manifest for a copy that does not deep-verify. A final run must
 * complete everywhere and deep-verify; the bytes sent again after the resumes must stay within
 * one part per file in flight per kill (measured on the wire by the fault proxies in front of
 * sshd and RGW, so killed runs count too).
 *
 * Used by test/e2e/crash-sftp-s3.test.ts (fixed seed, 20 kills, in CI) and by
 * scripts/crash-test.mjs (random seeds, as many kills as asked).
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { generateBackup } from '../../scripts/gen-backup.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { binPath, jsonOf, runCli, tempDir, writeConfig } from '../helpers/cli.js';
import type { SftpTestServer } from '../servers/sshd.js';
import type { S3TestServer } from '../servers/rgw.js';
import { adminClient, removeBucket } from '../s3/server.js';
import { CreateBucketCommand } from '@aws-sdk/client-s3';

export interface TrialOptions {
  readonly seed: number;
  readonly kills: number;
  readonly sftp: SftpTestServer;
  readonly s3: S3TestServer;
  /** Approximate backup size. @default 12 MiB */
  readonly totalBytes?: number;
  readonly log?: (line: string) => void;
}

export interface TrialReport {
  readonly kills: number;
  /** Kills that landed while the run was still working (the others found it finished). */
  readonly killsMidRun: number;
  readonly totalBytes: number;
  /** Bytes sent to sshd / RGW over all runs, killed ones included. */
  readonly sftpSent: number;
  readonly s3Sent: number;
  /** Upper bounds allowed for re-sent bytes at the SFTP and S3 destinations. */
  readonly resendBound: { readonly nas: number; readonly cloud: number };
  readonly problems: readonly string[];
}

const NAME = 'crash_trial_backup';
const CHUNK = 1024 * 1024;
const S3_PART = 5 * 1024 * 1024;
const FILE_CONCURRENCY = 3;
/** Parts of one file in flight per destination (the engine's default partConcurrency). */
const PARTS_IN_FLIGHT = 2;

/** Mulberry32: a tiny seeded PRNG, so that a failing seed can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface VerifyJson { results: { destination: string; status: string; damage: { message: string }[]; message?: string }[] }

export async function runCrashTrial(options: TrialOptions): Promise<TrialReport> {
  const log = options.log ?? (() => undefined);
  const random = prng(options.seed);
  const dir = tempDir(`crash-${options.seed}`);
  const made = await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: options.totalBytes ?? 12 * 1024 * 1024, largestFileBytes: 6 * 1024 * 1024, seed: options.seed });
  const bucket = `crash-${options.seed}-${Date.now()}`.slice(0, 63);
  const admin = adminClient(options.s3);
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  const sftpRoot = join(options.sftp.root, `crash-${options.seed}-${Date.now()}`);
  mkdirSync(sftpRoot, { recursive: true });
  const s3Url = new URL(options.s3.endpoint);
  const proxies: FaultProxy[] = [];
  try {
    const sftpProxy = await startFaultProxy({ target: { host: options.sftp.host, port: options.sftp.port } });
    const s3Proxy = await startFaultProxy({ target: { host: s3Url.hostname, port: Number(s3Url.port) } });
    proxies.push(sftpProxy, s3Proxy);
    const config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      '  disk: { type: local, root: ./disk }',
      `  nas: { type: sftp, host: 127.0.0.1, port: ${sftpProxy.port}, username: ${options.sftp.username}, privateKey: "${options.sftp.privateKey}", hostKey: "${options.sftp.hostKeyFingerprint}", root: "${sftpRoot}" }`,
      `  cloud: { type: s3, endpoint: "http://127.0.0.1:${s3Proxy.port}", region: ${options.s3.region}, bucket: ${bucket}, prefix: copies/, accessKeyId: "${options.s3.accessKeyId}", secretAccessKey: "${options.s3.secretAccessKey}", requestTimeoutMs: 20000 }`,
      `options: { quietPeriod: 0s, chunkSize: 1MiB, concurrency: ${FILE_CONCURRENCY}, retries: 2 }`,
    ].join('\n'));
    const args = ['--config', config, '--quiet', 'replicate', NAME, '--to', 'disk,nas,cloud', '--bwlimit', '12MiB'];
    const problems: string[] = [];
    let killsMidRun = 0;

    const checkManifests = async (when: string): Promise<void> => {
      const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'disk,nas,cloud', '--deep']);
      for (const r of jsonOf<VerifyJson>(verify).results) {
        if (r.status === 'damaged' || r.status === 'error') problems.push(`${when}: ${r.destination} ${r.status}: ${r.damage.map((d) => d.message).join('; ') || r.message}`);
      }
    };

    for (let kill = 0; kill < options.kills; kill++) {
      const delayMs = 150 + Math.floor(random() * 1200);
      const child = spawn(process.execPath, [binPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      const finished = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), delayMs))]);
      if (!finished) {
        child.kill('SIGKILL');
        killsMidRun++;
      }
      const code = await exited;
      if (finished && code !== 0) problems.push(`run ${kill} ended by itself with exit ${code}: ${stderr.trim()}`);
      log(`kill ${kill + 1}/${options.kills} after ${delayMs} ms: ${finished ? `already finished (exit ${code})` : 'killed mid-run'}`);
      await checkManifests(`after kill ${kill + 1}`);
      if (finished) break; // everything is done: later kills would only find a finished copy
    }
    const final = await runCli(['--config', config, '--json', ...args.slice(2).filter((a) => a !== '--quiet')]);
    if (final.code !== 0) problems.push(`final run exit ${final.code}: ${final.stderr.trim()}`);
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'disk,nas,cloud', '--deep']);
    for (const r of jsonOf<VerifyJson>(verify).results) {
      if (r.status !== 'ok') problems.push(`final verify: ${r.destination} ${r.status}: ${r.damage.map((d) => d.message).join('; ') || r.message}`);
    }
    const sftpSent = sftpProxy.stats().bytesClientToServer;
    const s3Sent = s3Proxy.stats().bytesClientToServer;
    // Re-sent data per kill: at most the parts in flight of each file in flight (S3 parts are
    // 5 MiB, SFTP ones 1 MiB), plus the protocol's own bytes (SSH framing, HTTP headers): 10 %.
    const overhead = made.bytes * 0.1 + 1024 * 1024;
    const resendBound = {
      nas: killsMidRun * FILE_CONCURRENCY * PARTS_IN_FLIGHT * CHUNK + overhead,
      cloud: killsMidRun * FILE_CONCURRENCY * PARTS_IN_FLIGHT * S3_PART + overhead,
    };
    for (const [name, sent] of [['nas', sftpSent], ['cloud', s3Sent]] as const) {
      if (sent - made.bytes > resendBound[name]) problems.push(`${name}: ${sent} bytes sent for a ${made.bytes}-byte backup: ${sent - made.bytes} re-sent, more than ${Math.round(resendBound[name])}`);
    }
    log(`sent to sftp ${sftpSent}, to s3 ${s3Sent}, backup ${made.bytes} bytes, ${killsMidRun} kills mid-run`);
    return { kills: options.kills, killsMidRun, totalBytes: made.bytes, sftpSent, s3Sent, resendBound, problems };
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
    await removeBucket(admin, bucket).catch(() => undefined);
    admin.destroy();
  }
}
